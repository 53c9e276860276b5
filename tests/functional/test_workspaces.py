"""Several workspaces into one APIM (issue 11 §2, §4): a credential per workspace, called through the gateway.

A Databricks PAT is valid in its own workspace only (Databricks docs, "Authenticate with Databricks personal access
tokens": a token belongs to a user in one workspace); an unknown token is answered 403 "Invalid access token."
(databricks-sdk-go issue 873).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from azure.mgmt.apimanagement.models import NamedValueCreateContract

from apimsync.arm import location_poller
from apimsync.changes import Action
from apimsync.config import settings_from_mapping
from apimsync.emulators.sandbox import Sandbox, demo_token, token_named_value
from apimsync.settings import Settings

PER_WORKSPACE = 8  # the shipped fixtures publish 8 APIs in each workspace


@pytest.fixture
def two() -> Iterator[Sandbox]:
    with Sandbox(workspaces=2) as box:
        yield box


def _set_named_value(box: Sandbox, name: str, value: str) -> None:
    box.apim.client().named_value.begin_create_or_update(
        box.apim.RESOURCE_GROUP, box.apim.SERVICE, name,
        NamedValueCreateContract(display_name=name, value=value, secret=True), polling=location_poller(0.02)).result()


def test_every_api_of_both_workspaces_answers_and_a_swapped_token_is_refused(two: Sandbox) -> None:
    engine = two.engine()
    assert engine.sync().ok
    report = engine.verify()
    assert report.ok and len(report.checks) == 2 * PER_WORKSPACE, str(report)
    client = two.apim.client()
    rg, svc = two.apim.RESOURCE_GROUP, two.apim.SERVICE
    for i in (0, 1):
        assert client.named_value.list_value(rg, svc, token_named_value(i)).value == demo_token(i)[1]
    # workspace 2's token in workspace 1's named value: workspace 1's APIs are refused by Databricks
    _set_named_value(two, token_named_value(0), demo_token(1)[1])
    body = {"dataframe_records": [{"tenure": 3, "plan": "basic", "monthly_charges": 20.5}]}
    answer = requests.post(f"{two.apim.gateway_url}/serving/emulator/churn-classifier/invocations", json=body,
                           headers={"Ocp-Apim-Subscription-Key": two.apim.subscription_key},
                           verify=str(two.apim.ca_file), timeout=30)
    assert answer.status_code == 403 and answer.json()["message"] == "Invalid access token."
    after = engine.verify()
    failed = {c.api_id for c in after.checks if c.diagnosis == "credential"}
    assert failed and all(api_id.startswith("dbx-emulator-") and not api_id.startswith("dbx-emulator-2-")
                          for api_id in failed)
    assert all(c.ok for c in after.checks if c.api_id.startswith("dbx-emulator-2-"))


def test_per_workspace_syncs_never_write_each_others_named_values(two: Sandbox) -> None:
    """The bundle's fan-out: one task per workspace, each with its own configuration. Before, both wrote one
    named value (databricks-token) on every run; now each keeps its own and a second round writes nothing."""
    full = two.config()

    def only(index: int) -> Settings:
        return settings_from_mapping({**full, "workspaces": [full["workspaces"][index]]})

    for _round in (1, 2):
        for index in (0, 1):
            report = two.engine(only(index)).sync()
            assert report.ok
            changed = [n.name for n in report.plan.named_values if n.action is not Action.NOOP]
            if _round == 2:
                assert changed == [], f"workspace {index} rewrote {changed}"
            else:
                assert all(name.endswith(("-emulator", "-emulator-2")[index]) for name in changed)
    assert two.engine().verify().ok


def test_emulate_with_two_workspaces_prints_a_config_the_cli_can_use(tmp_path: Path) -> None:
    """`apimsync emulate --workspaces 2`: every host, token and profile it needs is in what it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "apimsync", "emulate", "--workspaces", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("# profiles in"):
                break
        printed = "".join(lines)
        config_text = printed.split("# apimsync.yaml for the sandbox:\n", 1)[1].split("\n# environment:", 1)[0]
        config = yaml.safe_load(config_text)
        assert [w["name"] for w in config["workspaces"]] == ["emulator", "emulator-2"]
        assert config["workspaces"][0]["host"] != config["workspaces"][1]["host"]
        env = dict(os.environ)
        for line in printed.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                env[key] = value
        path = tmp_path / "apimsync.yaml"
        path.write_text(config_text, encoding="utf-8")
        for command in ("sync", "verify"):
            run = subprocess.run([sys.executable, "-m", "apimsync", command, "--config", str(path)],
                                 capture_output=True, text=True, env=env, timeout=300)
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert f"Verified {2 * PER_WORKSPACE} of {2 * PER_WORKSPACE}" in run.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_host_that_runtime_auth_would_replace_is_refused(two: Sandbox) -> None:
    """In a notebook, runtime auth connects to the current workspace whatever host is configured
    (databricks-sdk-py#202): a client connected elsewhere than the configured host fails that workspace, before any
    API gets the wrong backend."""
    config = two.config()
    config["workspaces"] = [{"name": "emulator", "host": two.workspaces[1].url}]
    settings = settings_from_mapping(config)
    engine = two.engine(settings)  # its client connects to workspace 1, as runtime auth would
    plan = engine.plan()
    (failure,) = plan.failures
    assert failure.endpoint == "*" and "runtime auth always uses the current workspace" in failure.message
    assert not plan.changes


@pytest.mark.parametrize(("host", "regional"), [("https://westeurope-c2.azuredatabricks.net", True),
                                                ("https://australiaeast.azuredatabricks.net", True),
                                                ("https://adb-1234567890123456.7.azuredatabricks.net", False)])
def test_regional_urls_are_recognised(host: str, regional: bool) -> None:
    """databricks-sdk-py#1039: on classic compute Config.host can be https://westeurope-c2.azuredatabricks.net."""
    from apimsync.source import REGIONAL_HOST

    assert bool(REGIONAL_HOST.match(host)) is regional


def test_the_runtime_workspace_url_comes_from_the_notebook_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Databricks, the notebook context's browserHostName is the workspace URL (databricks-industry-solutions/
    security-analysis-tool#155 shows it beside the regional api_url); dbutils here is a stand-in for the runtime's."""
    import __main__
    from apimsync.source import runtime_workspace_url

    class Option:
        def __init__(self, value: str) -> None:
            self.value = value

        def get(self) -> str:
            return self.value

    class Context:
        def browserHostName(self) -> Option:
            return Option("adb-1234567890123456.7.azuredatabricks.net")

    class Notebook:
        def getContext(self) -> Context:
            return Context()

    class Dbutils:
        class notebook:
            class entry_point:
                @staticmethod
                def getDbutils() -> object:
                    return type("D", (), {"notebook": staticmethod(lambda: Notebook())})()

    assert runtime_workspace_url() is None
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    monkeypatch.setattr(__main__, "dbutils", Dbutils(), raising=False)
    assert runtime_workspace_url() == "https://adb-1234567890123456.7.azuredatabricks.net"
