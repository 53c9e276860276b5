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

import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.sax.saxutils import escape

from apimsync.emulators._server import Request, Response
from apimsync.emulators.gateway.backend import HOP_BY_HOP, json_problem, send, then, token_usage
from apimsync.emulators.gateway.call import Call, PolicyFailure
from apimsync.emulators.gateway.expressions import evaluate, truthy
from apimsync.emulators.identities import entra_token

if TYPE_CHECKING:
    from apimsync.emulators.apim import ApimEmulator

GLOBAL_POLICY = ("<policies><inbound /><backend><forward-request /></backend><outbound /><on-error /></policies>")
NAMED_VALUE_REF = re.compile(r"\{\{\s*([A-Za-z0-9\-._]+)\s*\}\}")
MISSING_KEY = ("Access denied due to missing subscription key. Make sure to include subscription key when making "
               "requests to an API.")
INVALID_KEY = ("Access denied due to invalid subscription key. Make sure to provide a valid key for an active "
               "subscription.")


def gateway_error(status: int, message: str) -> Response:
    """APIM's gateway error body (``statusCode`` + ``message``)."""
    return Response.json(status, {"statusCode": status, "message": message})


_GLOBAL = ET.fromstring(GLOBAL_POLICY)


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
        call = Call(request.method, rest, query, dict(request.headers), request.body, values, api.service_url,
                     api_id=api.api_id, operation=operation, subscription=keys.get(key or "", ""),
                     request_schema=api.request_schemas.get(operation))
        try:
            # an API without a policy behaves as one of <base /> only (a missing section is <base />)
            document = _parse(_expand(api.policy or "<policies />", named_values))
            self._run_section(document, "inbound", call)
            if call.response is None:  # return-response in inbound answers without calling the backend
                self._run_section(document, "backend", call)
                if call.response is not None and call.response.stream is not None:
                    call.response.stream = then(call.response.stream, call.response, call.after_response)
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

    def _run_section(self, document: ET.Element, name: str, call: Call) -> None:
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

    def _run(self, element: ET.Element, call: Call) -> None:
        handler = getattr(self, "_el_" + element.tag.replace("-", "_"), None)
        if handler is None:
            raise PolicyFailure(f"policy element <{element.tag}> is not implemented by the emulated gateway")
        handler(element, call)

    def _el_set_header(self, el: ET.Element, call: Call) -> None:
        name = _attr(el, "name").lower()
        action = el.get("exists-action", "override")
        if action == "delete":
            call.headers.pop(name, None)
            return
        values = [evaluate(v.text or "", call) for v in el.findall("value")]
        if action == "skip" and name in call.headers:
            return
        if action == "append" and name in call.headers:
            values = [call.headers[name], *values]
        call.headers[name] = ",".join(values)

    def _el_set_query_parameter(self, el: ET.Element, call: Call) -> None:
        """Learn, "Set query string parameter": ``exists-action`` override (default), skip, append or delete."""
        name = _attr(el, "name")
        action = el.get("exists-action", "override")
        if action == "delete":
            call.query.pop(name, None)
            return
        values = [str(evaluate(v.text or "", call)) for v in el.findall("value")]
        if action == "skip" and name in call.query:
            return
        if action == "append" and name in call.query:
            values = [call.query[name], *values]
        call.query[name] = ",".join(values)

    def _el_authentication_managed_identity(self, el: ET.Element, call: Call) -> None:
        """An emulated Entra token of the service's managed identity for ``resource``."""
        token = entra_token(_attr(el, "resource"), el.get("client-id") or self.managed_identity_app_id)
        variable = el.get("output-token-variable-name")
        if variable:
            call.variables[variable] = token
        else:
            call.headers["authorization"] = f"Bearer {token}"

    def _el_set_backend_service(self, el: ET.Element, call: Call) -> None:
        call.backend_url = evaluate(_attr(el, "base-url"), call)

    def _el_rewrite_uri(self, el: ET.Element, call: Call) -> None:
        template = evaluate(_attr(el, "template"), call)
        path = re.sub(r"\{([^}]+)\}", lambda m: call.template_values.get(m.group(1), ""), template)
        target = urlsplit(path)
        if el.get("copy-unmatched-params", "true") != "true":
            call.query = {}
        call.query.update(parse_qsl(target.query))
        call.path = target.path if target.path.startswith("/") else "/" + target.path

    def _el_set_variable(self, el: ET.Element, call: Call) -> None:
        call.variables[_attr(el, "name")] = evaluate(_attr(el, "value"), call)

    def _el_cache_lookup_value(self, el: ET.Element, call: Call) -> None:
        """Learn, "Get value from cache": the built-in cache exists on every tier but Consumption, where a lookup
        finds nothing (an external cache would be needed)."""
        if self.apim.sku == "Consumption":
            if el.get("default-value") is not None:
                call.variables[_attr(el, "variable-name")] = el.get("default-value")
            return
        key = evaluate(_attr(el, "key"), call)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[1] > time.monotonic():
            call.variables[_attr(el, "variable-name")] = hit[0]
        elif el.get("default-value") is not None:
            call.variables[_attr(el, "variable-name")] = el.get("default-value")

    def _el_cache_store_value(self, el: ET.Element, call: Call) -> None:
        if self.apim.sku == "Consumption":  # no built-in cache on this tier: nothing is kept
            return
        key = evaluate(_attr(el, "key"), call)
        duration = float(evaluate(_attr(el, "duration"), call))
        with self._lock:
            self._cache[key] = (evaluate(_attr(el, "value"), call), time.monotonic() + duration)

    def _el_choose(self, el: ET.Element, call: Call) -> None:
        for branch in el:
            if branch.tag == "when" and truthy(evaluate(_attr(branch, "condition"), call)):
                for inner in branch:
                    self._run(inner, call)
                return
            if branch.tag == "otherwise":
                for inner in branch:
                    self._run(inner, call)
                return

    def _el_send_request(self, el: ET.Element, call: Call) -> None:
        url = evaluate((el.findtext("set-url") or "").strip(), call)
        method = (el.findtext("set-method") or "GET").strip()
        headers = {}
        for header in el.findall("set-header"):
            headers[_attr(header, "name")] = ",".join(evaluate(v.text or "", call) for v in header.findall("value"))
        body = evaluate(el.findtext("set-body") or "", call).encode("utf-8")
        response = send(method, url, headers, body, timeout=float(el.get("timeout", "60")))
        call.variables[_attr(el, "response-variable-name")] = response

    def _el_forward_request(self, el: ET.Element, call: Call) -> None:
        """Learn, "Forward request" policy: ``buffer-response`` (default true) buffers the backend's answer
        before the caller gets any of it; "Configure API for server-sent events" sets it to false so a stream's
        events reach the caller as the backend sends them."""
        url = call.backend_url.rstrip("/") + call.path
        if call.query:
            url += "?" + urlencode(call.query)
        headers = {k: v for k, v in call.headers.items() if k not in HOP_BY_HOP}
        call.forwarded = True
        buffered = el.get("buffer-response", "true").lower() != "false"
        call.response = send(call.method, url, headers, call.body, timeout=float(el.get("timeout", "300")),
                              stream=not buffered)

    def _el_validate_content(self, el: ET.Element, call: Call) -> None:
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
        problem = json_problem(call.body, call.request_schema)
        if problem:
            call.response = gateway_error(400, f"Body of the request does not conform to the definition "
                                               f"{call.operation}-request, which is associated with the content type "
                                               f"{content_type}. {problem}")

    def _el_llm_token_limit(self, el: ET.Element, call: Call) -> None:
        """Learn, "Limit large language model API token usage": past ``tokens-per-minute`` for the counter key
        the caller gets 429 with Retry-After; with ``estimate-prompt-tokens="false"`` the tokens counted are the
        ``usage`` the backend reports (total_tokens). The body's wording is not documented; this is the one public
        repos show ("Token limit is exceeded. Try again in N seconds.")."""
        key = str(evaluate(_attr(el, "counter-key"), call))
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
            tokens = token_usage(response).get("total_tokens", 0)
            with self._lock:
                start_now, used_now = self._token_windows.get(key, (minute, 0))
                self._token_windows[key] = (start_now, used_now + int(tokens))
                left = max(0, limit - used_now - int(tokens))
            if header and response is not None:
                response.headers[header] = str(left)

        call.after_response.append(count)

    def _el_llm_emit_token_metric(self, el: ET.Element, call: Call) -> None:
        """Learn, "Emit metrics for consumption of large language model tokens": the response's usage as metrics
        with the given dimensions; a default dimension (API ID, Operation ID, Subscription ID) may omit its value."""
        defaults = {"API ID": call.api_id, "Operation ID": call.operation, "Subscription ID": call.subscription}
        dimensions = {}
        for d in el.findall("dimension"):
            name = _attr(d, "name")
            value = d.get("value")
            if value is None and name not in defaults:
                raise PolicyFailure(f"<dimension name='{name}'> needs a value (not a default dimension)")
            dimensions[name] = defaults[name] if value is None else str(evaluate(value, call))
        namespace = el.get("namespace", "API Management")

        def emit(response: Response | None) -> None:
            usage = token_usage(response)
            if usage:
                with self._lock:
                    self.llm_metrics.append({"namespace": namespace, "dimensions": dimensions, **usage})

        call.after_response.append(emit)

    def _el_return_response(self, el: ET.Element, call: Call) -> None:
        status = el.find("set-status")
        code = int(status.get("code", "200")) if status is not None else 200
        call.response = Response(code, evaluate(el.findtext("set-body") or "", call).encode("utf-8"))


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


