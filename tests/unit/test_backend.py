"""The backend allow-list compares hosts and ports: on loopback another port is another service."""

from __future__ import annotations

import pytest

from apimsync.backend import backend_problem

WORKSPACE = "https://adb-1234567890123456.7.azuredatabricks.net"


@pytest.mark.parametrize(("url", "workspace", "extra", "allowed"), [
    ("http://127.0.0.1:8080/serving-endpoints/x", "http://127.0.0.1:8080", (), True),
    ("http://127.0.0.1:9999/serving-endpoints/x", "http://127.0.0.1:8080", (), False),
    ("http://127.0.0.1:9999/x", "http://127.0.0.1:8080", ("127.0.0.1:9999",), True),
    ("http://127.0.0.1:9998/x", "http://127.0.0.1:8080", ("127.0.0.1:9999",), False),
    (f"{WORKSPACE}/serving-endpoints/x", WORKSPACE, (), True),
    (f"{WORKSPACE}:8443/serving-endpoints/x", WORKSPACE, (), False),
    ("https://abc.7.serving.azuredatabricks.net/1/serving-endpoints/x", WORKSPACE, (), True),
    ("https://abc.7.serving.azuredatabricks.net:444/1/serving-endpoints/x", WORKSPACE, (), False),
    ("https://proxy.corp.example/x", WORKSPACE, ("*.corp.example",), True),
    ("https://proxy.corp.example:8443/x", WORKSPACE, ("*.corp.example",), False),
    ("https://proxy.corp.example:8443/x", WORKSPACE, ("*.corp.example:8443",), True),
])
def test_the_allow_list_compares_ports(url: str, workspace: str, extra: tuple[str, ...], allowed: bool) -> None:
    assert (backend_problem(url, workspace, extra) is None) is allowed
