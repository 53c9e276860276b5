"""The emulated APIM gateway: ``https://<gateway>/<api path>/<operation url>`` runs the API's policy and forwards
the call to its backend, as API Management does.

- The API is the one whose ``path`` is the longest prefix of the request path; the operation is matched by method
  and URL template (``{param}`` matches one segment). No match: 404 with APIM's body.
- APIs with ``subscriptionRequired`` need a key in ``Ocp-Apim-Subscription-Key`` or ``?subscription-key=``
  (Learn, "Subscriptions in Azure API Management"); missing or wrong: 401 with APIM's messages. A key is valid
  only for the APIs its subscription's scope covers (all APIs, one API, or a product's APIs).
- Policies: the API's policy runs with ``<base />`` standing for the emulated global policy. The elements
  apimsync's templates use are implemented (``POLICY_ELEMENTS``); any other element, or a policy expression
  outside the few forms the templates use, answers 500 naming it, so a test never passes on a policy the gateway
  did not run. ``{{named value}}`` references are replaced by the values (secrets included) before the run.
- Backends must be on this machine (loopback): the emulator never sends a request anywhere else.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.sax.saxutils import escape

from apimsync.emulators._server import Request, Response
from apimsync.emulators.dataplane import entra_token

if TYPE_CHECKING:
    from apimsync.emulators.apim import ApimEmulator

GLOBAL_POLICY = ("<policies><inbound /><backend><forward-request /></backend><outbound /><on-error /></policies>")
NAMED_VALUE_REF = re.compile(r"\{\{\s*([A-Za-z0-9\-._]+)\s*\}\}")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MISSING_KEY = ("Access denied due to missing subscription key. Make sure to include subscription key when making "
               "requests to an API.")
INVALID_KEY = ("Access denied due to invalid subscription key. Make sure to provide a valid key for an active "
               "subscription.")
_HOP_BY_HOP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"}


def gateway_error(status: int, message: str) -> Response:
    """APIM's gateway error body (``statusCode`` + ``message``)."""
    return Response.json(status, {"statusCode": status, "message": message})


_GLOBAL = ET.fromstring(GLOBAL_POLICY)


class PolicyFailure(Exception):
    """A policy the gateway cannot run: 500, with the reason in the message."""


@dataclass
class GatewayApi:
    """What the gateway needs of one current API revision."""

    api_id: str
    path: str
    service_url: str
    subscription_required: bool
    operations: list[tuple[str, str, str]]  # (name, method, url template)
    policy: str | None
    request_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)  # by operation name
    subscriptions: frozenset[str] = frozenset()  # ids of the subscriptions whose scope admits this API


@dataclass
class _Call:
    method: str
    path: str  # operation-relative URL, after rewrite-uri
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    template_values: dict[str, str]
    backend_url: str
    variables: dict[str, Any] = field(default_factory=dict)
    response: Response | None = None
    api_id: str = ""
    operation: str = ""
    subscription: str = ""  # the id of the subscription whose key was sent
    request_schema: dict[str, Any] | None = None
    after_response: list[Any] = field(default_factory=list)  # hooks run on the backend's answer
    forwarded: bool = False  # the backend was called


class Gateway:
    """The data path of one emulated APIM service (an app for an HTTPS :class:`EmulatorServer`)."""

    def __init__(self, apim: ApimEmulator, *, managed_identity_app_id: str) -> None:
        self.apim = apim
        self.managed_identity_app_id = managed_identity_app_id
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[Any, float]] = {}
        self.calls: dict[str, int] = {}  # api id -> requests answered by the backend
        self._token_windows: dict[str, tuple[float, int]] = {}  # llm-token-limit counter key -> (minute, tokens)
        self.llm_metrics: list[dict[str, Any]] = []  # what llm-emit-token-metric emitted

    def clear_cache(self) -> None:
        """Forget cached values (as a cache purge would): the next call runs the policy's cache misses."""
        with self._lock:
            self._cache.clear()

    # -- the app ----------------------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        apis, named_values, keys = self.apim.gateway_view()
        path = request.path.lstrip("/")
        api = _match_api(apis, path)
        if api is None:
            return gateway_error(404, "Resource not found")
        key = request.headers.get("ocp-apim-subscription-key") or request.query.get("subscription-key")
        if api.subscription_required:
            if not key:
                return gateway_error(401, MISSING_KEY)
            if key not in keys or keys[key] not in api.subscriptions:  # a key of another product's subscription
                return gateway_error(401, INVALID_KEY)
        rest = "/" + path[len(api.path):].lstrip("/") if api.path else "/" + path
        matched = _match_operation(api.operations, request.method, rest)
        if matched is None:
            return gateway_error(404, "Resource not found")
        operation, values = matched
        # APIM forwards the caller's key (header and query parameter) to the backend unless a policy removes it
        # (Learn, "Subscriptions in Azure API Management"; apimsync's policies delete both)
        query = dict(request.query)
        call = _Call(request.method, rest, query, dict(request.headers), request.body, values, api.service_url,
                     api_id=api.api_id, operation=operation, subscription=keys.get(key or "", ""),
                     request_schema=api.request_schemas.get(operation))
        try:
            # an API without a policy behaves as one of <base /> only (a missing section is <base />)
            document = _parse(_expand(api.policy or "<policies />", named_values))
            self._run_section(document, "inbound", call)
            if call.response is None:  # return-response in inbound answers without calling the backend
                self._run_section(document, "backend", call)
                if call.response is not None and call.response.stream is not None:
                    call.response.stream = _then(call.response.stream, call.response, call.after_response)
                else:
                    for hook in call.after_response:
                        hook(call.response)
            self._run_section(document, "outbound", call)
        except PolicyFailure as exc:
            return gateway_error(500, f"Internal server error: {exc}")
        if call.response is None:
            return gateway_error(500, "Internal server error: the policy did not forward the request")
        if call.forwarded:
            with self._lock:
                self.calls[api.api_id] = self.calls.get(api.api_id, 0) + 1
        return call.response

    # -- policy execution -------------------------------------------------------------------------------------

    def _run_section(self, document: ET.Element, name: str, call: _Call) -> None:
        section = document.find(name)
        for element in section if section is not None else [ET.Element("base")]:
            if call.response is not None and name == "inbound":
                return  # an answer (return-response, a refusal) ends the inbound pipeline
            if element.tag == "base":
                inherited = _GLOBAL.find(name)
                for inner in inherited if inherited is not None else []:
                    self._run(inner, call)
            else:
                self._run(element, call)

    def _run(self, element: ET.Element, call: _Call) -> None:
        handler = getattr(self, "_el_" + element.tag.replace("-", "_"), None)
        if handler is None:
            raise PolicyFailure(f"policy element <{element.tag}> is not implemented by the emulated gateway")
        handler(element, call)

    def _el_set_header(self, el: ET.Element, call: _Call) -> None:
        name = _attr(el, "name").lower()
        action = el.get("exists-action", "override")
        if action == "delete":
            call.headers.pop(name, None)
            return
        values = [_evaluate(v.text or "", call) for v in el.findall("value")]
        if action == "skip" and name in call.headers:
            return
        if action == "append" and name in call.headers:
            values = [call.headers[name], *values]
        call.headers[name] = ",".join(values)

    def _el_set_query_parameter(self, el: ET.Element, call: _Call) -> None:
        """Learn, "Set query string parameter": ``exists-action`` override (default), skip, append or delete."""
        name = _attr(el, "name")
        action = el.get("exists-action", "override")
        if action == "delete":
            call.query.pop(name, None)
            return
        values = [str(_evaluate(v.text or "", call)) for v in el.findall("value")]
        if action == "skip" and name in call.query:
            return
        if action == "append" and name in call.query:
            values = [call.query[name], *values]
        call.query[name] = ",".join(values)

    def _el_authentication_managed_identity(self, el: ET.Element, call: _Call) -> None:
        """An emulated Entra token of the service's managed identity for ``resource``."""
        token = entra_token(_attr(el, "resource"), el.get("client-id") or self.managed_identity_app_id)
        variable = el.get("output-token-variable-name")
        if variable:
            call.variables[variable] = token
        else:
            call.headers["authorization"] = f"Bearer {token}"

    def _el_set_backend_service(self, el: ET.Element, call: _Call) -> None:
        call.backend_url = _evaluate(_attr(el, "base-url"), call)

    def _el_rewrite_uri(self, el: ET.Element, call: _Call) -> None:
        template = _evaluate(_attr(el, "template"), call)
        path = re.sub(r"\{([^}]+)\}", lambda m: call.template_values.get(m.group(1), ""), template)
        target = urlsplit(path)
        if el.get("copy-unmatched-params", "true") != "true":
            call.query = {}
        call.query.update(parse_qsl(target.query))
        call.path = target.path if target.path.startswith("/") else "/" + target.path

    def _el_set_variable(self, el: ET.Element, call: _Call) -> None:
        call.variables[_attr(el, "name")] = _evaluate(_attr(el, "value"), call)

    def _el_cache_lookup_value(self, el: ET.Element, call: _Call) -> None:
        """Learn, "Get value from cache": the built-in cache exists on every tier but Consumption, where a lookup
        finds nothing (an external cache would be needed)."""
        if self.apim.sku == "Consumption":
            if el.get("default-value") is not None:
                call.variables[_attr(el, "variable-name")] = el.get("default-value")
            return
        key = _evaluate(_attr(el, "key"), call)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[1] > time.monotonic():
            call.variables[_attr(el, "variable-name")] = hit[0]
        elif el.get("default-value") is not None:
            call.variables[_attr(el, "variable-name")] = el.get("default-value")

    def _el_cache_store_value(self, el: ET.Element, call: _Call) -> None:
        if self.apim.sku == "Consumption":  # no built-in cache on this tier: nothing is kept
            return
        key = _evaluate(_attr(el, "key"), call)
        duration = float(_evaluate(_attr(el, "duration"), call))
        with self._lock:
            self._cache[key] = (_evaluate(_attr(el, "value"), call), time.monotonic() + duration)

    def _el_choose(self, el: ET.Element, call: _Call) -> None:
        for branch in el:
            if branch.tag == "when" and _truthy(_evaluate(_attr(branch, "condition"), call)):
                for inner in branch:
                    self._run(inner, call)
                return
            if branch.tag == "otherwise":
                for inner in branch:
                    self._run(inner, call)
                return

    def _el_send_request(self, el: ET.Element, call: _Call) -> None:
        url = _evaluate((el.findtext("set-url") or "").strip(), call)
        method = (el.findtext("set-method") or "GET").strip()
        headers = {}
        for header in el.findall("set-header"):
            headers[_attr(header, "name")] = ",".join(_evaluate(v.text or "", call) for v in header.findall("value"))
        body = _evaluate(el.findtext("set-body") or "", call).encode("utf-8")
        response = _send(method, url, headers, body, timeout=float(el.get("timeout", "60")))
        call.variables[_attr(el, "response-variable-name")] = response

    def _el_forward_request(self, el: ET.Element, call: _Call) -> None:
        """Learn, "Forward request" policy: ``buffer-response`` (default true) buffers the backend's answer
        before the caller gets any of it; "Configure API for server-sent events" sets it to false so a stream's
        events reach the caller as the backend sends them."""
        url = call.backend_url.rstrip("/") + call.path
        if call.query:
            url += "?" + urlencode(call.query)
        headers = {k: v for k, v in call.headers.items() if k not in _HOP_BY_HOP}
        call.forwarded = True
        buffered = el.get("buffer-response", "true").lower() != "false"
        call.response = _send(call.method, url, headers, call.body, timeout=float(el.get("timeout", "300")),
                              stream=not buffered)

    def _el_validate_content(self, el: ET.Element, call: _Call) -> None:
        """Learn, "Validate content" policy: the body's size against ``max-size``, its content type, and a JSON
        body against the operation's request schema from the imported definition. With action ``prevent`` in
        inbound the caller gets 400 and the "Public response" messages of the policy's validation-errors table."""
        content_type = call.headers.get("content-type", "").split(";")[0].strip().lower()
        limit = int(_attr(el, "max-size"))
        if len(call.body) > limit and _attr(el, "size-exceeded-action") == "prevent":
            call.response = gateway_error(400, f"Request's body is {len(call.body)} bytes long and it exceeds the "
                                               f"limit of {limit} bytes.")
            return
        rules = {(c.get("type") or "").lower(): c for c in el.findall("content")}
        rule = rules.get(content_type)
        if rule is None:
            if call.body and _attr(el, "unspecified-content-type-action") == "prevent":
                call.response = gateway_error(400, f"Unspecified content type {content_type} is not allowed.")
            return
        if rule.get("validate-as") != "json" or rule.get("action", "prevent") != "prevent" or not call.request_schema:
            return
        problem = _json_problem(call.body, call.request_schema)
        if problem:
            call.response = gateway_error(400, f"Body of the request does not conform to the definition "
                                               f"{call.operation}-request, which is associated with the content type "
                                               f"{content_type}. {problem}")

    def _el_llm_token_limit(self, el: ET.Element, call: _Call) -> None:
        """Learn, "Limit large language model API token usage": past ``tokens-per-minute`` for the counter key
        the caller gets 429 with Retry-After; with ``estimate-prompt-tokens="false"`` the tokens counted are the
        ``usage`` the backend reports (total_tokens). The body's wording is not documented; this is the one public
        repos show ("Token limit is exceeded. Try again in N seconds.")."""
        key = str(_evaluate(_attr(el, "counter-key"), call))
        limit = int(_attr(el, "tokens-per-minute"))
        minute = time.monotonic() // 60
        with self._lock:
            start, used = self._token_windows.get(key, (minute, 0))
            if start != minute:
                start, used = minute, 0
            self._token_windows[key] = (start, used)
        if used >= limit:
            wait = int(60 - time.monotonic() % 60) + 1
            answer = gateway_error(429, f"Token limit is exceeded. Try again in {wait} seconds.")
            answer.headers[el.get("retry-after-header-name") or "Retry-After"] = str(wait)
            call.response = answer
            return
        header = el.get("remaining-tokens-header-name")

        def count(response: Response | None) -> None:
            tokens = _usage(response).get("total_tokens", 0)
            with self._lock:
                start_now, used_now = self._token_windows.get(key, (minute, 0))
                self._token_windows[key] = (start_now, used_now + int(tokens))
                left = max(0, limit - used_now - int(tokens))
            if header and response is not None:
                response.headers[header] = str(left)

        call.after_response.append(count)

    def _el_llm_emit_token_metric(self, el: ET.Element, call: _Call) -> None:
        """Learn, "Emit metrics for consumption of large language model tokens": the response's usage as metrics
        with the given dimensions; a default dimension (API ID, Operation ID, Subscription ID) may omit its value."""
        defaults = {"API ID": call.api_id, "Operation ID": call.operation, "Subscription ID": call.subscription}
        dimensions = {}
        for d in el.findall("dimension"):
            name = _attr(d, "name")
            value = d.get("value")
            if value is None and name not in defaults:
                raise PolicyFailure(f"<dimension name='{name}'> needs a value (not a default dimension)")
            dimensions[name] = defaults[name] if value is None else str(_evaluate(value, call))
        namespace = el.get("namespace", "API Management")

        def emit(response: Response | None) -> None:
            usage = _usage(response)
            if usage:
                with self._lock:
                    self.llm_metrics.append({"namespace": namespace, "dimensions": dimensions, **usage})

        call.after_response.append(emit)

    def _el_return_response(self, el: ET.Element, call: _Call) -> None:
        status = el.find("set-status")
        code = int(status.get("code", "200")) if status is not None else 200
        call.response = Response(code, _evaluate(el.findtext("set-body") or "", call).encode("utf-8"))


def _attr(el: ET.Element, name: str) -> str:
    value = el.get(name)
    if value is None:
        raise PolicyFailure(f"<{el.tag}> needs the attribute '{name}'")
    return value


def _parse(xml: str) -> ET.Element:
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        raise PolicyFailure(f"the policy is not well-formed XML ({exc})") from None


def _expand(xml: str, named_values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in named_values:
            raise PolicyFailure(f"named value '{name}' does not exist")
        return escape(named_values[name], {'"': "&quot;", "'": "&apos;"})

    return NAMED_VALUE_REF.sub(value, xml)


def _match_api(apis: list[GatewayApi], path: str) -> GatewayApi | None:
    best: GatewayApi | None = None
    for api in apis:
        prefix = api.path.strip("/")
        if (not prefix or path == prefix or path.startswith(prefix + "/")) and (
                best is None or len(prefix) > len(best.path)):
            best = api
    return best


def _match_operation(operations: list[tuple[str, str, str]], method: str,
                     path: str) -> tuple[str, dict[str, str]] | None:
    """(name, template values) of the first operation whose method and URL template match (None: no match)."""
    for name, op_method, template in operations:
        if op_method != method:
            continue
        pattern = "^" + re.sub(r"\\\{([^}]+)\\\}", lambda m: f"(?P<{_group(m.group(1))}>[^/]+)",
                               re.escape(template.split("?", 1)[0].rstrip("/") or "/")) + "/?$"
        found = re.match(pattern, path)
        if found:
            names = re.findall(r"\{([^}]+)\}", template)
            return name, {n: found.group(_group(n)) for n in names}
    return None


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


class _Refuse(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is the answer (urllib raises it as an HTTPError, handled below)


_NO_REDIRECTS = urllib.request.build_opener(_Refuse)


def _send(method: str, url: str, headers: dict[str, str], body: bytes, *, timeout: float,
          stream: bool = False) -> Response:
    """Call a backend (loopback only); ``stream``: a chunked answer is passed on as it arrives, not read whole."""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise PolicyFailure(f"backend host '{host}' is not on this machine; the emulated gateway forwards only to "
                            "loopback addresses")
    request = urllib.request.Request(url, data=body if method not in ("GET", "HEAD") else None, method=method,
                                     headers=headers)
    try:
        # APIM passes a backend's redirect to the caller; it never follows one with the credential it attached
        answer = _NO_REDIRECTS.open(request, timeout=timeout)  # loopback only, checked above
        if stream and answer.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return Response(answer.status, b"", _response_headers(answer.headers), stream=_relay(answer))
        with answer:
            return Response(answer.status, answer.read(), _response_headers(answer.headers))
    except urllib.error.HTTPError as answer:
        return Response(answer.code, answer.read(), _response_headers(answer.headers))
    except OSError as exc:
        raise PolicyFailure(f"the backend {url} could not be reached ({exc})") from None


def _relay(answer: Any) -> Iterator[bytes]:
    """A backend's chunks as they arrive."""
    with answer:
        while chunk := answer.read1(65536):
            yield chunk


def _then(chunks: Iterator[bytes], response: Response, hooks: list[Any]) -> Iterator[bytes]:
    """Pass a streamed answer on, then run the hooks (token counting) on the whole of it."""
    seen = []
    for chunk in chunks:
        seen.append(chunk)
        yield chunk
    response.body = b"".join(seen)
    for hook in hooks:
        hook(response)


def _usage(response: Response | None) -> dict[str, int]:
    """The ``usage`` token counts of an OpenAI-shaped JSON answer (empty when there are none)."""
    if response is None or response.status >= 300:
        return {}
    try:
        text = response.body.decode("utf-8")
        if text.startswith("data:"):  # a stream: the last event that carries usage
            events = [json.loads(line[5:]) for line in text.splitlines()
                      if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]")]
            usage = next((e.get("usage") for e in reversed(events) if e.get("usage")), None)
        else:
            usage = json.loads(text).get("usage")
    except (ValueError, AttributeError):
        return {}
    if not isinstance(usage, dict):
        return {}
    return {k: int(v) for k, v in usage.items() if k.endswith("_tokens") and isinstance(v, int)}


def _json_problem(body: bytes, schema: dict[str, Any]) -> str | None:
    """Why a JSON body does not match a request schema (None when it does)."""
    from jsonschema import Draft4Validator
    from jsonschema.exceptions import SchemaError, _RefResolutionError

    try:
        value = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError) as exc:
        return f"The body is not JSON ({exc}). Line: 1, Position: 1"
    try:  # OpenAPI 3.0's schema dialect is JSON Schema draft 4's (nullable aside)
        error = next(iter(Draft4Validator(schema).iter_errors(value)), None)
    except (SchemaError, RecursionError, _RefResolutionError):
        return None
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}{f' at {where}' if where else ''}. Line: 1, Position: 1"


def _response_headers(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}


# -- policy expressions: only the forms apimsync's templates use ----------------------------------------------

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


def _evaluate(text: str, call: _Call) -> Any:
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


def _term(term: str, call: _Call, whole: str) -> Any:
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


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")
