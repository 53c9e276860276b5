"""One configuration, several environments (issue 16 §3): `--env NAME` / APIMSYNC_ENV applies `environments.NAME`
over the file, as APIOps' per-environment configuration files do; the plan names the environment; the ownership
marker keeps two environments that share one APIM apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from apimsync.config import load_settings
from apimsync.emulators.latency import lro_only
from apimsync.emulators.sandbox import Sandbox
from apimsync.errors import ConfigError


def _config(box: Sandbox, tmp_path: Path) -> Path:
    config = box.config()
    config["prune"] = {"enabled": True, "max_delete_fraction": 1.0}
    config["environments"] = {
        "dev": {"naming": {"api_id": "dev-{endpoint}", "path": "dev/{endpoint}"}},
        "prod": {"naming": {"api_id": "prod-{endpoint}", "path": "prod/{endpoint}"},
                 "select": {"include": ["churn-classifier", "openai-chat"]},
                 "policy": {"variables": {"stage": "prod"}}},
    }
    path = tmp_path / "apimsync.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _cli(box: Sandbox, path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apimsync", *args, "--config", str(path)], capture_output=True,
                          text=True, env={**os.environ, **box.env(), **(env or {})}, timeout=180)


def test_two_environments_share_one_apim_without_touching_each_other(sandbox: Sandbox, tmp_path: Path) -> None:
    path = _config(sandbox, tmp_path)
    dev = _cli(sandbox, path, "--env", "dev", "-o", "json", "sync")
    assert dev.returncode == 0, dev.stderr
    assert json.loads(dev.stdout)["plan"]["environment"] == "dev"
    prod = _cli(sandbox, path, "sync", env={"APIMSYNC_ENV": "prod"})
    assert prod.returncode == 0, prod.stderr
    assert "(environment prod)" in prod.stdout
    client = sandbox.apim.client()
    ids = {a.name for a in client.api.list_by_service(sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE)}
    assert {"prod-churn-classifier", "prod-openai-chat"} <= ids and "dev-churn-classifier" in ids
    assert not any(i.startswith("prod-") and i not in ("prod-churn-classifier", "prod-openai-chat") for i in ids)
    # prune is on, and prod selects two endpoints: dev's APIs are another environment's, never prod's to delete
    again = _cli(sandbox, path, "--env", "prod", "-o", "json", "plan")
    plan = json.loads(again.stdout)
    assert not [c for c in plan["changes"] if c["action"] != "no-op"], plan["changes"]
    marker = client.api.get(sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE, "prod-openai-chat")
    assert " env=prod " in marker.api_revision_description


def test_an_unknown_environment_is_one_line_exit_2(sandbox: Sandbox, tmp_path: Path) -> None:
    path = _config(sandbox, tmp_path)
    run = _cli(sandbox, path, "--env", "staging", "plan")
    assert run.returncode == 2 and "environment 'staging' is not in environments (dev, prod)" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_environment_overrides_the_file_and_the_variables_override_it(tmp_path: Path) -> None:
    path = tmp_path / "apimsync.yaml"
    path.write_text(yaml.safe_dump({
        "apim": {"subscription_id": "s", "resource_group": "rg", "service": "apim-dev"},
        "environments": {"prod": {"apim": {"service": "apim-prod", "resource_group": "rg-prod"}}}}))
    assert load_settings(path, env={}).apim.service == "apim-dev"
    prod = load_settings(path, env={}, environment="prod")
    assert (prod.apim.service, prod.apim.resource_group, prod.environment) == ("apim-prod", "rg-prod", "prod")
    assert load_settings(path, env={"APIMSYNC_ENV": "prod"}).apim.service == "apim-prod"
    flagged = load_settings(path, env={"APIMSYNC_APIM_SERVICE": "apim-x"}, environment="prod")
    assert flagged.apim.service == "apim-x", "environment variables override the environment's entry"
    path.write_text(yaml.safe_dump({"apim": {"subscription_id": "s", "resource_group": "r", "service": "a"},
                                    "environment": "prod"}))
    with pytest.raises(ConfigError, match="environment: not a setting"):
        load_settings(path, env={})


def test_an_api_of_another_environment_is_a_conflict_and_one_without_is_adopted_once(sandbox: Sandbox) -> None:
    """A review found prod planning an update of dev's API on every run; now another environment's API is a
    conflict, and an API published before environments existed is adopted (one write) and then stays still."""
    base = sandbox.config()
    assert sandbox.engine().sync().ok  # published without an environment
    prod = {**base, "environments": {"prod": {}, "dev": {}}}
    from apimsync.config import settings_from_mapping

    adopt = sandbox.engine(settings_from_mapping(prod, environment="prod")).sync()
    assert adopt.ok and {c.reasons for c in adopt.plan.changes} == {("adopted by environment prod",)}
    assert not sandbox.engine(settings_from_mapping(prod, environment="prod")).plan().has_changes
    dev = sandbox.engine(settings_from_mapping(prod, environment="dev")).plan()
    assert {f.stage for f in dev.failures} == {"conflict"} and not dev.has_changes
    assert "belongs to environment 'prod'" in dev.failures[0].message


def test_endpoint_tags_converge(sandbox: Sandbox) -> None:
    settings = sandbox.settings(apis={"endpoint_tags": True})
    assert sandbox.engine(settings).sync().ok
    assert not sandbox.engine(settings).plan().has_changes, "the links are read back: no missing tag next time"


def test_env_prod_plans_and_syncs_against_the_prod_service(sandbox: Sandbox, tmp_path: Path) -> None:
    """Two emulated APIM services (dev is the sandbox's, prod a second one): --env prod writes only to prod."""
    from apimsync.emulators.apim import ApimEmulator

    with ApimEmulator(latency=lro_only(0.05)) as prod_apim:
        config = sandbox.config()
        config["environments"] = {"prod": {"apim": {"base_url": prod_apim.url, "ca_bundle": str(prod_apim.ca_file)}}}
        path = tmp_path / "apimsync.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        run = _cli(sandbox, path, "--env", "prod", "-o", "json", "sync")
        assert run.returncode == 0, run.stderr
        assert prod_apim.stats()["apis"] == 8 and sandbox.apim.stats()["apis"] == 0
        plan = _cli(sandbox, path, "--env", "prod", "plan")
        assert "(environment prod)" in plan.stdout and "8 unchanged" in plan.stdout
        dev = _cli(sandbox, path, "plan")
        assert "8 to create" in dev.stdout, "without --env: the file's own service, still empty"
