"""API policies: stored re-serialised as APIM does; named values must exist.

Two formats (``PolicyContentFormat``, definitions.json): ``xml`` is XML-encoded, policy expressions included
(``condition="@(x == &quot;a&quot;)"``); ``rawxml`` is not: an expression may hold raw ``"``, ``<``, ``>``
(``ApiManagementCreateApiPolicyNonXmlEncoded.json`` sends ``h => h.Ke=="Via"`` and gets ``h =&gt; ...`` back).
A ``rawxml`` PUT is encoded before it is stored, so entities sent in it are taken literally (``&quot;`` becomes
``&amp;quot;``); a ``?format=rawxml`` GET returns the expressions decoded, which an XML parser may refuse
(Azure/apiops#488, azure-api-management-devops-resource-kit#371). ``xml`` both ways round-trips.
"""

from __future__ import annotations

import html
import re
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
    """APIM stores policies re-indented with tabs and CRLF line ends (the official example
    ApiManagementGetApiPolicy.json; azure-cli's recording test_apim_api_policy.yaml)."""
    lines = [line.rstrip() for line in xml.replace("\r\n", "\n").strip().split("\n")]
    out = []
    for line in lines:
        stripped = line.lstrip(" \t")
        depth = (len(line) - len(stripped)) // 2
        out.append("\t" * depth + stripped)
    return "\r\n".join(out)


# an attribute or element text that is a policy expression, in stored (XML-encoded) form
_ENCODED_ATTRIBUTE = re.compile(r'(=")(@[^"]*)(")')
_ENCODED_TEXT = re.compile(r"(>\s*)(@[^<]*)(<)")


def encoded_to_raw(xml: str) -> str:
    """A stored policy as ``?format=rawxml`` returns it: its expressions decoded."""
    decode = lambda m: m.group(1) + html.unescape(m.group(2)) + m.group(3)  # noqa: E731
    return _ENCODED_TEXT.sub(decode, _ENCODED_ATTRIBUTE.sub(decode, xml))


def raw_to_encoded(raw: str) -> str:
    """A ``rawxml`` policy encoded for storage: inside each expression (an attribute value or text starting with
    ``@(`` or ``@{``, to its balanced end) ``&``, ``<``, ``>`` and, in an attribute, ``"`` are escaped."""
    out: list[str] = []
    i = 0
    while True:
        start = raw.find("@", i)
        if start < 0:
            return "".join(out) + raw[i:]
        in_attribute = raw[max(0, start - 2):start] in ('="', "='")
        in_text = raw[:start].rstrip().endswith(">")
        if raw[start + 1:start + 2] not in ("(", "{") or not (in_attribute or in_text):
            out.append(raw[i:start + 1])
            i = start + 1
            continue
        end = _balanced_end(raw, start + 1)
        body = raw[start:end].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if in_attribute:
            body = body.replace('"', "&quot;")
        out.append(raw[i:start] + body)
        i = end


def _balanced_end(text: str, opening: int) -> int:
    """The index after the bracket closing the one at ``opening`` (C# string literals skipped)."""
    pairs = {"(": ")", "{": "}"}
    stack, i, quoted = [pairs[text[opening]]], opening + 1, False
    while i < len(text) and stack:
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in pairs:
            stack.append(pairs[ch])
        elif ch == stack[-1]:
            stack.pop()
        i += 1
    return i


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
            value = policy["value"] if request.query.get("format", "xml") == "xml" else encoded_to_raw(
                policy["value"])
            body = {"id": pid, "type": TYPES["policies"], "name": "policy", "properties": {"value": value}}
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
            if fmt == "rawxml":
                value = raw_to_encoded(value)
            try:
                ET.fromstring(value or "")
            except ET.ParseError as exc:
                line, column = exc.position
                raise ArmError(400, "ValidationError", "One or more fields contain incorrect values:", [{
                    "code": "ValidationError", "target": "policies",
                    "message": f"Error in element on line {line}, column {column}: {exc}"}]) from None
            if self.sku == "Consumption" and "<llm-token-limit" in value:
                # llm-token-limit: every tier but Consumption (Learn, "Policy availability"); the refusal's wording
                # is the one seen for a sibling policy (MicrosoftDocs/azure-docs#57081)
                raise ArmError(400, "ValidationError", "One or more fields contain incorrect values:", [{
                    "code": "ValidationError", "target": "llm-token-limit",
                    "message": "Policy is not allowed in 'Consumption' sku"}])
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
