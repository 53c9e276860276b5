"""An Azure Resource Manager emulator for API Management (api-version 2024-05-01), over HTTPS.

It follows the published REST contract (azure-rest-api-specs, Microsoft.ApiManagement 2024-05-01, whose examples are in
tests/data): resource envelopes, ETags and If-Match, long-running operations (Location + Azure-AsyncOperation,
provisioningState InProgress), APIM's import rules (``apim_import``), policies, named values, tags, products, revisions
and releases, ARM throttling, fault injection, and ``/_emulator/*`` routes for tests and benchmarks. One module per
resource family; this one routes (a declarative table) and holds the service, its subscriptions, paging and throttling.
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from apimsync.credentials import StaticTokenCredential
from apimsync.emulators._server import EmulatorServer, Faults, Request, Response
from apimsync.emulators.apim.apis import Apis
from apimsync.emulators.apim.common import (
    MANAGED_IDENTITY_APP_ID,
    PAGE_SIZE,
    TYPES,
    ArmError,
    Throttle,
    Throttled,
    not_found,
)
from apimsync.emulators.apim.links import Links
from apimsync.emulators.apim.lro import LongRunning, Operation
from apimsync.emulators.apim.named_values import NamedValues
from apimsync.emulators.apim.odata import filter_items
from apimsync.emulators.apim.policies import Policies
from apimsync.emulators.apim.state import MASTER, State
from apimsync.emulators.gateway import Gateway, GatewayApi
from apimsync.emulators.latency import Latency, wait
from apimsync.emulators.throttle import TokenBucket
from apimsync.emulators.tls import LocalCA


class ApimEmulator(Apis, LongRunning, Policies, NamedValues, Links):
    """One APIM service behind an emulated ARM endpoint on 127.0.0.1 (HTTPS, locally generated CA)."""

    SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
    RESOURCE_GROUP = "rg-apimsync"
    SERVICE = "apim-emulator"

    def __init__(self, *, port: int = 0, gateway_port: int = 0, state_file: str | Path | None = None,
                 throttle: Throttle | None = None, time_scale: float = 1.0, latency: Latency | None = None,
                 seed: int = 0, sku: str = "Developer") -> None:
        self.sku = sku  # behaviour that depends on the tier: policies.py (llm-token-limit), gateway.py (cache)
        self.time_scale = time_scale
        self.latency = latency or Latency()
        self.throttle = throttle or Throttle()
        self.faults = Faults(seed)
        self.state_file = Path(state_file) if state_file else None
        self._lock = threading.RLock()
        self._etags = itertools.count(1)
        self._operations: dict[str, Operation] = {}
        self._reset_buckets()
        self._stats: dict[str, Any] = {}
        self.reset_stats()
        self.journal: collections.deque[tuple[str, str, tuple[str, ...]]] = collections.deque(maxlen=1000)
        self._state = State.load(self.state_file) if self.state_file and self.state_file.exists() else State()
        self._etags = itertools.count(self._state.etag_counter)
        self._ca = LocalCA()
        fd, ca_path = tempfile.mkstemp(prefix="apimsync-emulator-ca-", suffix=".pem")
        os.close(fd)
        self.ca_file = self._ca.write_pem(ca_path)
        self._server = EmulatorServer(self._app, port=port, ssl_context=self._ca.server_context())
        self.url = self._server.url
        self.gateway = Gateway(self, managed_identity_app_id=MANAGED_IDENTITY_APP_ID)
        self._gateway_server = EmulatorServer(self.gateway, port=gateway_port, ssl_context=self._ca.server_context())
        self.gateway_url = self._gateway_server.url
        self._route_table = self._routes()
        self.base_path = (f"/subscriptions/{self.SUBSCRIPTION}/resourceGroups/{self.RESOURCE_GROUP}"
                          f"/providers/Microsoft.ApiManagement/service/{self.SERVICE}")

    def start(self) -> ApimEmulator:
        self._server.start()
        self._gateway_server.start()
        return self

    def stop(self) -> None:
        try:
            self._gateway_server.stop()
        finally:
            self._server.stop()
        try:
            self.ca_file.unlink()
        except OSError:
            pass

    def __enter__(self) -> ApimEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def arm_id(self, *parts: str) -> str:
        return "/".join([self.base_path, *parts]) if parts else self.base_path

    def client(self, **kwargs: Any) -> Any:
        """A real azure-mgmt-apimanagement client wired to this emulator."""
        from azure.mgmt.apimanagement import ApiManagementClient

        options: dict[str, Any] = {"base_url": self.url, "connection_verify": str(self.ca_file),
                                   "polling_interval": 0.05}
        options.update(kwargs)
        return ApiManagementClient(StaticTokenCredential(), self.SUBSCRIPTION, **options)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            self._advance()
            out = json.loads(json.dumps(self._stats))
            out["apis"] = len(self._state.apis)
        out["gateway_calls"] = dict(self.gateway.calls)
        out["llm_metrics"] = list(self.gateway.llm_metrics)
        return out

    @property
    def subscription_key(self) -> str:
        """The primary key of the built-in all-access subscription."""
        with self._lock:
            return str(self._state.subscriptions[MASTER]["primaryKey"])

    def gateway_view(self) -> tuple[list[GatewayApi], dict[str, str], dict[str, str]]:
        """What the gateway reads per request: current APIs, named values by display name, valid keys (→ the
        subscription's id)."""
        with self._lock:
            self._advance()
            apis = []
            for api_id, entry in self._state.apis.items():
                r = entry["revisions"][entry["current"]]
                props = r["props"]
                apis.append(GatewayApi(api_id, str(props.get("path") or ""), str(props.get("serviceUrl") or ""),
                                       bool(props.get("subscriptionRequired", True)),
                                       [(o["name"], o["method"], o["url_template"]) for o in r["operations"]],
                                       (r.get("policy") or {}).get("value"),
                                       {o["name"]: o["request_schema"] for o in r["operations"]
                                        if o.get("request_schema")}))
            named = {nv["displayName"]: self._nv_value(nv) for nv in self._state.named_values.values()}
            keys = {k: sid for sid, sub in self._state.subscriptions.items() if sub.get("state") == "active"
                    for k in (sub["primaryKey"], sub["secondaryKey"])}
            for api in apis:
                api.subscriptions = frozenset(sid for sid, sub in self._state.subscriptions.items()
                                              if self._covers(str(sub.get("scope") or ""), api.api_id))
        return apis, named, keys

    def _covers(self, scope: str, api_id: str) -> bool:
        """Whether a subscription's scope (``/apis``, ``/apis/{id}``, ``/products/{id}``: SubscriptionContract
        ``scope``) admits calls to an API (Learn, "Subscriptions in Azure API Management": a product subscription
        gives access to the product's APIs only)."""
        tail = scope.split("/service/", 1)[-1] if "/service/" in scope else scope
        parts = [p for p in tail.split("/") if p][-2:] if tail.rstrip("/") != "/apis" else ["apis"]
        if parts == ["apis"]:
            return True
        if len(parts) == 2 and parts[0] == "apis":
            return parts[1] == api_id
        if len(parts) == 2 and parts[0] == "products":
            return api_id in self._state.product_apis.get(parts[1], [])
        return False

    def add_subscription(self, sid: str, scope: str) -> str:
        """A subscription with ``scope`` (as the portal creates one); returns its primary key."""
        import uuid

        from apimsync.emulators.apim.state import now

        with self._lock:
            self._state.subscriptions[sid] = {"displayName": sid, "scope": scope, "state": "active",
                                              "primaryKey": uuid.uuid4().hex, "secondaryKey": uuid.uuid4().hex,
                                              "createdDate": now()}
            return str(self._state.subscriptions[sid]["primaryKey"])

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = {"reads": 0, "writes": 0, "deletes": 0, "throttled": 0, "errors": 0, "by_operation": {}}

    def _reset_buckets(self) -> None:
        t, s = self.throttle, self.time_scale
        self._buckets = {"reads": TokenBucket(*t.reads, s), "writes": TokenBucket(*t.writes, s),
                         "deletes": TokenBucket(*t.deletes, s)}

    def _save(self) -> None:
        if not self.state_file:
            return
        self._state.etag_counter = next(self._etags)
        self._state.save(self.state_file)

    def _etag(self) -> str:
        return '"' + base64.b64encode(next(self._etags).to_bytes(8, "big")).decode() + '"'

    def _app(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/_emulator/"):
            return self._emulator_route(request, path)
        try:
            return self._arm(request, path)
        except ArmError as err:
            if err.status >= 500:
                with self._lock:
                    self._stats["errors"] += 1
            return err.response()

    def _emulator_route(self, request: Request, path: str) -> Response:
        if path == "/_emulator/stats" and request.method == "GET":
            return Response.json(200, self.stats())
        if path == "/_emulator/reset" and request.method == "POST":
            self.reset_stats()
            self._reset_buckets()
            return Response.json(200, {"reset": True})
        if path == "/_emulator/faults" and request.method == "POST":
            try:
                self.faults.configure_from(request.json() or {})
            except (ValueError, TypeError, re.error) as exc:  # malformed JSON, unknown keys, bad types or regex
                return Response.json(400, {"error": {"code": "BadRequest", "message": f"faults: {exc}"}})
            return Response.json(200, {"ok": True})
        return Response.json(404, {"error": {"code": "NotFound", "message": "unknown emulator route"}})

    def _arm(self, request: Request, path: str) -> Response:
        if request.bearer_token is None:
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is "
                                                        "missing.")
        kind = {"GET": "reads", "HEAD": "reads", "DELETE": "deletes"}.get(request.method, "writes")
        headers = self._take_token(kind)
        decoded = unquote(path)
        if request.method in ("PUT", "PATCH"):  # what was written, by property name (never a value): for tests
            try:
                written = sorted((request.json() or {}).get("properties") or {})
            except (ValueError, AttributeError):
                written = []
            self.journal.append((request.method, decoded[len(self.base_path):], tuple(written)))
        rule = self.faults.apply(request, decoded)
        wait(self.latency.arm(request.method, decoded), self.time_scale)
        if rule is not None and rule.status:
            with self._lock:
                self._stats["errors"] += 1
            codes = {409: "PessimisticConcurrencyConflict", 412: "PreconditionFailed", 429: "TooManyRequests",
                     500: "InternalServerError", 503: "ServiceUnavailable"}
            extra = {"Retry-After": str(math.ceil(rule.retry_after))} if rule.retry_after is not None else {}
            response = ArmError(rule.status, codes.get(rule.status, "Error"), "Injected fault.").response()
            response.headers.update({**headers, **extra})
            return response
        if not request.query.get("api-version"):
            raise ArmError(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
        if decoded.rstrip("/") == self.base_path and request.method == "GET":
            return self._service_body(headers)
        if not decoded.startswith(self.base_path + "/"):
            raise ArmError(404, "ResourceNotFound", f"The resource '{decoded}' was not found.")
        parts = [p for p in decoded[len(self.base_path) + 1:].split("/") if p]
        with self._lock:
            self._advance()
            op_key = f"{request.method} {self._route_name(parts)}"
            self._stats["by_operation"][op_key] = self._stats["by_operation"].get(op_key, 0) + 1
            response = self._route(request, parts, lro_fail=bool(rule and rule.lro_fail))
        response.headers.update(headers)
        return response

    def _take_token(self, kind: str) -> dict[str, str]:
        """Take a token of the 2024 bucket model (Learn, "Understand how Azure Resource Manager throttles
        requests": per subscription reads 250 + 25/s, writes and deletes 200 + 10/s; global subscription limits
        are 15 times those). The remaining counts go out as ``x-ms-ratelimit-remaining-subscription-{kind}`` and
        ``...-subscription-global-{kind}`` (the latter as seen in azure-powershell's Invoke-AzRestMethod help)."""
        header = f"x-ms-ratelimit-remaining-subscription-{kind}"
        if not self.throttle.enabled:  # an unlimited service: counted, never refused, and no counts to pace by
            with self._lock:
                self._stats[kind] += 1
            return {}
        granted, remaining, wait = self._buckets[kind].take()
        with self._lock:
            self._stats[kind if granted else "throttled"] += 1
        if granted:
            capacity = int(self._buckets[kind].capacity)
            used = capacity - remaining  # this client is the only one: the global bucket lost as many tokens
            return {header: str(remaining), f"x-ms-ratelimit-remaining-subscription-global-{kind}": str(
                15 * capacity - used)}
        real_wait = max(wait, 0.001)
        raise Throttled(real_wait * self.time_scale, real_wait, header)

    @staticmethod
    def _route_name(parts: list[str]) -> str:
        """The collection names of a path: apis/{id}/policies/policy → "apis/policies"."""
        return "/".join(parts[0::2]) or "-"

    def _routes(self) -> list[tuple[str | None, re.Pattern[str], Callable[..., Response]]]:
        """(method or any, the path after the service, handler(request, lro_fail, *path groups))."""
        def rx(pattern: str) -> re.Pattern[str]:
            return re.compile(pattern.replace("{id}", "([^/]+)"))

        return [
            ("GET", rx("apis"), lambda rq, _f: self._list(rq, ["apis"], self._list_apis())),
            (None, rx("apis/{id}"), lambda rq, f, a: self._api(rq, a, f)),
            (None, rx("apis/{id}/policies/{id}"), lambda rq, _f, a, p: self._policy(rq, a, p)),
            ("GET", rx("apis/{id}/operations"), lambda rq, _f, a: self._list(rq, ["apis", a, "operations"], [
                self._operation_body(a, o) for o in self._revision(a)["operations"]])),
            ("GET", rx("apis/{id}/operations/{id}"), lambda _rq, _f, a, o: self._operation(a, o)),
            (None, rx("apis/{id}/tags"), lambda rq, _f, a: self._api_tags(rq, a, None)),
            (None, rx("apis/{id}/tags/{id}"), lambda rq, _f, a, t: self._api_tags(rq, a, t)),
            ("PUT", rx("apis/{id}/releases/{id}"), lambda rq, _f, a, r: self._release(rq, a, r)),
            ("GET", rx("apis/{id}/revisions"), lambda rq, _f, a: self._list(rq, ["apis", a, "revisions"],
                                                                              self._revision_list(self._base(a)))),
            ("GET", rx("apisByTags"), lambda rq, _f: self._list(rq, ["apisByTags"], self._apis_by_tags())),
            ("GET", rx("namedValues"), lambda rq, _f: self._list(rq, ["namedValues"], [
                self._nv_body(k) for k in self._state.named_values])),
            (None, rx("namedValues/{id}"), lambda rq, f, n: self._named_value(rq, n, f)),
            ("POST", rx("namedValues/{id}/listValue"), lambda _rq, _f, n: self._list_value(n)),
            ("GET", rx("tags"), lambda rq, _f: self._list(rq, ["tags"], [self._tag_body(t) for t in self._state.tags])),
            (None, rx("tags/{id}"), lambda rq, _f, t: self._tag(rq, t)),
            ("GET", rx("products"), lambda rq, _f: self._list(rq, ["products"], [
                self._product_body(p) for p in self._state.products])),
            (None, rx("products/{id}"), lambda rq, _f, p: self._product(rq, p)),
            (None, rx("products/{id}/apis"), lambda rq, _f, p: self._product_apis(rq, p, None)),
            (None, rx("products/{id}/apis/{id}"), lambda rq, _f, p, a: self._product_apis(rq, p, a)),
            ("GET", rx("subscriptions"), lambda rq, _f: self._list(rq, ["subscriptions"], [
                self._subscription_body(k) for k in self._state.subscriptions])),
            ("GET", rx("subscriptions/{id}"), lambda _rq, _f, s: Response.json(200, self._subscription_body(s))),
            ("POST", rx("subscriptions/{id}/listSecrets"), lambda _rq, _f, s: self._list_secrets(s)),
            ("GET", rx("tenant/operationResults/{id}"), lambda _rq, _f, o: self._operation_result(o)),
        ]

    def _route(self, request: Request, parts: list[str], lro_fail: bool) -> Response:
        path = "/".join(parts)
        for method, pattern, handler in self._route_table:
            found = pattern.fullmatch(path)
            if found and method in (None, request.method):
                return handler(request, lro_fail, *found.groups())
        raise ArmError(404, "ResourceNotFound", f"No route for {request.method} /{path}.")

    def _operation(self, api_id: str, name: str) -> Response:
        for o in self._revision(api_id)["operations"]:
            if o["name"] == name:
                return Response.json(200, self._operation_body(api_id, o))
        raise not_found("Operation")

    def _list_value(self, nv_id: str) -> Response:
        nv = self._state.named_values.get(nv_id)
        if nv is None:
            raise not_found("Named value")
        return Response.json(200, {"value": self._nv_value(nv)})

    def _list_secrets(self, sid: str) -> Response:
        sub = self._state.subscriptions.get(sid)
        if sub is None:
            raise not_found("Subscription")
        return Response.json(200, {"primaryKey": sub["primaryKey"], "secondaryKey": sub["secondaryKey"]})

    def _service_body(self, headers: dict[str, str]) -> Response:
        """ApiManagementServiceResource, the fields of ApiManagementServiceGetService.json that matter here."""
        host = self.gateway_url
        body = {"id": self.base_path, "name": self.SERVICE, "type": "Microsoft.ApiManagement/service",
                "tags": {}, "location": "West Europe", "etag": "AAAAAAAAAAE=",
                "properties": {"publisherEmail": "apimsync@example.com", "publisherName": "apimsync emulator",
                               "notificationSenderEmail": "apimgmt-noreply@mail.windowsazure.com",
                               "provisioningState": "Succeeded", "targetProvisioningState": "",
                               "createdAtUtc": "2026-01-01T00:00:00Z", "gatewayUrl": host,
                               "gatewayRegionalUrl": host, "portalUrl": host, "developerPortalUrl": host,
                               "managementApiUrl": self.url, "scmUrl": host, "publicIPAddresses": ["127.0.0.1"],
                               "virtualNetworkType": "None", "disableGateway": False,
                               "apiVersionConstraint": {"minApiVersion": "2019-12-01"},
                               "publicNetworkAccess": "Enabled", "platformVersion": "stv2"},
                "sku": {"name": self.sku, "capacity": 0 if self.sku == "Consumption" else 1},
                "identity": {"type": "SystemAssigned", "principalId": MANAGED_IDENTITY_APP_ID,
                             "tenantId": "00000000-0000-0000-0000-00000000aaaa"}}
        return Response.json(200, body, headers)

    def _subscription_body(self, sid: str) -> dict[str, Any]:
        """SubscriptionContract: keys are never in a GET (definitions.json: "Use '/listSecrets'")."""
        sub = self._state.subscriptions.get(sid)
        if sub is None:
            raise not_found("Subscription")
        props = {"ownerId": self.arm_id("users", "1"), "scope": self.arm_id() + sub["scope"],
                 "displayName": sub["displayName"], "state": sub["state"], "createdDate": sub["createdDate"]}
        return {"id": self.arm_id("subscriptions", sid), "type": TYPES["subscriptions"], "name": sid,
                "properties": props}

    def _list(self, request: Request, parts: list[str], items: list[dict[str, Any]]) -> Response:
        items = filter_items(items, request.query.get("$filter"))
        top = int(request.query.get("$top") or PAGE_SIZE)
        skip = int(request.query.get("$skip") or 0)
        page = items[skip: skip + top]
        body: dict[str, Any] = {"value": page, "count": len(items)}
        if skip + top < len(items):
            query = {k: v for k, v in request.query.items() if k not in ("$skip", "$top")}
            query.update({"$top": str(top), "$skip": str(skip + top)})
            body["nextLink"] = (f"{self.url}{self.base_path}/{'/'.join(quote(p, safe='') for p in parts)}?"
                                + "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in query.items()))
        else:
            body["nextLink"] = ""
        return Response.json(200, body)
