"""API policies: raw XML stored re-serialised as APIM does; named values must exist."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from apimsync.emulators._server import Request, Response
from apimsync.emulators.apim.common import (
    TYPES,
    ArmError,
    Service,
    not_found,
)
from apimsync.emulators.gateway import NAMED_VALUE_REF


def reserialize(xml: str) -> str:
    """APIM stores policies re-indented with tabs and CRLF line ends (research/apim.md §2.3)."""
    lines = [line.rstrip() for line in xml.replace("\r\n", "\n").strip().split("\n")]
    out = []
    for line in lines:
        stripped = line.lstrip(" \t")
        depth = (len(line) - len(stripped)) // 2
        out.append("\t" * depth + stripped)
    return "\r\n".join(out)


class Policies(Service):
    def _policy(self, request: Request, api_id: str, policy_id: str) -> Response:
        if policy_id != "policy":
            raise ArmError(400, "ValidationError", "Policy identifier must be 'policy'.")
        r = self._revision(api_id)
        m = request.method
        pid = self.arm_id("apis", api_id, "policies", "policy")
        if m in ("GET", "HEAD"):
            policy = r.get("policy")
            if policy is None:
                raise not_found("Policy")
            # properties carry the value only (ApiManagementGetApiPolicy.json, ...CreateApiPolicy.json)
            body = {"id": pid, "type": TYPES["policies"], "name": "policy", "properties": {"value": policy["value"]}}
            return Response.json(200, body, {"ETag": policy["etag"]}) if m == "GET" else Response(
                200, b"", {"ETag": policy["etag"]})
        if m == "DELETE":
            if r.get("policy") is None:
                return Response(204)
            self._check_if_match(request, r["policy"]["etag"], required=True)
            r["policy"] = None
            self._save()
            return Response(200)
        if m == "PUT":
            self._busy(self._split(api_id)[0])
            props = (request.json() or {}).get("properties") or {}
            value, fmt = str(props.get("value") or ""), props.get("format", "xml")
            if fmt not in ("xml", "rawxml"):
                raise ArmError(400, "ValidationError", f"Policy format '{fmt}' is not supported by the emulator.")
            if r.get("policy") is not None:
                self._check_if_match(request, r["policy"]["etag"], required=False)
            try:
                ET.fromstring(value or "")
            except ET.ParseError as exc:
                line, column = exc.position
                raise ArmError(400, "ValidationError", "One or more fields contain incorrect values:", [{
                    "code": "ValidationError", "target": "policies",
                    "message": f"Error in element on line {line}, column {column}: {exc}"}]) from None
            known = {nv["displayName"] for nv in self._state.named_values.values()}
            for ref in NAMED_VALUE_REF.findall(value):
                if ref not in known:
                    raise ArmError(400, "ValidationError", "One or more fields contain incorrect values:", [{
                        "code": "ValidationError", "target": "set-header",
                        "message": f"Cannot find a property '{ref}'"}])
            created = r.get("policy") is None
            stored = reserialize(value)
            same = not created and r["policy"]["value"] == stored
            r["policy"] = {"value": stored, "etag": r["policy"]["etag"] if same else self._etag()}
            self._save()
            return Response.json(201 if created else 200, {"id": pid, "type": TYPES["policies"], "name": "policy",
                                                           "properties": {"value": stored}},
                                 {"ETag": r["policy"]["etag"]})
        raise ArmError(405, "MethodNotAllowed", f"{m} is not allowed on a policy.")
