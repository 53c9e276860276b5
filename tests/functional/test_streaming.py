"""A sync starts each API's writes as soon as that API is planned, while other specs are still being fetched, and
still applies exactly what ``plan`` shows; deletes wait for the complete plan."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from apimsync.changes import Action
from apimsync.emulators._server import FaultRule
from apimsync.emulators.sandbox import Sandbox

SLOW = "churn-classifier"  # its spec takes seconds to come back


def test_creates_start_while_another_spec_is_still_being_fetched(sandbox: Sandbox) -> None:
    planned = sandbox.engine().plan()
    created = {c.api_id for c in planned.changes if c.action is Action.CREATE}
    slow_id = next(c.api_id for c in planned.changes if c.endpoint == SLOW)
    others = created - {slow_id}
    assert others and slow_id in created
    sandbox.databricks.faults.add(FaultRule(path=f"{SLOW}/openapi$", delay_s=5.0))
    client, rg, svc = sandbox.apim.client(), sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    result: dict[str, Any] = {}
    run = threading.Thread(target=lambda: result.update(report=sandbox.engine().sync()))
    run.start()
    seen_early = False
    while run.is_alive():  # the other APIs exist while the slow spec is still on its way
        ids = {str(a.name) for a in client.api.list_by_service(rg, svc)}
        seen_early = seen_early or (others <= ids and slow_id not in ids)
        time.sleep(0.1)
    run.join()
    report = result["report"]
    assert seen_early, "every other API was written before the slow endpoint's spec arrived"
    assert report.ok, report.failed
    assert {o.api_id for o in report.outcomes if o.action is Action.CREATE} == created
    # callable, the streamed ones and the late one alike: a request through the gateway, answered by the model
    checks = sandbox.engine().verify()
    assert checks.ok, str(checks)
    assert {c.api_id for c in checks.checks} >= created


def test_a_streamed_sync_applies_exactly_the_plan(sandbox: Sandbox) -> None:
    """``plan`` and the sync that follows decide the same (one checksum), and the sync writes each planned change
    once, whether it was streamed or applied with the complete plan."""
    assert sandbox.engine().sync().ok
    settings = sandbox.settings(naming={"display_name": "Model {endpoint}"}, prune={"enabled": True})
    sandbox.databricks.remove_endpoint("openai-chat")  # a delete, which waits for the complete plan
    planned = sandbox.engine(settings).plan(force=True)
    report = sandbox.engine(settings).sync(force=True)
    assert report.plan.checksum == planned.checksum
    wanted = sorted((c.api_id, c.action) for c in planned.changes if c.action is not Action.NOOP)
    assert Action.DELETE in {a for _, a in wanted} and Action.UPDATE in {a for _, a in wanted}
    assert sorted((o.api_id, o.action) for o in report.outcomes) == wanted
    assert report.ok, report.failed
    assert not sandbox.engine(settings).plan().has_changes


def test_a_plan_that_fails_after_writes_began_releases_the_lock(sandbox: Sandbox) -> None:
    """A new API is written while the plan is still being made; when the plan then fails (APIM refuses to show a
    policy on a drift check), what was started finishes, nothing more starts, and the lock is released."""
    import pytest

    from apimsync.errors import TargetError

    assert sandbox.engine().sync().ok
    item, spec = sandbox.databricks.endpoint_and_spec("churn-classifier")
    assert item is not None
    sandbox.databricks.put_endpoint({**item, "name": "churn-classifier-2", "id": "churn2"}, spec)
    sandbox.apim.faults.add(FaultRule(method="GET", path="policies/policy$", status=403, count=None))
    with pytest.raises(TargetError, match="policy"):
        sandbox.engine().sync(refresh=True)  # a drift check: every policy is read
    client, rg, svc = sandbox.apim.client(), sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    locks = [json.loads(nv.value) for nv in client.named_value.list_by_service(rg, svc) if "lock" in str(nv.name)]
    assert locks and all(lock["owner"] is None for lock in locks), "the lock is free again"
    assert "dbx-churn-classifier-2" in {str(a.name) for a in client.api.list_by_service(rg, svc)}, \
        "the create streamed before the plan failed was carried out"
    sandbox.apim.faults.clear()
    assert sandbox.engine().sync().ok and not sandbox.engine().plan().has_changes
