"""Policy expressions ``@(...)``: only the forms apimsync's templates use; any other answers 500 naming it."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from apimsync.emulators._server import Response
from apimsync.emulators.gateway.call import Call, PolicyFailure

_VARIABLE = re.compile(r'^(?:\(string\))?context\.Variables(?:\["([^"]+)"\]|\.GetValueOrDefault<string>\("([^"]+)"\))$')
_RESPONSE_FIELD = re.compile(
    r'^(?:\(string\))?\(\(IResponse\)context\.Variables\["([^"]+)"\]\)\.Body\.As<JObject>\(\)\["([^"]+)"\]'
    r'(?:\.ToString\(\))?$')
_SUBSCRIPTION = re.compile(r"^context\.Subscription\.Id$")
_OPERATION_IS = re.compile(r'^context\.Operation\.Id\s*==\s*("(?:[^"\\]|\\.)*")$')
_CONTAINS = re.compile(r'^(!)?context\.Variables\.ContainsKey\("([^"]+)"\)$')
_STRING = re.compile(r'^"((?:[^"\\]|\\.)*)"$')
# System.Convert and System.Text.Encoding are among the .NET types policy expressions may use (Learn: "API
# Management policy expressions", allowed types); this is how a policy builds a Basic authorization header
_BASE64 = re.compile(r'^Convert\.ToBase64String\(Encoding\.UTF8\.GetBytes\(("(?:[^"\\]|\\.)*")\)\)$')


def evaluate(text: str, call: Call) -> Any:
    """A literal, or a policy expression ``@(...)`` of the forms the shipped templates use."""
    stripped = text.strip()
    if not stripped.startswith("@"):
        return text
    if not (stripped.startswith("@(") and stripped.endswith(")")):
        raise PolicyFailure(f"policy expression {stripped!r} is not supported by the emulated gateway")
    inner = stripped[2:-1].strip()
    terms = [t.strip() for t in _split_plus(inner)]
    values = [_term(t, call, stripped) for t in terms]
    if len(values) == 1:
        return values[0]
    return "".join("" if v is None else str(v) for v in values)  # C#: "a" + null is "a"


def _split_plus(expression: str) -> list[str]:
    parts, depth, quoted, current = [], 0, False, ""
    for ch in expression:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        if ch == "+" and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def _term(term: str, call: Call, whole: str) -> Any:
    if _STRING.match(term):
        return json.loads(term)
    if _SUBSCRIPTION.match(term):
        return call.subscription
    found = _OPERATION_IS.match(term)
    if found:
        return call.operation == json.loads(found.group(1))
    found = _BASE64.match(term)
    if found:
        return base64.b64encode(json.loads(found.group(1)).encode("utf-8")).decode("ascii")
    found = _VARIABLE.match(term)
    if found:
        name = found.group(1) or found.group(2)
        return call.variables.get(name)
    found = _CONTAINS.match(term)
    if found:
        return (found.group(2) in call.variables) != bool(found.group(1))
    found = _RESPONSE_FIELD.match(term)
    if found:
        response = call.variables.get(found.group(1))
        if not isinstance(response, Response):
            raise PolicyFailure(f"variable '{found.group(1)}' is not a response")
        try:
            document = json.loads(response.body.decode("utf-8"))
        except ValueError:
            raise PolicyFailure(f"the response in '{found.group(1)}' is not JSON (status {response.status})") \
                from None
        # JObject's indexer gives null for a missing key, and (string)null is null: a failed token request
        # ({"error": "invalid_client"}) makes "Bearer " + null = "Bearer ", which Databricks answers 401
        return document.get(found.group(2)) if isinstance(document, dict) else None
    raise PolicyFailure(f"policy expression {whole!r} is not supported by the emulated gateway")


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")
