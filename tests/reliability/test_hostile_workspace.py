"""A workspace is untrusted input (issue 13): whatever it returns, good endpoints publish, the hostile one fails alone
with a one-line reason, no credential goes anywhere but Databricks, and nothing raises out of the plan."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from apimsync.emulators.databricks import DEFAULT_FIXTURES
from apimsync.emulators.sandbox import Sandbox

READY = 8  # APIs the shipped fixtures produce (not READY and schema-less ones are skipped)

SPEC_OK = {"openapi": "3.1.0", "info": {"title": "x", "version": "1"}, "paths": {"/served-models/m-1/invocations": {
    "post": {"requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
        "inputs": {"type": "array"}}}}}}, "responses": {"200": {"description": "Successful operation"}}}}}}


def _deep(levels: int) -> str:
    inner = "{}"
    for _ in range(levels):
        inner = '{"type":"object","properties":{"a":' + inner + "}}"
    return json.dumps(SPEC_OK).replace('{"type": "object", "properties": {"inputs": {"type": "array"}}}', inner)


def api_ids(box: Sandbox) -> list[str]:
    client = box.apim.client()
    return sorted(a.name for a in client.api.list_by_service(box.apim.RESOURCE_GROUP, box.apim.SERVICE))


def _item(name: Any = "hostile", **fields: Any) -> dict[str, Any]:
    return {"name": name, "state": {"ready": "READY", "config_update": "NOT_UPDATING"}, "task": "llm/v1/chat",
            "config": {"served_entities": [{"name": "m-1"}]}, **fields}


# each: (endpoint item, spec text, the stage it fails in, words of the reason)
HOSTILE: dict[str, tuple[dict[str, Any], str | None, str, str]] = {
    "schema nested 500 levels": (_item(), _deep(500), "fetch", "nested deeper than 100 levels"),
    "a 5,000-digit number": (_item(), json.dumps(SPEC_OK)[:-1] + ', "x-n": ' + "9" * 5000 + "}", "fetch",
                             "number is too long"),
    "NaN": (_item(), json.dumps(SPEC_OK)[:-1] + ', "x-n": NaN}', "fetch", "NaN is not JSON"),
    "1e400": (_item(), json.dumps(SPEC_OK)[:-1] + ', "x-n": 1e400}', "fetch", "overflows to infinity"),
    "a duplicate paths key": (_item(), json.dumps(SPEC_OK)[:-1] + ', "paths": {}}', "fetch", "duplicate key 'paths'"),
    "name is a number": (_item(12345), None, "list", "name: expected a string, got 12345"),
    "tags hold a number": (_item(tags=[1, "x"]), json.dumps(SPEC_OK), "list", "tags[0]: expected an object"),
    "state is a string": (_item(state="READY"), json.dumps(SPEC_OK), "list", "state: expected an object"),
    "served entities is a string": (_item(config={"served_entities": "m-1"}), json.dumps(SPEC_OK), "list",
                                    "config.served_entities: expected a list"),
    "route_optimized is a string": (_item(route_optimized="yes"), json.dumps(SPEC_OK), "list",
                                    "route_optimized: expected true or false"),
    "backend on another host": (_item(route_optimized=True, endpoint_url="https://attacker.example.net/x/invocations"),
                                json.dumps(SPEC_OK), "backend", "attacker.example.net' is neither the workspace's"),
    "backend over plain http": (_item(route_optimized=True, endpoint_url="http://adb-1.2.azuredatabricks.net/x"),
                                json.dumps(SPEC_OK), "backend", "is not https"),
    # one host to Python, evil.com to a WHATWG or .NET parser (APIM's): refused before any parser must decide
    "backend host with a backslash": (_item(route_optimized=True,
                                            endpoint_url="https://evil.com\\.azuredatabricks.net/x/invocations"),
                                      json.dumps(SPEC_OK), "backend", "contains a backslash"),
    "backend host with an escape": (_item(route_optimized=True,
                                          endpoint_url="https://evil.com%2f.azuredatabricks.net/x/invocations"),
                                    json.dumps(SPEC_OK), "backend", "not a plain DNS name"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_endpoint_fails_alone(sandbox: Sandbox, case: str) -> None:
    item, spec, stage, words = HOSTILE[case]
    sandbox.databricks.put_endpoint(item, spec)
    report = sandbox.engine().sync()
    (failure,) = report.plan.failures
    assert failure.stage == stage and words in failure.message, failure
    assert "\n" not in failure.message
    assert len(api_ids(sandbox)) == READY, "every good endpoint is published"
    assert report.exit_code == 1


def test_hostile_fixture_through_the_cli_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """The same cases as a user meets them: `apimsync emulate --fixtures` with a crafted folder, `apimsync sync`."""
    folder = tmp_path / "fixtures"
    shutil.copytree(DEFAULT_FIXTURES, folder)
    listing = json.loads((folder / "endpoints.json").read_text(encoding="utf-8"))
    listing["endpoints"] += [_item(12345), _item("deep"), _item("evil", route_optimized=True,
                                                                endpoint_url="https://attacker.example.net/i")]
    (folder / "endpoints.json").write_text(json.dumps(listing), encoding="utf-8")
    (folder / "openapi" / "deep.json").write_text(_deep(500), encoding="utf-8")
    (folder / "openapi" / "evil.json").write_text(json.dumps(SPEC_OK), encoding="utf-8")
    with Sandbox(fixtures=folder) as box:
        config = tmp_path / "apimsync.yaml"
        config.write_text(box.config_yaml(), encoding="utf-8")
        run = subprocess.run([sys.executable, "-m", "apimsync", "sync", "--config", str(config)], capture_output=True,
                             text=True, env={**os.environ, **box.env()}, timeout=180)
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr + run.stdout
        failed = [line for line in run.stdout.splitlines() if "12345" in line or " deep" in line or "evil" in line]
        assert len(failed) == 3, run.stdout
        assert len(api_ids(box)) == READY
        assert not any("attacker" in str(api.service_url) for api in box.apim.client().api.list_by_service(
            box.apim.RESOURCE_GROUP, box.apim.SERVICE))


def test_an_allowed_extra_backend_host_is_configuration_not_workspace(sandbox: Sandbox) -> None:
    item = _item("own-proxy", route_optimized=True, endpoint_url="https://proxy.corp.example/x/invocations")
    sandbox.databricks.put_endpoint(item, json.dumps(SPEC_OK))
    refused = sandbox.engine().plan()
    assert [f.stage for f in refused.failures] == ["backend"]
    own = sandbox.settings().apis.backend_hosts  # the emulated data-plane host of route-optimized endpoints
    allowed = sandbox.engine(sandbox.settings(apis={"backend_hosts": [*own, "*.corp.example"]})).plan()
    assert not [f for f in allowed.failures if f.stage == "backend"]


def test_a_workspace_host_over_plain_http_is_refused(sandbox: Sandbox) -> None:
    from apimsync.config import settings_from_mapping
    from apimsync.errors import ConfigError

    config = sandbox.config(workspaces=[{"name": "w", "host": "http://adb-1.2.azuredatabricks.net"}])
    with pytest.raises(ConfigError, match=r"workspaces\[w\]\.host: .* is not https"):
        settings_from_mapping(config)
    loopback = sandbox.config(workspaces=[{"name": "w", "host": "http://127.0.0.1:8080"}])
    assert settings_from_mapping(loopback).workspaces[0].host == "http://127.0.0.1:8080"


# -- the emulator's own hygiene ------------------------------------------------------------------------------------

def test_a_fixture_name_never_reads_outside_the_folder(tmp_path: Path) -> None:
    from apimsync.emulators.databricks import DatabricksEmulator

    folder = tmp_path / "fixtures"
    (folder / "openapi").mkdir(parents=True)
    (tmp_path / "secret.json").write_text('{"stolen": true}', encoding="utf-8")
    (folder / "endpoints.json").write_text(json.dumps({"endpoints": [_item("../../secret")]}), encoding="utf-8")
    emulator = DatabricksEmulator(folder)
    assert emulator.endpoint_and_spec("../../secret")[1] is None


def test_a_non_utf8_fixture_is_one_line_exit_2(tmp_path: Path) -> None:
    folder = tmp_path / "fixtures"
    (folder / "openapi").mkdir(parents=True)
    (folder / "endpoints.json").write_bytes(b'{"endpoints": [{"name": "caf\xe9"}]}')
    run = subprocess.run([sys.executable, "-m", "apimsync", "emulate", "--fixtures", str(folder)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "endpoints.json: not UTF-8" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_the_state_file_is_private(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with Sandbox(state_file=state) as box:
        box.engine().sync()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600, "it holds secret named values and subscription keys"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"status": "x", "count": "y"}', b'{"path": "("}',
                                  b'{"nope": 1}', b'{"latency_ms": -1}'])
def test_a_malformed_faults_body_is_a_400(sandbox: Sandbox, body: bytes) -> None:
    answer = requests.post(f"{sandbox.apim.url}/_emulator/faults", data=body, verify=str(sandbox.apim.ca_file),
                           timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "BadRequest"
