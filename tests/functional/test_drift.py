"""A no-op costs a handful of ARM reads (issue 24 §1): between drift checks each API's marker stands for its policy;
a drift check (``--refresh``, or ``drift_check_hours`` since the last one, kept in the lock) reads every policy and
repairs one edited outside apimsync."""

from __future__ import annotations

import time

from azure.mgmt.apimanagement.models import ApiCreateOrUpdateParameter, PolicyContract

from apimsync.arm import location_poller
from apimsync.changes import Action
from apimsync.emulators.sandbox import Sandbox
from apimsync.model import Marker

CHURN = "dbx-churn-classifier"


def _call(box: Sandbox) -> int:
    """The status of the request verify makes, through the gateway."""
    return int(box.sample_call()["status"])


def test_a_no_op_over_300_apis_reads_the_lock_the_api_list_and_the_named_value_only() -> None:
    with Sandbox(fixtures=None, endpoints=300) as box:
        first = box.engine().sync()
        assert first.ok and first.plan.count(Action.CREATE) == 300
        second = box.engine().sync()
        assert second.ok and not second.plan.has_changes
        # the lock (1), the API list (3 pages of 100), the named value (1): no policy, no link, no service read
        assert second.calls.get("reads", 0) <= 8 and second.calls.get("writes", 0) == 0, second.calls
        assert "not read" in second.plan.drift_check
        refreshed = box.engine().sync(refresh=True)  # reads every policy, finds nothing to write
        assert refreshed.ok and not refreshed.plan.has_changes and refreshed.calls.get("reads", 0) >= 300
        assert "every policy read" in refreshed.plan.drift_check


def test_a_policy_edited_outside_apimsync_is_repaired_on_refresh_and_on_the_scheduled_drift_check(
        sandbox: Sandbox) -> None:
    rg, svc = sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    client = sandbox.apim.client()
    assert sandbox.engine().sync().ok and _call(sandbox) == 200

    def edit() -> None:  # someone removes the credential in the portal: Databricks refuses the call
        client.api_policy.create_or_update(rg, svc, CHURN, "policy", PolicyContract(
            value="<policies><inbound><base /></inbound><backend><base /></backend><outbound><base /></outbound>"
                  "<on-error><base /></on-error></policies>", format="xml"))
        assert _call(sandbox) == 401

    edit()
    trusted = sandbox.engine().sync()  # within drift_check_hours: the marker stands for the policy
    assert trusted.ok and not trusted.plan.has_changes and _call(sandbox) == 401
    repaired = sandbox.engine().sync(refresh=True)
    (change,) = [c for c in repaired.plan.changes if c.api_id == CHURN]
    assert change.action is Action.UPDATE and [str(w) for w in change.writes] == ["policy"], change
    assert _call(sandbox) == 200
    assert sandbox.engine().sync().calls.get("writes", 0) == 0  # repaired: the next run writes nothing

    edit()
    hourly = sandbox.settings(drift_check_hours=0.0003)  # about a second
    time.sleep(1.2)
    scheduled = sandbox.engine(hourly).sync()
    assert [c.api_id for c in scheduled.plan.changes if c.action is Action.UPDATE] == [CHURN]
    assert "every policy read" in scheduled.plan.drift_check and _call(sandbox) == 200
    assert sandbox.engine().verify().ok


def test_an_api_published_before_policy_hashes_gets_its_hash_recorded_once(sandbox: Sandbox) -> None:
    rg, svc = sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    client = sandbox.apim.client()
    assert sandbox.engine().sync().ok
    api = client.api.get(rg, svc, CHURN)
    old = Marker.parse(api.api_revision_description)
    assert old is not None and old.policy
    without = str(Marker(old.workspace, old.endpoint, old.spec, old.settings, old.environment, old.source))
    client.api.begin_create_or_update(rg, svc, CHURN, ApiCreateOrUpdateParameter(
        path=api.path, display_name=api.display_name, service_url=api.service_url, protocols=api.protocols,
        api_revision_description=without), polling=location_poller(0.02)).result()
    upgraded = sandbox.engine().sync()  # its policy is read (no hash to trust) and the hash recorded
    (change,) = [c for c in upgraded.plan.changes if c.action is Action.UPDATE]
    assert change.api_id == CHURN and change.reasons == ("policy recorded",)
    assert [str(w) for w in change.writes] == ["api-settings"]
    assert sandbox.engine().sync().calls.get("writes", 0) == 0 and _call(sandbox) == 200
