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

from apimsync.arm import location_poller
from apimsync.emulators._server import FaultRule
from apimsync.emulators.latency import lro_only
from apimsync.emulators.sandbox import DEMO_SP_SECRET, DEMO_SP_SECRET_ENV, DEMO_TOKEN_ENV, Sandbox
from apimsync.errors import LockError
from apimsync.target import ApimTarget

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


def _contend(box: Sandbox, name: str, runs: int = 2) -> tuple[list[tuple[ApimTarget, str]], list[LockError]]:
    """``runs`` runs, each with its own SDK client, ask for the lock at the same moment; (who holds it, who was
    refused). The holders keep it until every run has answered, as a sync keeps it while it writes."""
    contenders = [box.engine().apim for _ in range(runs)]
    barrier = threading.Barrier(runs)
    done = threading.Barrier(runs)
    held: list[tuple[ApimTarget, str]] = []
    refused: list[LockError] = []
    errors: list[Exception] = []

    def take(apim: ApimTarget) -> None:
        apim.lock.pause = 0.15  # the default is 0.3: a creation that raced ours lands within it, even under load
        barrier.wait()
        try:
            held.append((apim, apim.lock.acquire(name, 60)))
        except LockError as exc:
            refused.append(exc)
        except Exception as exc:  # reported by the assertions: never a hung barrier
            errors.append(exc)
        finally:
            done.wait()

    threads = [threading.Thread(target=take, args=(apim,)) for apim in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return held, refused


def _lock_value(box: Sandbox, name: str) -> dict[str, object]:
    nv = box.apim.client().named_value.get(box.apim.RESOURCE_GROUP, box.apim.SERVICE, name)
    return dict(json.loads(nv.value))


def test_concurrent_first_runs_exactly_one_holds_the_lock() -> None:
    """NamedValue_CreateOrUpdate takes If-Match, and a write over a stale ETag is refused (412); a second write
    while one runs is refused too (409): so of 8 runs that find no lock, or the same free one, exactly one takes
    it, in each of 20 rounds, with the emulator's long-running-operation delays (a named value PUT answers 202
    and completes later). Each round uses a new lock, as 8 first runs on an empty APIM would."""
    with Sandbox(latency=lro_only(0.1)) as box:
        for round_ in range(20):
            name = f"apimsync-lock-round{round_}"
            held, refused = _contend(box, name, runs=8)
            assert len(held) == 1 and len(refused) == 7, f"round {round_}: {len(held)} runs hold the lock"
            assert all("holds the lock" in str(exc) for exc in refused)
            apim, ticket = held[0]
            assert _lock_value(box, name)["owner"] == ticket
            apim.lock.release(name, ticket)
            assert _lock_value(box, name)["owner"] is None, "released: the lock is free, not deleted"


def test_two_syncs_started_together_apply_once(sandbox: Sandbox) -> None:
    """Two whole syncs on an empty APIM at the same moment: one applies every API, the other stops with the lock
    error before any write of its own."""
    engines = [sandbox.engine() for _ in range(2)]
    for engine in engines:
        engine.apim.lock.pause = 0.05
    barrier = threading.Barrier(2)
    results: list[object] = []

    def run(engine: object) -> None:
        barrier.wait()
        try:
            results.append(engine.sync())  # type: ignore[attr-defined]
        except LockError as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    reports = [r for r in results if not isinstance(r, LockError)]
    assert len(reports) == 1 and len(results) == 2
    assert reports[0].ok and len(api_ids(sandbox)) == READY  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", ['{"owner": "x", "expires": "2999-01-01T00:00:00"}', "not json", "[]",
                                   '{"owner": "forged", "expires": "9999-12-31T23:59:59+00:00", "ttl": 1e308}',
                                   '{"owner": "x", "expires": "99999-01-01T00:00:00+00:00"}',
                                   '{"owner": {"a": 1}, "expires": 5, "ttl": "x"}'])
def test_a_foreign_forged_or_unreadable_lock_never_crashes_a_run(sandbox: Sandbox, value: str) -> None:
    """Whatever the lock's value says, a run reads it without a traceback: unreadable is free, a hold until the
    year 9999 holds (the run stops with the lock error, exit 1), and --force-lock takes any of them."""
    engine = sandbox.engine()
    client = sandbox.apim.client()
    client.named_value.begin_create_or_update(
        sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE, engine.lock_name,
        NamedValueCreateContract(display_name=engine.lock_name, value=value), polling=location_poller(0.02)).result()
    engine.apim.lock.pause = 0.01
    if "9999-12-31" in value:  # a forged hold holds: the run stops with the lock error
        with pytest.raises(LockError, match=r"holds the lock.*9999"):
            engine.sync()
    else:
        assert engine.sync().ok
    forced = sandbox.engine()
    forced.apim.lock.pause = 0.01
    assert forced.sync(force_lock=True).ok
    assert _lock_value(sandbox, engine.lock_name)["owner"] is None


def test_a_lock_taken_from_its_holder_stops_its_writes(sandbox: Sandbox) -> None:
    """A holder whose lock was broken (--force-lock by another run) notices at its next renewal and starts no
    further write; it does not take the lock back."""
    settings = sandbox.settings(lock_ttl_seconds=1)
    holder = sandbox.engine(settings)
    holder.apim.lock.pause = 0.01
    ticket = holder.apim.lock.acquire(holder.lock_name, 1)
    holder.apim.lock.keep(ticket, holder.lock_name, 1)
    breaker = sandbox.engine(settings)
    breaker.apim.lock.pause = 0.01
    taken = breaker.apim.lock.acquire(breaker.lock_name, 60, force=True)
    deadline = time.monotonic() + 5
    while not holder.apim.lock.lost(ticket) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holder.apim.lock.lost(ticket)
    holder.apim.lock.release(holder.lock_name, ticket)
    assert _lock_value(sandbox, holder.lock_name)["owner"] == taken, "the old holder never frees another's lock"
    breaker.apim.lock.release(breaker.lock_name, taken)


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
    holder.apim.lock.pause = 0.01
    ticket = holder.apim.lock.acquire(holder.lock_name, 1)
    holder.apim.lock.keep(ticket, holder.lock_name, 1)
    time.sleep(1.5)  # past the TTL and its grace: without renewal the ticket would be stale
    waiting = sandbox.engine(sandbox.settings(lock_ttl_seconds=1))
    waiting.apim.lock.pause = 0.05
    with pytest.raises(LockError):
        waiting.apim.lock.acquire(waiting.lock_name, 1)
    holder.apim.lock.release(holder.lock_name, ticket)
    assert _lock_value(sandbox, holder.lock_name)["owner"] is None, "a renewal never takes a released lock back"
    taken = waiting.apim.lock.acquire(waiting.lock_name, 1)
    waiting.apim.lock.release(waiting.lock_name, taken)


BROKEN_SPECS = {
    "not JSON": "{ this is not json",
    "a BOM": "\ufeff" + json.dumps({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {"/x": {}}}),
    "swagger 2.0": json.dumps({"swagger": "2.0", "info": {"title": "t", "version": "1"}, "paths": {}}),
    "no paths": json.dumps({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}),
    "a JSON array": "[1, 2, 3]",
    "an external $ref": json.dumps({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {
        "/invocations": {
        "post": {"responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {
            "$ref": "other.json#/Thing"}}}}}}}}}),
    "over 4 MB": json.dumps({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {
        "/invocations": {"post": {"description": "x" * 4_300_000, "responses": {"200": {"description": "ok"}}}}}}),
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
        policy = client.api_policy.get(rg, svc, api_id, "policy", format="xml").value
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
    assert after["openapi"] - before["openapi"] == fetched, "none for the hostile"
    # details only where the list does not say enough: route-optimized endpoints, and those without a spec (gone
    # since the list, or serving none: a custom model without a signature, an Agent Bricks endpoint)
    listed = [sandbox.databricks.endpoint_and_spec(n) for n in sandbox.databricks.endpoint_names() if n != name]
    needing = [item for item, spec in listed if item and (item.get("state") or {}).get("ready") == "READY"
               and item.get("endpoint_type") != "FOUNDATION_MODEL_API"  # not selected by default
               and (item.get("route_optimized") or spec is None)]
    assert after["get"] - before["get"] == len(needing) >= 2
