"""Faults against the emulators: every run finishes, every API that can be synced is, each failure is reported
per API with its cause, nothing unowned is touched, and the next run converges."""

from __future__ import annotations

import json

import pytest

from apimsync.arm import location_poller
from apimsync.changes import Action
from apimsync.emulators._server import FaultRule
from apimsync.emulators.apim import Throttle
from apimsync.emulators.sandbox import Sandbox

READY = 8  # APIs the shipped fixtures produce (not READY and schema-less ones are skipped)


def api_ids(box: Sandbox) -> list[str]:
    client = box.apim.client()
    return sorted(a.name for a in client.api.list_by_service(box.apim.RESOURCE_GROUP, box.apim.SERVICE))


def converges(box: Sandbox) -> None:
    """A further sync succeeds and leaves a plan with nothing to do."""
    report = box.engine().sync()
    assert report.ok, report.failed
    plan = box.engine().plan()
    assert not plan.has_changes
    assert len([c for c in plan.changes if c.action is Action.NOOP]) == READY


def test_arm_429_storm_is_ridden_out() -> None:
    throttle = Throttle(enabled=True, reads=(20, 200), writes=(4, 20), deletes=(4, 20))
    with Sandbox(throttle=throttle) as box:
        engine = box.engine()
        engine.apim._gate.pacing = False  # pacing would avoid the storm: ride it out unpaced
        report = engine.sync()
        assert report.ok, report.failed
        assert box.apim.stats()["throttled"] > 0
        assert report.calls["throttled"] > 0
        assert len(api_ids(box)) == READY
        converges(box)


def test_the_client_paces_itself_from_the_remaining_counts_before_meeting_429s() -> None:
    """ARM reports the tokens left after each call (x-ms-ratelimit-remaining-subscription-{reads,writes,deletes},
    Learn "Understand how Azure Resource Manager throttles requests"); the client slows down as they run low, so
    a sync that needs more writes than the bucket holds meets (almost) no 429. Counts only, no timing.

    Both runs write 16 APIs at a time: without pacing (a switch only this test turns), 128 writers racing for 40
    tokens a second can lose one request's ten retries in a row, which is the point of pacing, not of this test."""
    throttled = {}
    for pacing in (True, False):
        with Sandbox(fixtures=None, endpoints=60, throttle=Throttle(enabled=True, writes=(20, 10)),
                     time_scale=4) as box:
            engine = box.engine(box.settings(apply_concurrency=16))
            engine.apim._gate.pacing = pacing
            report = engine.sync()
            assert report.ok and len(api_ids(box)) == 60
            throttled[pacing] = box.apim.stats().get("throttled", 0)
            assert (report.calls.get("paced", 0) > 0) is pacing
    assert throttled[True] <= 2, throttled
    assert throttled[False] > throttled[True] + 5, "without pacing the bucket runs dry"


def test_bursts_of_5xx_are_retried(sandbox: Sandbox) -> None:
    sandbox.apim.faults.add(FaultRule(method="PUT", path="/apis/", status=503, count=3, retry_after=0))
    sandbox.apim.faults.add(FaultRule(method="GET", path="/apis$", status=500, count=1, retry_after=0))
    report = sandbox.engine().sync()
    assert report.ok, report.failed
    assert sandbox.apim.stats()["errors"] >= 4
    converges(sandbox)


def test_connection_dropped_mid_put(sandbox: Sandbox) -> None:
    sandbox.apim.faults.add(FaultRule(method="PUT", path="/apis/dbx-openai-chat$", drop=True, count=1))
    report = sandbox.engine().sync()
    assert len(api_ids(sandbox)) == READY or not report.ok
    converges(sandbox)
    assert api_ids(sandbox).count("dbx-openai-chat") == 1


def test_long_running_operation_ending_failed_fails_that_api_only(sandbox: Sandbox) -> None:
    sandbox.apim.faults.add(FaultRule(method="PUT", path="/apis/dbx-churn-classifier$", lro_fail=True, count=1))
    report = sandbox.engine().sync()
    failed = [o for o in report.outcomes if not o.ok]
    assert [o.api_id for o in failed] == ["dbx-churn-classifier"]
    assert "writing API dbx-churn-classifier" in (failed[0].error or "")
    assert report.exit_code == 1
    assert "dbx-churn-classifier" not in api_ids(sandbox)
    assert len(api_ids(sandbox)) == READY - 1
    converges(sandbox)


def test_pessimistic_concurrency_conflict_is_retried(sandbox: Sandbox) -> None:
    sandbox.apim.faults.add(FaultRule(method="PUT", path="/apis/dbx-openai-chat/policies", status=409, count=2))
    report = sandbox.engine().sync()
    assert report.ok, report.failed
    converges(sandbox)


def test_etag_race_fails_the_api_and_the_next_run_converges(sandbox: Sandbox) -> None:
    sandbox.engine().sync()
    sandbox.engine(sandbox.settings(naming={"display_name": "v2 {endpoint}"})).plan()
    sandbox.apim.faults.add(FaultRule(method="PUT", path="/apis/dbx-openai-chat$", status=412, count=1))
    settings = sandbox.settings(naming={"display_name": "v2 {endpoint}"})
    report = sandbox.engine(settings).sync()
    failed = [o for o in report.outcomes if not o.ok]
    assert [o.api_id for o in failed] == ["dbx-openai-chat"]
    assert "412" in (failed[0].error or "")
    again = sandbox.engine(settings).sync()
    assert again.ok
    assert not sandbox.engine(settings).plan().has_changes


def test_changed_since_plan_is_refused_not_overwritten(sandbox: Sandbox) -> None:
    """Apply re-reads each API: one edited between plan and apply is left alone for the next run."""
    sandbox.engine().sync()
    settings = sandbox.settings(naming={"display_name": "v2 {endpoint}"})
    engine = sandbox.engine(settings)
    plan = engine.plan()
    client = sandbox.apim.client()
    rg, svc = sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    from azure.mgmt.apimanagement.models import ApiCreateOrUpdateParameter

    client.api.begin_create_or_update(rg, svc, "dbx-openai-chat", ApiCreateOrUpdateParameter(
        path="serving/openai-chat", api_revision_description="someone else's now"),
        polling=location_poller(0.05)).result()
    report = engine.apply(plan)
    (failed,) = [o for o in report.outcomes if not o.ok]
    assert failed.api_id == "dbx-openai-chat" and "marker" in (failed.error or "")
    api = client.api.get(rg, svc, "dbx-openai-chat")
    assert api.api_revision_description == "someone else's now"


@pytest.mark.parametrize("fault", [
    FaultRule(path="/serving-endpoints$", status=429, retry_after=0, count=2),
    FaultRule(path="/openapi$", status=503, retry_after=0, count=2),
])
def test_databricks_throttling_and_unavailability_are_retried(sandbox: Sandbox, fault: FaultRule) -> None:
    sandbox.databricks.faults.add(fault)
    report = sandbox.engine().sync()
    assert report.ok, report.failed
    assert len(api_ids(sandbox)) == READY


def test_databricks_plain_text_error_fails_that_endpoint_only(sandbox: Sandbox) -> None:
    sandbox.engine().sync()
    spec = json.loads(sandbox.workspace_client().serving_endpoints.get_open_api("openai-chat").contents.read())
    spec["info"]["description"] = "changed"
    item, _ = sandbox.databricks.endpoint_and_spec("openai-chat")
    assert item is not None
    item["config"]["config_version"] = 2  # a new deployment (another external model): the spec is fetched again
    item["config"]["served_entities"][0]["external_model"]["name"] = "gpt-4o-next"
    sandbox.databricks.put_endpoint(item, spec)
    sandbox.databricks.faults.add(FaultRule(path="openai-chat/openapi$", status=503, body="upstream proxy error",
                                            count=None))
    report = sandbox.engine().sync(prune=True, force=True)
    (failure,) = report.plan.failures
    assert failure.endpoint == "openai-chat" and failure.stage == "fetch"
    assert "dbx-openai-chat" in api_ids(sandbox), "a failed fetch holds the API, never deletes it"
    sandbox.databricks.faults.clear()
    converges(sandbox)


def test_databricks_timeout_fails_that_endpoint_only(sandbox: Sandbox) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    client = WorkspaceClient(config=Config(host=sandbox.databricks.url, token=sandbox.databricks.token,
                                           auth_type="pat", http_timeout_seconds=1, retry_timeout_seconds=2))
    sandbox.databricks.faults.add(FaultRule(path="image-embedder/openapi$", delay_s=3, count=None))
    from apimsync.engine import Engine

    report = Engine(sandbox.settings(), workspace_clients={"emulator": client}, env=sandbox.env()).sync()
    assert [f.endpoint for f in report.plan.failures] == ["image-embedder"]
    assert len(api_ids(sandbox)) == READY - 1
