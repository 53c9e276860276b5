"""Interrupted runs, concurrent runs, broken specs and secrets: nothing lost, nothing duplicated, nothing leaked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from azure.mgmt.apimanagement.models import NamedValueCreateContract

from apimsync.emulators._server import FaultRule
from apimsync.emulators.latency import lro_only
from apimsync.emulators.sandbox import DEMO_SP_SECRET, DEMO_SP_SECRET_ENV, DEMO_TOKEN_ENV, Sandbox
from apimsync.errors import LockError
from apimsync.target import ApimTarget, location_poller

READY = 8  # APIs the shipped fixtures produce (not READY and schema-less ones are skipped)


def api_ids(box: Sandbox) -> list[str]:
    client = box.apim.client()
    return sorted(a.name for a in client.api.list_by_service(box.apim.RESOURCE_GROUP, box.apim.SERVICE))


def cli(box: Sandbox, config: Path, *args: str, extra_env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **box.env(), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "apimsync", *args, "--config", str(config)], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture
def config(sandbox: Sandbox, tmp_path: Path) -> Path:
    path = tmp_path / "apimsync.yaml"
    path.write_text(sandbox.config_yaml(), encoding="utf-8")
    return path


def test_killed_mid_apply_then_rerun_converges_without_duplicates(sandbox: Sandbox, config: Path) -> None:
    config.write_text(yaml.safe_dump(sandbox.config(concurrency=1)), encoding="utf-8")
    sandbox.apim.faults.configure(latency_ms=150)  # slow, one API at a time: the kill lands mid-apply
    env = {**os.environ, **sandbox.env()}
    proc = subprocess.Popen([sys.executable, "-m", "apimsync", "sync", "--config", str(config)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while sandbox.apim.stats()["apis"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    partial = sandbox.apim.stats()["apis"]
    assert 0 < partial < READY, "the kill should land mid-apply"
    sandbox.apim.faults.configure(latency_ms=0)
    # the dead run's lock is still there: a new run refuses, clearly, until it is broken or expires
    refused = cli(sandbox, config, "sync")
    assert refused.returncode == 1
    assert "holds the lock" in refused.stderr and "--force-lock" in refused.stderr
    assert "Traceback" not in refused.stderr
    rerun = cli(sandbox, config, "sync", "--force-lock")
    assert rerun.returncode == 0, rerun.stderr
    ids = api_ids(sandbox)
    assert len(ids) == len(set(ids)) == READY
    after = sandbox.engine().plan()
    assert not after.has_changes, [(c.api_id, c.reasons) for c in after.changes if c.reasons] + [
        (n.name, n.reasons) for n in after.named_values if n.reasons]


def test_concurrent_syncs_do_not_corrupt_each_other(sandbox: Sandbox) -> None:
    sandbox.apim.faults.configure(latency_ms=20)
    results: list[object] = []

    def run() -> None:
        try:
            results.append(sandbox.engine().sync())
        except LockError as exc:
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 2
    assert any(not isinstance(r, LockError) for r in results)
    ids = api_ids(sandbox)
    assert len(ids) == len(set(ids)) == READY
    sandbox.apim.faults.configure(latency_ms=0)
    report = sandbox.engine().sync()
    assert report.ok and not report.plan.has_changes


def _contend(box: Sandbox, name: str) -> tuple[list[tuple[ApimTarget, str]], list[LockError]]:
    """Two runs ask for the lock at the same moment; (who holds it, who was refused)."""
    contenders = [box.engine().apim for _ in range(2)]
    barrier = threading.Barrier(2)
    held: list[tuple[ApimTarget, str]] = []
    refused: list[LockError] = []

    def take(apim: ApimTarget) -> None:
        apim.lock.pause = 0.05
        barrier.wait()
        try:
            held.append((apim, apim.lock.acquire(name, 60)))
        except LockError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=take, args=(apim,)) for apim in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return held, refused


def test_two_first_runs_never_both_hold_the_lock(sandbox: Sandbox) -> None:
    """NamedValue_CreateOrUpdate takes If-Match but no If-None-Match (apimnamedvalues.json, 2024-05-01), so a
    named value cannot be created exclusively: before, two first runs both PUT the missing lock and, when one
    re-read before the other wrote, both went on. Now each run creates its own ticket and proceeds only when its
    ticket is the only one listed (apimsync/target.py states the protocol and why it is safe)."""
    name = sandbox.engine().lock_name
    for _ in range(8):
        held, refused = _contend(sandbox, name)
        assert len(held) == 1 and len(refused) == 1, "exactly one of two simultaneous first runs holds the lock"
        assert "holds the lock" in str(refused[0])
        apim, ticket = held[0]
        apim.lock.release(name, ticket)
    left = [nv.name for nv in sandbox.apim.client().named_value.list_by_service(
        sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE) if nv.name.startswith(name)]
    assert left == [], "no ticket is left behind"


def test_a_foreign_or_unreadable_ticket_never_crashes_the_lock(sandbox: Sandbox) -> None:
    """A ticket with a time without zone, or no JSON at all, is not a live lock: it is removed, not compared."""
    name = sandbox.engine().lock_name
    client = sandbox.apim.client()
    for suffix, value in (("naive", '{"owner": "x", "expires": "2999-01-01T00:00:00"}'), ("junk", "not json")):
        client.named_value.begin_create_or_update(
            sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE, f"{name}-{suffix}",
            NamedValueCreateContract(display_name=f"{name}-{suffix}", value=value), polling=location_poller(0.02)
        ).result()
    assert sandbox.engine().sync().ok


def test_stale_lock_expires_by_itself(sandbox: Sandbox) -> None:
    settings = sandbox.settings(lock_ttl_seconds=1)
    engine = sandbox.engine(settings)
    engine.apim.lock.acquire(engine.lock_name, 1)
    waiting = sandbox.engine(settings)
    waiting.apim.lock.pause = 0.01  # it gives up well within the holder's second
    with pytest.raises(LockError):
        waiting.sync()
    time.sleep(1.2)
    assert sandbox.engine(settings).sync().ok


def test_a_kept_lock_outlives_its_ttl_until_released(sandbox: Sandbox) -> None:
    """A run longer than the lock's TTL renews its ticket (every third of the TTL), so no other run can take the
    lock as stale while it works; once released, the next run takes it at once."""
    holder = sandbox.engine(sandbox.settings(lock_ttl_seconds=1))
    ticket = holder.apim.lock.acquire(holder.lock_name, 1)
    holder.apim.lock.keep(ticket, 1)
    time.sleep(1.5)  # past the TTL and its grace: without renewal the ticket would be stale
    waiting = sandbox.engine(sandbox.settings(lock_ttl_seconds=1))
    waiting.apim.lock.pause = 0.05
    with pytest.raises(LockError):
        waiting.apim.lock.acquire(waiting.lock_name, 1)
    holder.apim.lock.release(holder.lock_name, ticket)
    client, rg, svc = sandbox.apim.client(), sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    assert not [nv.name for nv in client.named_value.list_by_service(rg, svc) if "lock" in str(nv.name)], \
        "a renewal never re-creates a released ticket"
    taken = waiting.apim.lock.acquire(waiting.lock_name, 1)
    waiting.apim.lock.release(waiting.lock_name, taken)


BROKEN_SPECS = {
    "not JSON": "{ this is not json",
    "a BOM": "\ufeff" + json.dumps({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {"/x": {}}}),
    "swagger 2.0": json.dumps({"swagger": "2.0", "info": {"title": "t", "version": "1"}, "paths": {}}),
    "no paths": json.dumps({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}),
    "a JSON array": "[1, 2, 3]",
    "an external $ref": json.dumps({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {"/x": {
        "post": {"responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {
            "$ref": "other.json#/Thing"}}}}}}}}}),
    "over 4 MB": json.dumps({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {
        f"/p{i}": {"post": {"description": "x" * 1000, "responses": {"200": {"description": "ok"}}}}
        for i in range(4300)}}),
}


@pytest.mark.parametrize("case", sorted(BROKEN_SPECS))
def test_broken_spec_fails_its_endpoint_only(sandbox: Sandbox, case: str) -> None:
    sandbox.databricks.set_spec("openai-chat", BROKEN_SPECS[case])
    report = sandbox.engine().sync()
    (failure,) = report.plan.failures
    assert failure.endpoint == "openai-chat"
    assert failure.stage in ("fetch", "lint")
    assert "openai-chat" in failure.message or failure.findings
    assert "dbx-openai-chat" not in api_ids(sandbox), "nothing is published for the broken endpoint"
    assert len(api_ids(sandbox)) == READY - 1, "the other endpoints are synced"
    assert report.exit_code == 1


SECRETS = {"databricks": "dapi-SECRET-databricks-0001", "named_value": "dapi-SECRET-named-value-0002",
           "azure": "azure-SECRET-client-0003", "service principal": "dose-SECRET-sp-0004"}


def test_secrets_never_leak(sandbox: Sandbox, tmp_path: Path, config: Path) -> None:
    sandbox.databricks.token = SECRETS["databricks"]
    env = {"DATABRICKS_TOKEN": SECRETS["databricks"], DEMO_TOKEN_ENV: SECRETS["named_value"],
           "AZURE_CLIENT_SECRET": SECRETS["azure"], "AZURE_CLIENT_ID": "cid", "AZURE_TENANT_ID": "tid",
           DEMO_SP_SECRET_ENV: SECRETS["service principal"]}
    plan_file = tmp_path / "plan.json"
    outputs = []
    for args in (["--debug", "plan", "--out", str(plan_file)], ["--debug", "-o", "json", "sync"],
                 ["--log-level", "debug", "sync"], ["--debug", "import", "openai-chat"]):
        run = cli(sandbox, config, *args, extra_env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        outputs += [run.stdout, run.stderr]
    # rotation (the named value changes) and a failing write, at debug level too
    env[DEMO_TOKEN_ENV] = SECRETS["named_value"] + "-rotated"
    sandbox.apim.faults.add(FaultRule(method="PUT", path="namedValues", status=400, count=1))
    failing = cli(sandbox, config, "--debug", "sync", extra_env=env)
    outputs += [failing.stdout, failing.stderr]
    demo = subprocess.run([sys.executable, "-m", "apimsync", "--debug", "demo"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)
    outputs += [demo.stdout, demo.stderr]
    report = sandbox.engine(env={DEMO_TOKEN_ENV: SECRETS["named_value"]}).sync()
    outputs += [plan_file.read_text(), report.to_json(), str(report), report._repr_html_(),
                report.plan._repr_html_(), repr(report.plan)]
    everything = "\n".join(outputs)
    assert "DEBUG" in everything, "debug logging was on"
    for name, value in SECRETS.items():
        assert value not in everything, f"the {name} secret leaked"
    nv = sandbox.apim.client().named_value.get(sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE,
                                               "databricks-token-emulator")
    assert nv.secret is True


def test_policies_reference_named_values_never_literal_tokens(sandbox: Sandbox) -> None:
    sandbox.engine().sync()
    client = sandbox.apim.client()
    rg, svc = sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    for api_id in api_ids(sandbox):
        policy = client.api_policy.get(rg, svc, api_id, "policy", format="rawxml").value
        assert "{{databricks-token-emulator}}" in policy or "{{databricks-sp-secret-emulator}}" in policy
        assert sandbox.env()[DEMO_TOKEN_ENV] not in policy and DEMO_SP_SECRET not in policy


def test_tls_verification_is_on_by_default(sandbox: Sandbox) -> None:
    """Without the emulator's CA bundle the APIM client refuses the connection: no switch turns this off."""
    settings = sandbox.settings(apim={"ca_bundle": None})
    report_or_error: object
    try:
        report_or_error = sandbox.engine(settings).plan()
    except Exception as exc:
        report_or_error = exc
    assert "CERTIFICATE_VERIFY_FAILED" in str(report_or_error) or "certificate" in str(report_or_error).lower()


def test_load_2000_endpoints_under_throttling_and_5xx() -> None:
    from apimsync.emulators.apim import Throttle

    throttle = Throttle(enabled=True)
    with Sandbox(fixtures=None, endpoints=2000, throttle=throttle, time_scale=50, latency=lro_only(0.5)) as box:
        box.apim.faults.configure(fault_rate=0.01)
        settings = box.settings(concurrency=16)
        report = box.engine(settings).sync()
        box.apim.faults.configure(fault_rate=0.0)
        ids = api_ids(box)
        assert len(ids) == len(set(ids))
        if not report.ok:  # a 5xx that outlived the SDK's retries: the next run heals it
            report = box.engine(settings).sync()
        assert report.ok, report.failed[:5]
        assert len(api_ids(box)) == 2000
        assert not box.engine(settings).plan().has_changes
        assert box.apim.stats()["errors"] > 0


@pytest.mark.parametrize("name", ["../../2.0/serving-endpoints/churn-classifier", "churn-classifier?x=1",
                                  "../../outside", "a b"])
def test_a_name_never_becomes_a_path_of_its_own(sandbox: Sandbox, name: str) -> None:
    """A workspace is untrusted input: a name outside Databricks' characters fails that endpoint, with a reason,
    before any URL is built from it; the endpoint it imitates is published as usual."""
    item, spec = sandbox.databricks.endpoint_and_spec("openai-chat")
    assert item is not None
    sandbox.databricks.put_endpoint({**item, "name": name}, spec)
    before = sandbox.databricks.stats()["by_route"]
    report = sandbox.engine().sync()
    (failure,) = report.plan.failures
    assert failure.endpoint == name and "refused before it reaches a URL" in failure.message
    assert len(api_ids(sandbox)) == READY, "every other endpoint is published"
    after = sandbox.databricks.stats()["by_route"]
    fetched = READY + 1  # the no-signature endpoint is fetched, then skipped
    assert after["get"] - before["get"] == after["openapi"] - before["openapi"] == fetched, "none for the hostile"
