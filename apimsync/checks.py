"""``apimsync verify``: one real request per published API, through the APIM gateway to the model.

"The API exists" proves nothing a caller needs; this proves the path, the operation, the backend URL, the policy
and the credential together. Each request is a real inference call (it costs what a call to the endpoint costs),
so verify is a command of its own and never runs implicitly.

The request is built from the published spec: the primary operation (``POST /invocations`` when published, else
the first ``POST``) and its example body, else the smallest body that fills every required field.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from apimsync import html
from apimsync.backend import insecure_url_problem
from apimsync.errors import ConfigError
from apimsync.kinds import task_of
from apimsync.parallel import gather
from apimsync.text import printable

DIAGNOSES = {
    "ok": "the model answered",
    "subscription key": "APIM refused the subscription key (Ocp-Apim-Subscription-Key)",
    "credential": "Databricks refused the credential the policy sent: check the named value's token, the policy "
                  "and the token's scope (workspace, endpoint)",
    "path or backend": "nothing answers at this URL: the API path, the operation or the API's backend URL "
                       "(serviceUrl) is wrong",
    "payload": "the request body does not fit the endpoint's schema",
    "backend": "the backend or the gateway failed",
    "not published": "the endpoint has no API in APIM yet: run apimsync sync",
    "unreachable": "the gateway could not be reached",
    "redirect": "the gateway or the backend answered with a redirect, which verify never follows (the "
                "subscription key would travel with it): check the API's backend URL (serviceUrl) and policy",
    "schema": "the published request schema cannot give verify a request body",
    "unexpected": "an unexpected answer",
}


@dataclass(frozen=True)
class Check:
    """The outcome of one request through the gateway."""

    endpoint: str
    workspace: str
    api_id: str
    url: str  # never carries the subscription key
    status: int | None
    seconds: float
    diagnosis: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.diagnosis == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "workspace": self.workspace, "api_id": self.api_id, "url": self.url,
                "status": self.status, "seconds": round(self.seconds, 3), "ok": self.ok,
                "diagnosis": self.diagnosis, "meaning": DIAGNOSES[self.diagnosis], "detail": self.detail}


@dataclass
class VerifyReport:
    gateway_url: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 when every API answered 2xx, 1 otherwise (also when there was nothing to verify)."""
        return 0 if self.ok else 1

    @property
    def summary(self) -> str:
        good = sum(1 for c in self.checks if c.ok)
        return f"Verified {good} of {len(self.checks)} APIs through {self.gateway_url}."

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "exit_code": self.exit_code, "gateway_url": self.gateway_url,
                "summary": self.summary, "checks": [c.to_dict() for c in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        lines = []
        for c in sorted(self.checks, key=lambda c: (c.ok, c.api_id)):
            status = str(c.status) if c.status is not None else "---"
            line = f"  {'ok ' if c.ok else 'BAD'} {status} {c.seconds * 1000:7.0f} ms  {c.api_id}  {c.url}"
            if not c.ok:
                line += f"\n        {c.diagnosis}: {DIAGNOSES[c.diagnosis]}" + (f" ({c.detail})" if c.detail else "")
            lines.append(line)
        return "\n".join(printable(line) for line in [*lines, "", self.summary])

    def _repr_html_(self) -> str:
        rows = [("ok" if c.ok else "failed", c.api_id, str(c.status or ""), f"{c.seconds * 1000:.0f} ms",
                 c.diagnosis, c.detail) for c in self.checks]
        return html.table(f"apimsync verify — {self.gateway_url}",
                          ("status", "api", "HTTP", "latency", "diagnosis", "detail"), rows, [self.summary])


@dataclass(frozen=True)
class Target:
    """One published API to call: where, and with what."""

    endpoint: str
    workspace: str
    api_id: str
    path: str  # the API's path in APIM
    spec: dict[str, Any] | None  # the published spec (None: not published)
    task: str | None = None  # the endpoint's task: its request comes from its record (apimsync.kinds), not the spec

    def request(self, gateway_url: str) -> tuple[str, Any] | None:
        """(URL, JSON body) of the call verify makes through ``gateway_url`` (None: nothing to call)."""
        operation = primary_operation(self.spec) if self.spec is not None else None
        if operation is None:
            return None
        url = f"{gateway_url.rstrip('/')}/{self.path}{operation[0]}"
        task = task_of(self.task)
        if operation[0] == "/invocations" and task is not None:
            return url, task.request
        return url, request_body(self.spec or {}, operation[1])


def primary_operation(spec: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(URL template, operation) of the operation verify calls: POST /invocations, else the first POST."""
    posts = [(path, item["post"]) for path, item in (spec.get("paths") or {}).items()
             if isinstance(item, dict) and isinstance(item.get("post"), dict)]
    if not posts:
        return None
    return next((p for p in posts if p[0] == "/invocations"), posts[0])


MAX_BODY_BYTES = 1024 * 1024  # a request verify builds: far above any example, far below a memory problem
MAX_NODES = 10_000  # values built from a schema, $refs followed included: bounds the time a crafted schema takes
MAX_ITEMS = 100  # items of one array (minItems beyond it is a schema verify cannot use)


class SchemaProblem(ValueError):
    """The published request schema cannot give verify a body: a finding for that API, never a crash."""


def request_body(spec: dict[str, Any], operation: dict[str, Any]) -> Any:
    """The operation's example request, else the smallest body with every required field filled; SchemaProblem
    when the schema is malformed or would give a body over ``MAX_BODY_BYTES``."""
    media = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json") or {}
    if not isinstance(media, dict):
        raise SchemaProblem("the request body's application/json entry is not an object")
    if "example" in media:
        body = media["example"]
    else:
        examples = media.get("examples")
        examples = examples if isinstance(examples, dict) else {}
        found = [e["value"] for e in examples.values() if isinstance(e, dict) and "value" in e]
        body = found[0] if found else smallest(media.get("schema") or {}, spec, top=True, budget=[MAX_NODES])
    if len(json.dumps(body, separators=(",", ":"))) > MAX_BODY_BYTES:
        raise SchemaProblem(f"the request verify would send is over {MAX_BODY_BYTES // 1024} KB")
    return body


def smallest(schema: Any, spec: dict[str, Any], *, top: bool = False, depth: int = 0,
             budget: list[int] | None = None) -> Any:
    """A small instance of a (3.0) schema: required properties only (the first property when none is
    required, so a request is never empty), ``minItems`` items per array (at least one), the first enum value or
    example. ``budget``: values left to build (SchemaProblem when it runs out)."""
    budget = budget if budget is not None else [MAX_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise SchemaProblem(f"the request schema needs more than {MAX_NODES} values to fill ($ref fan-out?)")
    if not isinstance(schema, dict) or depth > 20:
        return {}
    if "$ref" in schema:
        target: Any = spec
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return smallest(target, spec, top=top, depth=depth + 1, budget=budget)
    if "example" in schema:
        return schema["example"]
    if schema.get("enum"):
        if not isinstance(schema["enum"], list):
            raise SchemaProblem("an enum is not a list")
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return smallest(schema[key][0], spec, top=top, depth=depth + 1, budget=budget)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = smallest(part, spec, depth=depth + 1, budget=budget)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type")
    props = schema.get("properties") or {}
    if not isinstance(props, dict):
        raise SchemaProblem("properties is not an object")
    if kind == "object" or props:
        required = schema.get("required") or []
        if not isinstance(required, list):
            raise SchemaProblem(f"required is {type(required).__name__}, not a list")
        names = [n for n in required if isinstance(n, str) and n in props] or (list(props)[:1] if top else [])
        return {n: smallest(props[n], spec, depth=depth + 1, budget=budget) for n in names}
    if kind == "array":
        count = schema.get("minItems") or 1
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_ITEMS:
            raise SchemaProblem(f"minItems {str(count)[:20]!s} is not a number of items from 0 to {MAX_ITEMS}")
        return [smallest(schema.get("items") or {}, spec, depth=depth + 1, budget=budget)
                for _ in range(max(1, count))]
    if kind == "string":
        return "text"
    if kind in ("number", "integer"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return {}


def diagnose(status: int | None, body: bytes) -> str:
    """What an answer means for the person who published the API."""
    if status is None:
        return "unreachable"
    if 200 <= status < 300:
        return "ok"
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        payload = None
    from_gateway = isinstance(payload, dict) and "statusCode" in payload  # APIM's own error body
    if status == 401 and from_gateway:
        return "subscription key"
    if status in (401, 403):
        return "credential"
    if status == 404:
        return "path or backend"
    if status in (400, 422):
        return "payload"
    if status >= 500:
        return "backend"
    return "unexpected"


def _detail(body: bytes) -> str:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return body[:200].decode("utf-8", "replace").splitlines()[0] if body else ""
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("error") or "")[:300]
    return ""


def gateway_url_problem(url: str) -> str | None:
    """Why verify may not send the subscription key to ``url``: not https (loopback aside), credentials,
    a query or fragment, not a plain URL."""
    problem = insecure_url_problem(url)
    if problem:
        return problem
    parts = urlsplit(url)
    if parts.query or parts.fragment or url.rstrip().endswith(("?", "#")):
        return f"'{url}' has a query or fragment"
    return None


def run_checks(targets: Iterable[Target], *, gateway_url: str, key: str | None, ca_bundle: str | None,
               workers: int = 8, timeout: float = 60.0,
               progress: Callable[[str, int, int], None] | None = None) -> VerifyReport:
    """Call each target once through the gateway (``workers`` at a time)."""
    import requests

    problem = gateway_url_problem(gateway_url)
    if problem:
        raise ConfigError(f"gateway URL {problem}")
    session = requests.Session()
    # given per request: a session's verify loses to REQUESTS_CA_BUNDLE (psf/requests#3829)
    verify: str | bool = ca_bundle or True
    headers = {"Ocp-Apim-Subscription-Key": key} if key else {}
    gateway_url = gateway_url.rstrip("/")

    def check(t: Target) -> Check:
        try:
            prepared = t.request(gateway_url)
        except SchemaProblem as exc:
            return Check(t.endpoint, t.workspace, t.api_id, f"{gateway_url}/{t.path}", None, 0.0, "schema", str(exc))
        if prepared is None:
            return Check(t.endpoint, t.workspace, t.api_id, f"{gateway_url}/{t.path}", None, 0.0, "not published",
                         "" if t.spec is None else "the spec has no POST operation")
        url, body = prepared
        started = time.monotonic()
        try:
            # never a redirect: requests would re-send the subscription key to wherever it points
            response = session.post(url, json=body, headers=headers, timeout=timeout, verify=verify,
                                    allow_redirects=False)
        except requests.RequestException as exc:
            return Check(t.endpoint, t.workspace, t.api_id, url, None, time.monotonic() - started, "unreachable",
                         f"{type(exc).__name__}: {str(exc)[:200]}")
        seconds = time.monotonic() - started
        if 300 <= response.status_code < 400:
            where = urlsplit(response.headers.get("Location") or "")
            return Check(t.endpoint, t.workspace, t.api_id, url, response.status_code, seconds, "redirect",
                         f"to {where.scheme}://{where.netloc}{where.path}"[:200] if where.netloc else "")
        diagnosis = diagnose(response.status_code, response.content)
        return Check(t.endpoint, t.workspace, t.api_id, url, response.status_code, seconds, diagnosis,
                     "" if diagnosis == "ok" else _detail(response.content))

    report = VerifyReport(gateway_url)
    for _target, result in gather(list(targets), check, workers, progress, "verify"):
        if isinstance(result, Exception):
            raise result
        report.checks.append(result)
    return report
