"""The three ways to run: the CLI (CliRunner and a real process), the notebook API, the job entry point; and the
bundle that schedules the job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import apimsync
from apimsync.cli import main
from apimsync.emulators.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def configured(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file and environment pointing apimsync at the sandbox, as `apimsync emulate` prints them."""
    path = tmp_path / "apimsync.yaml"
    path.write_text(sandbox.config_yaml(), encoding="utf-8")
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_version_and_help() -> None:
    code, out, _ = run("--version")
    assert code == 0 and apimsync.__version__ in out
    code, out, _ = run("--help")
    for command in ("sync", "plan", "import", "transform", "lint", "emulate", "demo"):
        assert command in out


def test_plan_sync_plan_with_exit_codes(configured: Path) -> None:
    code, out, _ = run("plan", "--config", str(configured), "--detailed-exitcode")
    assert code == 3 and "to create" in out
    code, out, _ = run("-o", "json", "sync", "--config", str(configured))
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True and report["plan"]["summary"].startswith("Plan: 8 to create")
    code, out, _ = run("plan", "--config", str(configured), "--detailed-exitcode", "-o", "json")
    assert code == 0 and json.loads(out)["has_changes"] is False


def test_plan_out_file_and_dry_run_write_nothing(configured: Path, sandbox: Sandbox, tmp_path: Path) -> None:
    out_file = tmp_path / "plan.json"
    code, _, _ = run("plan", "--config", str(configured), "--out", str(out_file))
    assert code == 0 and json.loads(out_file.read_text())["format_version"] == 1
    code, out, _ = run("sync", "--config", str(configured), "--dry-run")
    assert code == 0 and "Dry run" in out
    assert sandbox.apim.stats()["writes"] == 0


def test_import_one_endpoint(configured: Path, sandbox: Sandbox) -> None:
    code, out, _ = run("import", "openai-chat", "--config", str(configured))
    assert code == 0, out
    assert sandbox.apim.stats()["apis"] == 1
    code, _, err = run("import", "no-such-endpoint", "--config", str(configured))
    assert code == 2 and "not found" in err


def test_bad_config_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "apimsync.yaml"
    bad.write_text("apim: {subscription_id: s, resource_group: r, service: x}\nconcurency: 3\n")
    code, out, err = run("plan", "--config", str(bad))
    assert code == 2
    assert err.strip() == f"Error: {bad}: unknown key 'concurency' (did you mean 'concurrency'?)"
    assert "Traceback" not in out + err


def test_demo_runs_twice_and_says_nothing_changed() -> None:
    code, out, _ = run("demo")
    assert code == 0, out
    assert "No changes: APIM already matches Databricks" in out
    assert "skipped emulator/fraud-scorer: endpoint is not READY" in out


def test_real_process_help_and_json_plan(configured: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    help_run = subprocess.run([sys.executable, "-m", "apimsync", "--help"], capture_output=True, text=True,
                              env=env, timeout=60)
    assert help_run.returncode == 0
    # --help must not import the SDKs (they take over a second to import)
    probe = ("import sys, apimsync.cli; sys.argv=['apimsync','--help']\n"
             "try:\n    apimsync.cli.main()\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(('databricks.sdk', 'azure.mgmt'))))")
    modules = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert modules.stdout.strip().endswith("[]")
    plan = subprocess.run([sys.executable, "-m", "apimsync", "-o", "json", "plan", "--config", str(configured)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["summary"].startswith("Plan: 8 to create")
    assert "Traceback" not in plan.stderr


def test_notebook_api_renders_html(configured: Path) -> None:
    plan = apimsync.plan(config=configured)
    html = plan._repr_html_()
    assert "<table>" in html and "dbx-openai-chat" in html and "create" in html
    report = apimsync.sync(config=configured, concurrency=2)
    assert report.ok and report.exit_code == 0
    assert "<table>" in report._repr_html_() and "dbx-openai-chat" in str(report)
    # keyword settings, nested like the YAML file, win over the file
    again = apimsync.plan(config=configured, naming={"display_name": "Model {endpoint}"})
    assert {c.action.value for c in again.changes} == {"update"}


def test_job_entry_point_named_parameters(configured: Path, sandbox: Sandbox,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from apimsync.job import main as job_main

    assert job_main([f"--config={configured}", "--dry_run=true"]) == 0
    assert sandbox.apim.stats()["writes"] == 0
    capsys.readouterr()
    assert job_main([f"--config={configured}", "--output=json", "--concurrency=2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and len(report["outcomes"]) == 8
    assert sandbox.apim.stats()["apis"] == 8
    specs = sandbox.databricks.stats()["by_route"]["openapi"]
    assert job_main([f"--config={configured}", "--refresh=true"]) == 0  # the daily run: every spec read again
    assert sandbox.databricks.stats()["by_route"]["openapi"] - specs >= 8
    assert job_main(["positional"]) == 2
    assert job_main([f"--config={configured}", "--prune=perhaps"]) == 2


def test_bundle_definition_is_valid() -> None:
    from databricks.bundles.jobs import Job

    from apimsync.config import load_settings

    bundle = yaml.safe_load((ROOT / "databricks.yml").read_text())
    jobs = bundle["resources"]["jobs"]
    for key, spec in jobs.items():
        job = Job.from_dict(spec)  # raises on unknown or mistyped fields
        assert job.max_concurrent_runs == 1, key
    scheduled = jobs["apimsync_sync"]
    assert scheduled["schedule"]["quartz_cron_expression"]
    task = scheduled["tasks"][0]["python_wheel_task"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert task["package_name"] == "apimsync" and f'{task["entry_point"]} = "apimsync.job:run"' in pyproject
    fanout = jobs["apimsync_fanout"]["tasks"][0]
    assert "for_each_task" in fanout and "{{input}}" in json.dumps(fanout)
    assert {"transforms/**", "policies/**", "jobs/**"} <= set(bundle["sync"]["include"])
    settings = load_settings(ROOT / "jobs" / "apimsync.yaml", env={})
    assert settings.apim.credential.startswith("service-credential:")
    other = load_settings(ROOT / "jobs" / "other-workspace.yaml", env={})
    (workspace,) = other.workspaces
    assert workspace.host and workspace.auth and workspace.auth.client_secret \
        and workspace.auth.client_secret.databricks_secret  # a job carries the secret in a scope


BAD_CONFIGS = {
    "bad YAML": ("apim: [unclosed\n", "not valid YAML"),
    "unknown key": ("{base}\nprunee: {{}}\n", "unknown key 'prunee'"),
    "wrong type": ("{base}\nconcurrency: lots\n", "concurrency: expected an integer"),
    "missing target": ("select: {{include: ['*']}}\n", "apim: required"),
    "invalid api id template": ("{base}\nnaming: {{api_id: '{{nope}}'}}\n", "unknown placeholder {nope}"),
    "missing policy file": ("{base}\npolicy: {{template: ./nowhere.xml}}\n", "policy.template: policy template"),
    "pipeline with unknown step": ("{base}\npipeline: pipe.yaml\n", "unknown step 'make-it-work'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_configuration_cases(case: str, sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pipe.yaml").write_text("steps:\n  - make-it-work: {}\n")
    base = "\n".join(f"{k}: {yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in sandbox.config().items())
    text, expected = BAD_CONFIGS[case]
    config = tmp_path / "apimsync.yaml"
    config.write_text(text.format(base=base))
    for key, value in sandbox.env().items():
        monkeypatch.setenv(key, value)
    code, out, err = run("sync", "--config", str(config))
    assert code == 2, (out, err)
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sandbox.apim.stats()["apis"] == 0


def test_a_reviewed_plan_is_applied_only_while_it_still_holds(sandbox: Sandbox, configured: Path,
                                                              tmp_path: Path) -> None:
    """The plan is an artifact: plan --out writes it with a checksum over its content (no secret, nor a
    fingerprint of one), sync --plan plans again and applies only that same plan."""
    reviewed = tmp_path / "plan.json"
    code, _, _ = run("plan", "--config", str(configured), "--out", str(reviewed))
    document = json.loads(reviewed.read_text())
    assert code == 0 and len(document["checksum"]) == 64
    assert all("fingerprint" not in nv and "value" not in nv for nv in document["named_values"])
    assert os.environ["APIMSYNC_DEMO_TOKEN"] not in reviewed.read_text()
    again = tmp_path / "again.json"
    run("plan", "--config", str(configured), "--out", str(again))
    assert json.loads(again.read_text())["checksum"] == document["checksum"], "the same state, the same checksum"
    # something changes between review and apply: an endpoint is deleted in Databricks
    sandbox.databricks.remove_endpoint("image-embedder")
    before = sandbox.apim.stats()["writes"]
    code, _, err = run("sync", "--config", str(configured), "--plan", str(reviewed))
    assert code == 1 and "no longer matches" in err and sandbox.apim.stats()["writes"] == before
    code, _, _ = run("plan", "--config", str(configured), "--out", str(reviewed))
    code, out, _ = run("-o", "json", "sync", "--config", str(configured), "--plan", str(reviewed))
    assert code == 0 and json.loads(out)["plan"]["checksum"] == json.loads(reviewed.read_text())["checksum"]
    assert sandbox.apim.stats()["apis"] == 7
    # a rotated token changes the plan too (its named value's update), though the file holds no fingerprint
    run("plan", "--config", str(configured), "--out", str(reviewed))
    os.environ["APIMSYNC_DEMO_TOKEN"] = "dapi-rotated-after-review"
    code, _, err = run("sync", "--config", str(configured), "--plan", str(reviewed))
    assert code == 1 and "no longer matches" in err
    code, _, err = run("sync", "--config", str(configured), "--plan", str(configured))
    assert code == 2 and "not a plan written by apimsync" in err
