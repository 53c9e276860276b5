"""Shared fixtures: a clean environment for the SDKs, and a sandbox of both emulators."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the developer's Databricks/Azure credentials and config files out of every test."""
    import os

    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ARM_", "AZURE_", "APIMSYNC_")) or name == "API_MANAGEMENT_SERVICE_NAME":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def sandbox() -> Iterator[object]:
    """Both emulators with the shipped fixtures (fresh for each test)."""
    from apimsync.emulators.sandbox import Sandbox

    with Sandbox() as box:
        yield box
