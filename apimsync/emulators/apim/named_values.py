"""Named values: plain, secret or Key Vault references; long-running writes; listValue."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from apimsync.emulators._server import Request, Response
from apimsync.emulators.apim.common import (
    NAMED_VALUE_DISPLAY,
    TYPES,
    ArmError,
    Service,
    not_found,
)
from apimsync.emulators.apim.state import now
from apimsync.emulators.gateway import NAMED_VALUE_REF


class NamedValues(Service):
    def _nv_body(self, nv_id: str, *, state: str = "Succeeded") -> dict[str, Any]:
        nv = self._state.named_values[nv_id]
        props: dict[str, Any] = {"displayName": nv["displayName"], "tags": nv.get("tags") or [],
                                 "secret": nv.get("secret", False), "provisioningState": state}
        if not nv.get("secret") and not nv.get("keyVault"):
            props["value"] = nv.get("value")
        if nv.get("keyVault"):
            props["keyVault"] = {**nv["keyVault"], "lastStatus": {"code": "Success", "timeStampUtc": now()}}
        return {"id": self.arm_id("namedValues", nv_id), "type": TYPES["namedValues"], "name": nv_id,
                "properties": props}

    def _named_value(self, request: Request, nv_id: str, lro_fail: bool) -> Response:
        m = request.method
        nvs = self._state.named_values
        if m == "GET":
            if request.query.get("asyncId"):
                return self._poll(request.query["asyncId"])
            if nv_id not in nvs:
                raise not_found("Named value")
            return Response.json(200, self._nv_body(nv_id), {"ETag": nvs[nv_id]["etag"]})
        if m == "DELETE":
            if nv_id not in nvs:
                return Response(204)
            self._busy(f"namedValues/{nv_id}", "named value")
            self._check_if_match(request, nvs[nv_id]["etag"], required=True)
            name = nvs[nv_id]["displayName"]
            for entry in self._state.apis.values():
                for r in entry["revisions"].values():
                    if r.get("policy") and name in NAMED_VALUE_REF.findall(r["policy"]["value"]):
                        raise ArmError(400, "ValidationError", f"Named value '{name}' is in use by a policy.")
            del nvs[nv_id]
            self._save()
            return Response(200)
        if m == "PUT":
            props = (request.json() or {}).get("properties") or {}
            display = props.get("displayName")
            if not display or not NAMED_VALUE_DISPLAY.match(display) or len(display) > 256:
                raise ArmError(400, "ValidationError", "Property 'displayName' is required and may only contain "
                                                       "letters, digits, '-', '.', '_'.")
            key_vault = props.get("keyVault")
            value = props.get("value")
            if not key_vault and (not isinstance(value, str) or not value.strip() or len(value) > 4096):
                raise ArmError(400, "ValidationError", "Property 'value' is required (1-4096 characters).")
            if len(props.get("tags") or []) > 32:  # NamedValueEntityBaseParameters.tags: maxItems 32
                raise ArmError(400, "ValidationError", "A named value has at most 32 tags.")
            self._busy(f"namedValues/{nv_id}", "named value")
            if nv_id in nvs:
                self._check_if_match(request, nvs[nv_id]["etag"], required=False)
            elif request.headers.get("if-match") not in (None, "*"):
                raise ArmError(412, "PreconditionFailed", "The named value does not exist.")
            created = nv_id not in nvs
            etag = self._etag()
            record = {"displayName": display, "value": None if key_vault else value,
                      "secret": bool(props.get("secret")), "tags": list(props.get("tags") or []),
                      "keyVault": {k: v for k, v in (key_vault or {}).items() if k in (
                          "secretIdentifier", "identityClientId")} or None, "etag": etag}

            def finish() -> None:
                nvs[nv_id] = record

            pending = {"id": self.arm_id("namedValues", nv_id), "type": TYPES["namedValues"], "name": nv_id,
                       "properties": {"displayName": display, "secret": record["secret"], "tags": record["tags"],
                                      "provisioningState": "InProgress"}}
            return self._start_lro(f"namedValues/{quote(nv_id, safe='')}", 201 if created else 200, finish, lro_fail,
                                   f"namedValues/{nv_id}", body=pending, status=201 if created else 200, etag=etag)
        raise ArmError(405, "MethodNotAllowed", f"{m} is not allowed on a named value.")

    @staticmethod
    def _nv_value(nv: dict[str, Any]) -> str:
        if nv.get("keyVault"):
            return f"kv-secret-from:{nv['keyVault'].get('secretIdentifier')}"
        return str(nv.get("value") or "")
