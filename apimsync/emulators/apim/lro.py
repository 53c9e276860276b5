"""Long-running operations: Location + Azure-AsyncOperation, provisioningState InProgress until due."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from apimsync.emulators._server import Response
from apimsync.emulators.apim.common import (
    API_VERSION,
    ArmError,
    Service,
    not_found,
)
from apimsync.emulators.apim.state import now


@dataclass
class Operation:
    """A long-running operation: ``finish`` applies its effect when due (unless it fails)."""

    id: str
    location: str
    async_code: int
    due: float
    finish: Any
    fail: bool = False
    started: str = field(default_factory=now)
    status: str = "InProgress"
    busy_key: str | None = None  # the entity whose writes are refused (409) while this runs


class LongRunning(Service):
    def _start_lro(self, resource: str, async_code: int, finish: Any, lro_fail: bool, busy_key: str | None, *,
                   body: dict[str, Any] | None, status: int, etag: str | None = None, spec_bytes: int = 0) -> Response:
        op_id = uuid.uuid4().hex[:24]
        fail = lro_fail or self.faults.roll_lro_failure()
        location = (f"{self.url}{self.base_path}/{resource}?api-version={API_VERSION}&asyncId={op_id}"
                    f"&asyncCode={async_code}")
        seconds = self.latency.lro(resource, spec_bytes)
        due = time.monotonic() + seconds / self.time_scale
        self._operations[op_id] = Operation(op_id, location, async_code, due, finish, fail, busy_key=busy_key)
        headers = {"Location": location,
                   "Azure-AsyncOperation": f"{self.url}{self.base_path}/tenant/operationResults/{op_id}"
                                           f"?api-version={API_VERSION}"}
        if etag:
            headers["ETag"] = etag
        if seconds <= 0:
            self._advance()
        return Response.json(status, body, headers) if body is not None else Response(status, b"", headers)

    def _busy(self, key: str, what: str = "API") -> None:
        """409 PessimisticConcurrencyConflict while a write to ``key`` runs: APIM's answer to a second write on an
        entity whose operation is in progress ("Operation on the API is in progress", Azure/apiops#497,
        apiops-cli#252). One write at a time is also what makes an If-Match compare-and-swap exact: the second
        writer is refused now and finds the new ETag afterwards (412)."""
        for op in self._operations.values():
            if op.busy_key == key and op.status == "InProgress":
                raise ArmError(409, "PessimisticConcurrencyConflict", f"Operation on the {what} is in progress")

    def _advance(self) -> None:
        """Finish due operations (called under the lock on every request)."""
        now = time.monotonic()
        changed = False
        for op in self._operations.values():
            if op.status == "InProgress" and op.due <= now:
                if op.fail:
                    op.status = "Failed"
                else:
                    op.finish()
                    op.status = "Succeeded"
                    changed = True
        if len(self._operations) > 10000:  # keep memory bounded on long benchmark runs
            for key in [k for k, o in self._operations.items() if o.status != "InProgress"][:5000]:
                del self._operations[key]
        if changed:
            self._save()

    def _poll(self, op_id: str) -> Response:
        op = self._operations.get(op_id)
        if op is None:
            raise not_found("Operation")
        if op.status == "InProgress":
            return Response(202, b"", {"Location": op.location})
        if op.status == "Failed":
            raise ArmError(500, "OperationFailed", "The long-running operation failed.")
        resource = op.location.split("?", 1)[0][len(self.url + self.base_path) + 1:]
        parts = [unquote(p) for p in resource.split("/")]
        if op.async_code == 204:
            return Response(204)
        if parts[0] == "apis":
            base, rev = self._split(parts[1])
            entry = self._state.apis.get(base)
            if entry is None:
                raise not_found("API")
            return Response.json(op.async_code, self._api_body(base, rev),
                                 {"ETag": entry["revisions"][rev or entry["current"]]["etag"]})
        if parts[0] == "namedValues":
            return Response.json(op.async_code, self._nv_body(parts[1]),
                                 {"ETag": self._state.named_values[parts[1]]["etag"]})
        return Response(op.async_code)

    def _operation_result(self, op_id: str) -> Response:
        """APIM's OperationResultContract: the status sits under properties, not at the top (the SDK 5.0.0
        default poller cannot read it: Azure/azure-sdk-for-python#40909)."""
        op = self._operations.get(op_id)
        if op is None:
            raise not_found("Operation result")
        props: dict[str, Any] = {"status": op.status, "started": op.started, "updated": now()}
        if op.status == "Failed":
            props["error"] = {"code": "OperationFailed", "message": "The long-running operation failed."}
        return Response.json(200, {"id": self.arm_id("tenant", "operationResults", op_id),
                                   "type": "Microsoft.ApiManagement/service/tenant/operationResults",
                                   "name": op_id, "properties": props})
