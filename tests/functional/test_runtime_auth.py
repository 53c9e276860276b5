"""On Databricks (issue 21 §6): a job task that syncs another workspace, and a notebook on classic compute.

Runtime auth connects to the current workspace whatever host is configured (databricks-sdk-py#202) and, on classic
compute, through the regional URL (databricks-sdk-py#1039). The runtime here is a stand-in for Databricks': the
``dbruntime`` module a cluster provides (``sdk_credential_provider.init_runtime_native_auth``, which databricks-sdk's
runtime auth calls, and the user namespace's ``dbutils``: secret scopes, the notebook context). databricks-sdk, the
emulators and the gateway are real.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from apimsync.emulators.sandbox import DEMO_SP_ID, DEMO_SP_SECRET, Sandbox, demo_token

SCOPE = {("jobs", "sp-id"): DEMO_SP_ID, ("jobs", "sp-secret"): DEMO_SP_SECRET}


class Runtime:
    """A Databricks cluster as databricks-sdk and apimsync see it: runtime auth connected to ``connected`` with
    ``token``, a notebook context naming ``workspace_host``, and a secret scope."""

    def __init__(self, connected: str, token: str, workspace_host: str, secrets: dict[tuple[str, str], str]) -> None:
        self.connected, self.token, self.workspace_host, self.secrets = connected, token, workspace_host, secrets
        self.secret_reads: list[tuple[str, str]] = []

    def init_runtime_native_auth(self) -> tuple[str, Any]:
        return self.connected, lambda: {"Authorization": f"Bearer {self.token}"}

    @property
    def dbutils(self) -> Any:
        runtime = self

        class Secrets:
            def get(self, scope: str, key: str) -> str:
                runtime.secret_reads.append((scope, key))
                return runtime.secrets[(scope, key)]

        class Context:
            def browserHostName(self) -> Any:
                return type("Option", (), {"get": lambda _self: runtime.workspace_host})()

        class Notebook:
            def getContext(self) -> Context:
                return Context()

        entry_point = type("EntryPoint", (), {"getDbutils": staticmethod(
            lambda: type("D", (), {"notebook": staticmethod(lambda: Notebook())})())})
        return type("Dbutils", (), {"secrets": Secrets(), "notebook": type("N", (), {"entry_point": entry_point})})()


@pytest.fixture
def on_databricks(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install a :class:`Runtime` (its arguments given by the test) as the ``dbruntime`` module a cluster has."""
    import __main__

    def install(box: Sandbox, runtime: Runtime) -> Runtime:
        for key in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_FILE", "DATABRICKS_CONFIG_PROFILE"):
            monkeypatch.delenv(key, raising=False)
        for key, value in box.env().items():
            if not key.startswith("DATABRICKS_"):  # a cluster has no host or token in its environment
                monkeypatch.setenv(key, value)
        monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
        dbutils = runtime.dbutils
        package = types.ModuleType("dbruntime")
        namespace = type("Namespace", (), {"get_namespace_globals": lambda _self: {"dbutils": dbutils}})()
        package.UserNamespaceInitializer = type(  # type: ignore[attr-defined]
            "UserNamespaceInitializer", (), {"getOrCreate": staticmethod(lambda: namespace)})
        provider = types.ModuleType("dbruntime.sdk_credential_provider")
        provider.init_runtime_native_auth = runtime.init_runtime_native_auth  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "dbruntime", package)
        monkeypatch.setitem(sys.modules, "dbruntime.sdk_credential_provider", provider)
        monkeypatch.delitem(sys.modules, "databricks.sdk.runtime", raising=False)  # imported again, on "a cluster"
        monkeypatch.setattr(__main__, "dbutils", dbutils, raising=False)
        return runtime

    return install


def _config_file(box: Sandbox, tmp_path: Path, workspaces: list[dict[str, Any]]) -> Path:
    config = box.config(workspaces=workspaces)
    config.pop("naming", None)  # one workspace published: the default names
    path = tmp_path / "apimsync.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _backend_hosts(box: Sandbox) -> set[str]:
    apis = box.apim.client().api.list_by_service(box.apim.RESOURCE_GROUP, box.apim.SERVICE)
    return {str(urlsplit(api.service_url).netloc) for api in apis if api.name.startswith("dbx-")}


@pytest.fixture
def two() -> Iterator[Sandbox]:
    with Sandbox(workspaces=2) as box:
        yield box


def test_a_job_task_syncs_a_second_workspace_with_credentials_from_a_secret_scope(
        two: Sandbox, on_databricks: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from apimsync import job, verify

    first, second = two.workspaces
    runtime = on_databricks(two, Runtime(first.url, first.token, urlsplit(first.url).netloc, SCOPE))
    workspace = {"name": "second", "host": second.url, "named_value": {"env": demo_token(1)[0]}}
    # without a credential of its own, runtime auth reads the job's own workspace: refused, nothing written
    plain = _config_file(two, tmp_path, [workspace])
    assert job.main([f"--config={plain}"]) == 1
    assert "runtime auth always uses the current workspace" in capsys.readouterr().out
    assert not _backend_hosts(two)

    auth = {"client_id": {"databricks_secret": "jobs/sp-id"}, "client_secret": {"databricks_secret": "jobs/sp-secret"}}
    config = _config_file(two, tmp_path, [{**workspace, "auth": auth}])
    listed_in_first = first.stats()["by_route"]["list"]
    for run, args in enumerate(([], [], ["--refresh=true"])):
        assert job.main([f"--config={config}", *args]) == 0, capsys.readouterr()
        out, err = capsys.readouterr()
        assert DEMO_SP_SECRET not in out + err
        if run:
            assert "No changes" in out, out
        assert _backend_hosts(two) == {urlsplit(second.url).netloc, urlsplit(second.dedicated_url).netloc}
        report = verify(config)
        assert report.ok and len(report.checks) == 8, str(report)
    assert ("jobs", "sp-secret") in runtime.secret_reads
    assert second.data_plane.tokens_issued >= 1  # the service principal's OAuth M2M token read the list
    assert first.stats()["by_route"]["list"] == listed_in_first  # and runtime auth was never used


def test_a_notebook_on_classic_compute_syncs_its_own_workspace(on_databricks: Any, tmp_path: Path) -> None:
    """Runtime auth reports another URL of the same workspace (the regional one on Azure; here the emulator under
    another name), the notebook context the workspace URL: a configured host equal to the latter is right."""
    from apimsync import sync, verify

    with Sandbox() as box:
        port = urlsplit(box.databricks.url).port
        on_databricks(box, Runtime(f"http://localhost:{port}", box.databricks.token, f"127.0.0.1:{port}", {}))
        config = _config_file(box, tmp_path, [{"name": "emulator", "host": box.databricks.url}])
        for run, refresh in enumerate((False, False, True)):
            report = sync(config, refresh=refresh)
            assert report.ok, str(report)
            assert (report.calls.get("writes", 0) > 0) is (run == 0), str(report)
            assert _backend_hosts(box) == {urlsplit(box.databricks.url).netloc,
                                           urlsplit(box.databricks.dedicated_url).netloc}
            checks = verify(config)
            assert checks.ok and len(checks.checks) == 8, str(checks)


def test_a_workspace_token_from_the_environment_is_used_instead_of_runtime_auth(
        two: Sandbox, on_databricks: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from apimsync import plan

    first, second = two.workspaces
    on_databricks(two, Runtime(first.url, first.token, urlsplit(first.url).netloc, {}))
    config = _config_file(two, tmp_path, [{"name": "second", "host": second.url, "auth": {"token": {"env": "PAT2"}},
                                           "named_value": {"env": demo_token(1)[0]}}])
    missing = plan(config)
    (failure,) = missing.failures  # the workspace fails with the key to set, nothing else
    assert "workspaces[second].auth.token.env: environment variable PAT2 is not set" in failure.message
    monkeypatch.setenv("PAT2", second.token)
    found = plan(config)
    assert not found.failures and len(found.changes) == 8
    assert {urlsplit(c.desired.settings.service_url).netloc for c in found.changes if c.desired} == \
        {urlsplit(second.url).netloc, urlsplit(second.dedicated_url).netloc}
