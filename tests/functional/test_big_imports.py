"""Big imports (issue 24 §3): a large spec takes minutes to import (340-670 KB: over 7.5 minutes on the Developer
tier, Azure/apiops-cli#251) and APIM refuses other writes to the entity meanwhile (409 PessimisticConcurrencyConflict,
apiops-cli#252). The emulator's import time grows with the spec (apimsync/emulators/latency.py); time runs 60 times
faster here, so 8 emulated minutes take 8 seconds."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from azure.mgmt.apimanagement.models import NamedValueCreateContract

from apimsync.arm import location_poller
from apimsync.changes import Action
from apimsync.emulators.latency import Latency
from apimsync.emulators.sandbox import DEMO_TOKEN_ENV, Sandbox

SCALE = 60.0
LATENCY = Latency(api_import=10.0, api_import_per_kb=0.78, named_value=240.0)  # as REALISTIC; a slow named value


def _wide_model(box: Sandbox, columns: int) -> None:
    """A custom model with ``columns`` input features: its published spec is one big request schema."""
    item, spec = box.databricks.endpoint_and_spec("churn-classifier")
    assert item is not None and spec is not None
    names = [f"feature_{i:05d}_measured_in_the_warehouse" for i in range(columns)]
    records = {"type": "array", "items": {"type": "object", "required": names[:10], "properties": {
        n: {"type": "number", "format": "double", "description": f"{n.replace('_', ' ')}"} for n in names}}}
    wide: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": "wide-model", "version": "1"}, "paths": {
        "/served-models/wide-1/invocations": {"post": {"requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"dataframe_records": records}}}}},
            "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"predictions": {"type": "array", "items": {"type": "number"}}}}}}}}}}}}
    entry = copy.deepcopy(item)
    entry.update(name="wide-model", id="0wide0model0")
    entry["config"] = {"served_entities": [{"name": "wide-1", "entity_name": "main.ml.wide", "entity_version": "1"}]}
    box.databricks.put_endpoint(entry, wide)


def test_a_600_kb_spec_imports_for_eight_emulated_minutes_while_the_other_apis_finish_first() -> None:
    with Sandbox(latency=LATENCY, time_scale=SCALE) as box:
        _wide_model(box, 4450)
        planned = next(c for c in box.engine().plan().changes if c.endpoint == "wide-model")
        assert planned.desired is not None and planned.desired.spec_json is not None
        size = len(planned.desired.spec_json.encode("utf-8"))
        assert 550_000 <= size <= 700_000, size
        assert 7 * 60 <= LATENCY.lro("apis/dbx-wide-model", size) <= 9 * 60  # the model: about 8 minutes
        started = time.monotonic()
        report = box.engine().sync()
        assert report.ok, str(report)
        assert time.monotonic() - started >= 7 * 60 / SCALE  # it waited for the import: no timeout cut it short
        policies = [path for method, path, _ in box.apim.journal if method == "PUT" and path.endswith("/policy")]
        assert len(policies) == len(report.outcomes) and policies[-1] == "/apis/dbx-wide-model/policies/policy"
        (wide,) = [o for o in report.outcomes if o.api_id == "dbx-wide-model"]
        others = [o for o in report.outcomes if o.api_id != "dbx-wide-model"]
        assert all(o.seconds < wide.seconds / 2 for o in others)  # none waited for it
        assert box.sample_call("wide-model")["status"] == 200
        assert box.engine().sync().calls.get("writes", 0) == 0


def test_a_write_refused_while_another_operation_runs_on_the_entity_is_retried_until_it_ends(
        monkeypatch: Any) -> None:
    """Someone else's write to the token's named value runs for 4 emulated minutes; the rotation apimsync makes
    meanwhile is refused (409) and retried with back-off until it goes through."""
    with Sandbox(latency=LATENCY, time_scale=SCALE) as box:
        assert box.engine().sync().ok
        client, rg, svc = box.apim.client(), box.apim.RESOURCE_GROUP, box.apim.SERVICE
        other = threading.Thread(target=lambda: client.named_value.begin_create_or_update(
            rg, svc, "databricks-token-emulator", NamedValueCreateContract(
                display_name="databricks-token-emulator", value="dapi-emulator-token", secret=True),
            polling=location_poller(0.05)).result())
        other.start()
        time.sleep(0.5)  # its operation is running now
        rotated = box.engine(env={DEMO_TOKEN_ENV: "dapi-rotated"}).sync()
        other.join()
        (written,) = rotated.named_values
        assert written.ok and written.seconds >= 2.0, written  # it waited for the other operation
        assert not [c for c in rotated.plan.changes if c.action is not Action.NOOP]
        assert client.named_value.list_value(rg, svc, "databricks-token-emulator").value == "dapi-rotated"
