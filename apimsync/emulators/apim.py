"""An Azure Resource Manager emulator for API Management (api-version 2024-05-01), over HTTPS.

It follows the published REST contract (shared/contracts, research/apim.md §2): resource envelopes, ETags and
If-Match, long-running operations (Location + Azure-AsyncOperation, provisioningState InProgress), APIM's import
rules (``apim_import``), policies, named values, tags, products, revisions and releases, ARM throttling, fault
injection, and ``/_emulator/*`` routes for tests and benchmarks.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import re
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from apimsync.credentials import StaticTokenCredential
from apimsync.emulators._server import EmulatorServer, Faults, Request, Response
from apimsync.emulators.apim_import import ImportedOperation, ImportRejected, import_spec, reimport_operations
from apimsync.emulators.gateway import NAMED_VALUE_REF, Gateway, GatewayApi
from apimsync.emulators.throttle import TokenBucket
from apimsync.emulators.tls import LocalCA

API_VERSION = "2024-05-01"
API_ID = re.compile(r"^[^*#&+:<>?]+$")
NAMED_VALUE_DISPLAY = re.compile(r"^[A-Za-z0-9\-._]+$")
PAGE_SIZE = 100
_TYPES = {"apis": "Microsoft.ApiManagement/service/apis", "namedValues": "Microsoft.ApiManagement/service/namedValues",
          "tags": "Microsoft.ApiManagement/service/tags", "products": "Microsoft.ApiManagement/service/products",
          "policies": "Microsoft.ApiManagement/service/apis/policies",
          "operations": "Microsoft.ApiManagement/service/apis/operations",
          "releases": "Microsoft.ApiManagement/service/apis/releases",
          "subscriptions": "Microsoft.ApiManagement/service/subscriptions"}
MANAGED_IDENTITY_APP_ID = "5b0f1c2e-7a43-4c4e-9d0a-0a9100000001"  # the service's system-assigned identity
MASTER_SUBSCRIPTION = "master"  # the built-in all-access subscription (vscode-apimanagement reads its keys so)




@dataclass
class Throttle:
    """ARM token buckets per subscription: (capacity, refill per emulated second)."""

    enabled: bool = False
    reads: tuple[float, float] = (250, 25)
    writes: tuple[float, float] = (200, 10)
    deletes: tuple[float, float] = (200, 10)


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self) -> Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return Response.json(self.status, {"error": body})


def _not_found(what: str) -> ArmError:
    return ArmError(404, "ResourceNotFound", f"{what} not found.")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Operation:
    """A long-running operation: ``finish`` applies its effect when due (unless it fails)."""

    id: str
    location: str
    async_code: int
    due: float
    finish: Any
    fail: bool = False
    started: str = field(default_factory=_now)
    status: str = "InProgress"
    api_key: str | None = None  # the API whose writes are blocked while this runs


class ApimEmulator:
    """One APIM service behind an emulated ARM endpoint on 127.0.0.1 (HTTPS, locally generated CA)."""

    SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
    RESOURCE_GROUP = "rg-apimsync"
    SERVICE = "apim-emulator"

    def __init__(self, *, port: int = 0, gateway_port: int = 0, state_file: str | Path | None = None,
                 throttle: Throttle | None = None, time_scale: float = 1.0, lro_seconds: float = 0.2,
                 seed: int = 0) -> None:
        self.time_scale = time_scale
        self.lro_seconds = lro_seconds
        self.throttle = throttle or Throttle()
        self.faults = Faults(seed)
        self.state_file = Path(state_file) if state_file else None
        self._lock = threading.RLock()
        self._etags = itertools.count(1)
        self._operations: dict[str, _Operation] = {}
        self._reset_buckets()
        self._stats: dict[str, Any] = {}
        self.reset_stats()
        self._state = self._empty_state()
        if self.state_file and self.state_file.exists():
            self._state = {**self._empty_state(), **json.loads(self.state_file.read_text(encoding="utf-8"))}
            self._etags = itertools.count(int(self._state.get("etag_counter", 1)))
        self._ca = LocalCA()
        fd, ca_path = tempfile.mkstemp(prefix="apimsync-emulator-ca-", suffix=".pem")
        os.close(fd)
        self.ca_file = self._ca.write_pem(ca_path)
        self._server = EmulatorServer(self._app, port=port, ssl_context=self._ca.server_context())
        self.url = self._server.url
        self.gateway = Gateway(self, managed_identity_app_id=MANAGED_IDENTITY_APP_ID)
        self._gateway_server = EmulatorServer(self.gateway, port=gateway_port, ssl_context=self._ca.server_context())
        self.gateway_url = self._gateway_server.url
        self.base_path = (f"/subscriptions/{self.SUBSCRIPTION}/resourceGroups/{self.RESOURCE_GROUP}"
                          f"/providers/Microsoft.ApiManagement/service/{self.SERVICE}")

    @staticmethod
    def _empty_state() -> dict[str, Any]:
        products = {p: {"displayName": p.title(), "description": f"{p.title()} product", "subscriptionRequired": True,
                        "state": "published"} for p in ("starter", "unlimited")}
        master = {"displayName": "Built-in all-access subscription", "scope": "/apis", "state": "active",
                  "primaryKey": uuid.uuid4().hex, "secondaryKey": uuid.uuid4().hex, "createdDate": _now()}
        return {"apis": {}, "named_values": {}, "tags": {}, "api_tags": {}, "products": products,
                "product_apis": {"starter": [], "unlimited": []}, "etags": {},
                "subscriptions": {MASTER_SUBSCRIPTION: master}}

    # -- lifecycle -------------------------------------------------------------------------------------

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

    # -- helpers for tests -----------------------------------------------------------------------------

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
            out["apis"] = len(self._state["apis"])
        out["gateway_calls"] = dict(self.gateway.calls)
        return out

    @property
    def subscription_key(self) -> str:
        """The primary key of the built-in all-access subscription."""
        with self._lock:
            return str(self._state["subscriptions"][MASTER_SUBSCRIPTION]["primaryKey"])

    def gateway_view(self) -> tuple[list[GatewayApi], dict[str, str], set[str]]:
        """What the gateway reads per request: current APIs, named values by display name, valid keys."""
        with self._lock:
            self._advance()
            apis = []
            for api_id, entry in self._state["apis"].items():
                r = entry["revisions"][entry["current"]]
                props = r["props"]
                apis.append(GatewayApi(api_id, str(props.get("path") or ""), str(props.get("serviceUrl") or ""),
                                       bool(props.get("subscriptionRequired", True)),
                                       [(o["name"], o["method"], o["url_template"]) for o in r["operations"]],
                                       (r.get("policy") or {}).get("value")))
            named = {nv["displayName"]: self._nv_value(nv) for nv in self._state["named_values"].values()}
            keys = {k for sub in self._state["subscriptions"].values() if sub.get("state") == "active"
                    for k in (sub["primaryKey"], sub["secondaryKey"])}
        return apis, named, keys

    @staticmethod
    def _nv_value(nv: dict[str, Any]) -> str:
        if nv.get("keyVault"):
            return f"kv-secret-from:{nv['keyVault'].get('secretIdentifier')}"
        return str(nv.get("value") or "")

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = {"reads": 0, "writes": 0, "deletes": 0, "throttled": 0, "errors": 0, "by_operation": {}}

    def _reset_buckets(self) -> None:
        t, s = self.throttle, self.time_scale
        self._buckets = {"reads": TokenBucket(*t.reads, s), "writes": TokenBucket(*t.writes, s),
                         "deletes": TokenBucket(*t.deletes, s)}

    # -- persistence -------------------------------------------------------------------------------------

    def _save(self) -> None:
        if not self.state_file:
            return
        self._state["etag_counter"] = next(self._etags)
        tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
        tmp.unlink(missing_ok=True)
        # the state holds secret named values and subscription keys: readable by its owner only
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(self._state))
        tmp.replace(self.state_file)

    def _etag(self) -> str:
        return '"' + base64.b64encode(next(self._etags).to_bytes(8, "big")).decode() + '"'

    # -- the app ------------------------------------------------------------------------------------------

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
        rule = self.faults.apply(request, decoded)
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
        granted, remaining, wait = self._buckets[kind].take()
        if not self.throttle.enabled:  # counted and reported, never refused
            granted = True
        with self._lock:
            self._stats[kind if granted else "throttled"] += 1
        if granted:
            capacity = int(self._buckets[kind].capacity)
            used = capacity - remaining  # this client is the only one: the global bucket lost as many tokens
            return {header: str(remaining), f"x-ms-ratelimit-remaining-subscription-global-{kind}": str(
                15 * capacity - used)}
        real_wait = max(wait, 0.001)
        raise _Throttled(real_wait * self.time_scale, real_wait, header)

    @staticmethod
    def _route_name(parts: list[str]) -> str:
        """The collection names of a path: apis/{id}/policies/policy → "apis/policies"."""
        return "/".join(parts[0::2]) or "-"

    # -- routing ----------------------------------------------------------------------------------------------

    def _route(self, request: Request, parts: list[str], lro_fail: bool) -> Response:
        m, n = request.method, len(parts)
        head = parts[0]
        if head == "apis":
            if n == 1 and m == "GET":
                return self._list(request, parts, self._list_apis())
            if n >= 2:
                api_id = parts[1]
                if n == 2:
                    return self._api(request, api_id, lro_fail)
                sub = parts[2]
                if sub == "policies" and n == 4:
                    return self._policy(request, api_id, parts[3])
                if sub == "operations" and n == 3 and m == "GET":
                    return self._list(request, parts, [self._operation_body(api_id, o)
                                                       for o in self._revision(api_id)["operations"]])
                if sub == "operations" and n == 4 and m == "GET":
                    for o in self._revision(api_id)["operations"]:
                        if o["name"] == parts[3]:
                            return Response.json(200, self._operation_body(api_id, o))
                    raise _not_found("Operation")
                if sub == "tags":
                    return self._api_tags(request, api_id, parts[3] if n == 4 else None)
                if sub == "releases" and n == 4 and m == "PUT":
                    return self._release(request, api_id, parts[3])
                if sub == "revisions" and n == 3 and m == "GET":
                    base = self._base(api_id)
                    return self._list(request, parts, self._revision_list(base))
        if head == "apisByTags" and n == 1 and m == "GET":
            return self._list(request, parts, self._apis_by_tags())
        if head == "namedValues":
            if n == 1 and m == "GET":
                return self._list(request, parts, [self._nv_body(k) for k in self._state["named_values"]])
            if n == 2:
                return self._named_value(request, parts[1], lro_fail)
            if n == 3 and parts[2] == "listValue" and m == "POST":
                nv = self._state["named_values"].get(parts[1])
                if nv is None:
                    raise _not_found("Named value")
                return Response.json(200, {"value": self._nv_value(nv)})
        if head == "tags":
            if n == 1 and m == "GET":
                return self._list(request, parts, [self._tag_body(t) for t in self._state["tags"]])
            if n == 2:
                return self._tag(request, parts[1])
        if head == "products":
            if n == 1 and m == "GET":
                return self._list(request, parts, [self._product_body(p) for p in self._state["products"]])
            if n == 2:
                return self._product(request, parts[1])
            if n >= 3 and parts[2] == "apis":
                return self._product_apis(request, parts[1], parts[3] if n == 4 else None)
        if head == "subscriptions":
            if n == 1 and m == "GET":
                return self._list(request, parts, [self._subscription_body(k) for k in self._state["subscriptions"]])
            if n >= 2 and parts[1] not in self._state["subscriptions"]:
                raise _not_found("Subscription")
            if n == 2 and m == "GET":
                return Response.json(200, self._subscription_body(parts[1]))
            if n == 3 and parts[2] == "listSecrets" and m == "POST":
                sub = self._state["subscriptions"][parts[1]]
                return Response.json(200, {"primaryKey": sub["primaryKey"], "secondaryKey": sub["secondaryKey"]})
        if head == "tenant" and n == 3 and parts[1] == "operationResults" and m == "GET":
            return self._operation_result(parts[2])
        raise ArmError(404, "ResourceNotFound", f"No route for {m} /{'/'.join(parts)}.")

    # -- the service and its subscriptions ---------------------------------------------------------------------

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
                "sku": {"name": "Developer", "capacity": 1},
                "identity": {"type": "SystemAssigned", "principalId": MANAGED_IDENTITY_APP_ID,
                             "tenantId": "00000000-0000-0000-0000-00000000aaaa"}}
        return Response.json(200, body, headers)

    def _subscription_body(self, sid: str) -> dict[str, Any]:
        """SubscriptionContract: keys are never in a GET (definitions.json: "Use '/listSecrets'")."""
        sub = self._state["subscriptions"][sid]
        props = {"ownerId": self.arm_id("users", "1"), "scope": self.arm_id() + sub["scope"],
                 "displayName": sub["displayName"], "state": sub["state"], "createdDate": sub["createdDate"]}
        return {"id": self.arm_id("subscriptions", sid), "type": _TYPES["subscriptions"], "name": sid,
                "properties": props}

    # -- lists and paging --------------------------------------------------------------------------------------

    def _list(self, request: Request, parts: list[str], items: list[dict[str, Any]]) -> Response:
        items = _filter(items, request.query.get("$filter"))
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

    def _list_apis(self) -> list[dict[str, Any]]:
        """Every revision of every API, as Azure lists them (non-current ones as ``<id>;rev=N``, isCurrent false:
        api-management-developer-portal filters with ``isCurrent eq true`` for that reason, issues #645/#737)."""
        out = []
        for api_id in sorted(self._state["apis"]):
            entry = self._state["apis"][api_id]
            out.append(self._api_body(api_id))
            out += [self._api_body(api_id, rev) for rev in sorted(entry["revisions"], key=int)
                    if rev != entry["current"]]
        return out

    # -- APIs ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _split(api_id: str) -> tuple[str, str | None]:
        if ";rev=" in api_id:
            base, rev = api_id.split(";rev=", 1)
            return base, rev
        return api_id, None

    def _base(self, api_id: str) -> str:
        base, _ = self._split(api_id)
        if base not in self._state["apis"]:
            raise _not_found("API")
        return base

    def _revision(self, api_id: str) -> dict[str, Any]:
        base, rev = self._split(api_id)
        entry = self._state["apis"].get(base)
        if entry is None:
            raise _not_found("API")
        rev = rev or entry["current"]
        if rev not in entry["revisions"]:
            raise _not_found("API revision")
        return entry["revisions"][rev]

    def _api_body(self, base: str, rev: str | None = None) -> dict[str, Any]:
        entry = self._state["apis"][base]
        rev = rev or entry["current"]
        r = entry["revisions"][rev]
        api_id = base if rev == entry["current"] else f"{base};rev={rev}"
        props = {**r["props"], "apiRevision": rev, "isCurrent": rev == entry["current"], "isOnline": True,
                 "type": "http", "provisioningState": "Succeeded"}
        return {"id": self.arm_id("apis", api_id), "type": _TYPES["apis"], "name": api_id, "properties": props}

    def _busy(self, base: str) -> None:
        for op in self._operations.values():
            if op.api_key == base and op.status == "InProgress":
                raise ArmError(409, "PessimisticConcurrencyConflict", "Operation on the API is in progress")

    def _check_if_match(self, request: Request, etag: str | None, required: bool) -> None:
        if_match = request.headers.get("if-match")
        if if_match is None:
            if required:
                raise ArmError(400, "ValidationError", "If-Match header is required.")
            return
        if if_match != "*" and if_match != etag:
            raise ArmError(412, "PreconditionFailed", "The entity was modified since it was read (ETag mismatch).")

    def _api(self, request: Request, api_id: str, lro_fail: bool) -> Response:
        m = request.method
        base, rev = self._split(api_id)
        entry = self._state["apis"].get(base)
        if m in ("GET", "HEAD"):
            if request.query.get("asyncId"):
                return self._poll(request.query["asyncId"])
            if entry is None or (rev and rev not in entry["revisions"]):
                raise _not_found("API")
            r = entry["revisions"][rev or entry["current"]]
            body = self._api_body(base, rev)
            if m == "HEAD":
                return Response(200, b"", {"ETag": r["etag"]})
            return Response.json(200, body, {"ETag": r["etag"]})
        if m == "DELETE":
            if entry is None:
                return Response(204)
            self._busy(base)
            current = entry["revisions"][rev or entry["current"]]
            self._check_if_match(request, current["etag"], required=True)

            def finish() -> None:
                if rev and rev != entry["current"]:
                    entry["revisions"].pop(rev, None)
                else:
                    self._state["apis"].pop(base, None)
                    self._state["api_tags"].pop(base, None)
                    for links in self._state["product_apis"].values():
                        if base in links:
                            links.remove(base)

            return self._start_lro(f"apis/{quote(api_id, safe='')}", 204, finish, lro_fail, base, body=None,
                                   status=202)
        if m == "PATCH":
            if entry is None:
                raise _not_found("API")
            self._busy(base)
            r = entry["revisions"][rev or entry["current"]]
            self._check_if_match(request, r["etag"], required=True)
            props = (request.json() or {}).get("properties") or {}
            self._validate_props(props, partial=True, base=base)
            r["props"].update({k: v for k, v in props.items() if k in _API_PROPS})
            r["etag"] = self._etag()
            self._save()
            return Response.json(200, self._api_body(base, rev), {"ETag": r["etag"]})
        if m == "PUT":
            return self._put_api(request, base, rev, entry, lro_fail)
        raise ArmError(405, "MethodNotAllowed", f"{m} is not allowed on an API.")

    def _validate_props(self, props: dict[str, Any], *, partial: bool, base: str) -> None:
        if not API_ID.match(base) or len(base) > 256:
            raise ArmError(400, "ValidationError", f"API identifier '{base}' is invalid.")
        limits = {"displayName": (1, 300), "path": (0, 400), "serviceUrl": (0, 2000), "description": (0, 10**6),
                  "apiRevisionDescription": (0, 256)}  # definitions.json: ApiRevisionContract maxLength 256
        for key, (low, high) in limits.items():
            if key in props and props[key] is not None and not low <= len(str(props[key])) <= high:
                raise ArmError(400, "ValidationError", f"Property '{key}' must be {low}-{high} characters long.")
        if "path" in props and props["path"] is not None:
            props["path"] = str(props["path"]).strip("/")
            for other, entry in self._state["apis"].items():
                if other != base and entry["revisions"][entry["current"]]["props"].get("path") == props["path"]:
                    raise ArmError(400, "ValidationError", f"Cannot create API '{base}' with the same Path "
                                                           f"'{props['path']}' as API '{other}' unless it's a part "
                                                           "of the same version set.")
        if not partial and not props.get("path") and props.get("path") != "":
            raise ArmError(400, "ValidationError", "Property 'path' is required.")

    def _put_api(self, request: Request, base: str, rev: str | None, entry: dict[str, Any] | None,
                 lro_fail: bool) -> Response:
        body = request.json() or {}
        props = dict(body.get("properties") or {})
        self._busy(base)  # also while the API's own create is still running
        if entry is not None:
            current = entry["revisions"][rev] if rev and rev in entry["revisions"] else entry["revisions"][
                entry["current"]]
            self._check_if_match(request, current["etag"], required=False)
        elif request.headers.get("if-match") not in (None, "*"):
            raise ArmError(412, "PreconditionFailed", "The API does not exist.")
        source: dict[str, Any] | None = None
        if rev is not None and (entry is None or rev not in entry["revisions"]):
            source_id = props.get("sourceApiId") or ""
            source_base = self._split(source_id.rsplit("/apis/", 1)[-1])[0] if source_id else base
            if entry is None or source_base != base:
                raise ArmError(400, "ValidationError", "A new revision needs sourceApiId pointing at its API.")
            source = entry["revisions"][entry["current"]]
            if props.get("path") not in (None, source["props"].get("path")):
                raise ArmError(400, "ValidationError", "Can't change property Path for non-current revision")
        fmt, value = props.pop("format", None), props.pop("value", None)
        imported = None
        if fmt is not None:
            try:
                imported = import_spec(value or "", fmt)
            except ImportRejected as exc:
                raise ArmError(400, "ValidationError", "One or more fields contain incorrect values:",
                               exc.envelope()["error"]["details"]) from None
            except ValueError as exc:
                raise ArmError(400, "ValidationError", str(exc)) from None
        base_props = dict((source or (entry["revisions"][rev or entry["current"]] if entry and (
            rev is None or rev in entry["revisions"]) else {"props": {}}))["props"])
        new_props = {**base_props}
        if imported is not None:
            new_props.update({k: v for k, v in (("displayName", imported.title), ("description", imported.description),
                                                ("serviceUrl", imported.service_url)) if v})
        new_props.update({k: v for k, v in props.items() if k in _API_PROPS and v is not None})
        if source is not None:
            # "Can't change property Name for non-current revision" (azure-powershell#9270; Description:
            # apiops#285): a new revision keeps its API's name and description, whatever the spec says
            for key, label in (("displayName", "Name"), ("description", "Description")):
                if new_props.get(key) != source["props"].get(key):
                    raise ArmError(400, "ValidationError", f"Can't change property {label} for non-current revision")
        new_props.setdefault("displayName", base)
        new_props.setdefault("protocols", ["https"])
        new_props.setdefault("subscriptionRequired", True)
        self._validate_props(new_props if rev is None or entry is None else {**new_props, "path": None},
                             partial=entry is not None, base=base)
        existing_ops = [ImportedOperation(**o) for o in (
            (source or (entry["revisions"].get(rev or entry["current"]) if entry else None) or {}).get(
                "operations", []))]
        if imported is not None:
            ops, _deleted = reimport_operations(existing_ops, imported.operations)
        else:
            ops = existing_ops
        created = entry is None or (rev is not None and rev not in entry["revisions"])
        etag = self._etag()
        target_rev = rev or (entry["current"] if entry else "1")
        policy = (source or {}).get("policy")

        def finish() -> None:
            e = self._state["apis"].setdefault(base, {"current": target_rev, "revisions": {}, "releases": {}})
            old = e["revisions"].get(target_rev, {})
            e["revisions"][target_rev] = {"props": new_props, "etag": etag, "operations": [asdict(o) for o in ops],
                                          "policy": old.get("policy", policy), "created": old.get("created") or _now(),
                                          "updated": _now()}

        pending = {"id": self.arm_id("apis", base if rev is None else f"{base};rev={rev}"), "type": _TYPES["apis"],
                   "name": base if rev is None else f"{base};rev={rev}",
                   "properties": {**new_props, "apiRevision": target_rev, "isCurrent": target_rev == (
                       entry["current"] if entry else "1"), "provisioningState": "InProgress"}}
        code = 201 if created else 200
        return self._start_lro(f"apis/{quote(str(pending['name']), safe='')}", code, finish, lro_fail,
                               base, body=pending, status=201 if created else 200, etag=etag)

    def _release(self, request: Request, api_id: str, release_id: str) -> Response:
        base = self._base(api_id)
        self._busy(base)
        props = (request.json() or {}).get("properties") or {}
        target = str(props.get("apiId") or "")
        match = re.search(r";rev=(\d+)$", unquote(target))
        entry = self._state["apis"][base]
        rev = match.group(1) if match else entry["current"]
        if rev not in entry["revisions"]:
            raise ArmError(400, "ValidationError", f"Revision {rev} of API '{base}' does not exist.")
        created = release_id not in entry["releases"]
        entry["current"] = rev
        entry["releases"][release_id] = {"apiId": self.arm_id("apis", base), "notes": props.get("notes"),
                                         "createdDateTime": _now(), "updatedDateTime": _now()}
        for r in entry["revisions"].values():
            r["etag"] = self._etag()
        self._save()
        return Response.json(201 if created else 200, {
            "id": self.arm_id("apis", base, "releases", release_id), "type": _TYPES["releases"],
            "name": release_id, "properties": entry["releases"][release_id]})

    def _revision_list(self, base: str) -> list[dict[str, Any]]:
        """ApiRevisionContract items (ApiManagementListApiRevisions.json): the revision's id, number, times, state;
        ``description`` is its apiRevisionDescription (definitions.json), present when set."""
        entry = self._state["apis"][base]
        out = []
        for rev in sorted(entry["revisions"], key=int):
            r = entry["revisions"][rev]
            item = {"apiId": self.arm_id("apis", f"{base};rev={rev}"), "apiRevision": rev,
                    "createdDateTime": r.get("created") or _now(), "updatedDateTime": r.get("updated") or _now(),
                    "isOnline": True, "isCurrent": rev == entry["current"]}
            if r["props"].get("apiRevisionDescription"):
                item["description"] = r["props"]["apiRevisionDescription"]
            out.append(item)
        return out

    def _operation_body(self, api_id: str, op: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.arm_id("apis", api_id, "operations", op["name"]), "type": _TYPES["operations"],
                "name": op["name"], "properties": {"displayName": op["display_name"], "method": op["method"],
                                                   "urlTemplate": op["url_template"],
                                                   "description": op["description"], "templateParameters": [],
                                                   "responses": []}}

    # -- long-running operations ------------------------------------------------------------------------------------

    def _start_lro(self, resource: str, async_code: int, finish: Any, lro_fail: bool, api_key: str | None, *,
                   body: dict[str, Any] | None, status: int, etag: str | None = None) -> Response:
        op_id = uuid.uuid4().hex[:24]
        fail = lro_fail or self.faults.roll_lro_failure()
        location = (f"{self.url}{self.base_path}/{resource}?api-version={API_VERSION}&asyncId={op_id}"
                    f"&asyncCode={async_code}")
        due = time.monotonic() + self.lro_seconds / self.time_scale
        self._operations[op_id] = _Operation(op_id, location, async_code, due, finish, fail, api_key=api_key)
        headers = {"Location": location,
                   "Azure-AsyncOperation": f"{self.url}{self.base_path}/tenant/operationResults/{op_id}"
                                           f"?api-version={API_VERSION}"}
        if etag:
            headers["ETag"] = etag
        if self.lro_seconds <= 0:
            self._advance()
        return Response.json(status, body, headers) if body is not None else Response(status, b"", headers)

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
            raise _not_found("Operation")
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
            entry = self._state["apis"].get(base)
            if entry is None:
                raise _not_found("API")
            return Response.json(op.async_code, self._api_body(base, rev),
                                 {"ETag": entry["revisions"][rev or entry["current"]]["etag"]})
        if parts[0] == "namedValues":
            return Response.json(op.async_code, self._nv_body(parts[1]),
                                 {"ETag": self._state["named_values"][parts[1]]["etag"]})
        return Response(op.async_code)

    def _operation_result(self, op_id: str) -> Response:
        """APIM's OperationResultContract: the status sits under properties, not at the top (the SDK 5.0.0
        default poller cannot read it: research/apim.md §3)."""
        op = self._operations.get(op_id)
        if op is None:
            raise _not_found("Operation result")
        props: dict[str, Any] = {"status": op.status, "started": op.started, "updated": _now()}
        if op.status == "Failed":
            props["error"] = {"code": "OperationFailed", "message": "The long-running operation failed."}
        return Response.json(200, {"id": self.arm_id("tenant", "operationResults", op_id),
                                   "type": "Microsoft.ApiManagement/service/tenant/operationResults",
                                   "name": op_id, "properties": props})

    # -- policies ---------------------------------------------------------------------------------------------------

    def _policy(self, request: Request, api_id: str, policy_id: str) -> Response:
        if policy_id != "policy":
            raise ArmError(400, "ValidationError", "Policy identifier must be 'policy'.")
        r = self._revision(api_id)
        m = request.method
        pid = self.arm_id("apis", api_id, "policies", "policy")
        if m in ("GET", "HEAD"):
            policy = r.get("policy")
            if policy is None:
                raise _not_found("Policy")
            # properties carry the value only (ApiManagementGetApiPolicy.json, ...CreateApiPolicy.json)
            body = {"id": pid, "type": _TYPES["policies"], "name": "policy", "properties": {"value": policy["value"]}}
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
            known = {nv["displayName"] for nv in self._state["named_values"].values()}
            for ref in NAMED_VALUE_REF.findall(value):
                if ref not in known:
                    raise ArmError(400, "ValidationError", "One or more fields contain incorrect values:", [{
                        "code": "ValidationError", "target": "set-header",
                        "message": f"Cannot find a property '{ref}'"}])
            created = r.get("policy") is None
            stored = _reserialize(value)
            same = not created and r["policy"]["value"] == stored
            r["policy"] = {"value": stored, "etag": r["policy"]["etag"] if same else self._etag()}
            self._save()
            return Response.json(201 if created else 200, {"id": pid, "type": _TYPES["policies"], "name": "policy",
                                                           "properties": {"value": stored}},
                                 {"ETag": r["policy"]["etag"]})
        raise ArmError(405, "MethodNotAllowed", f"{m} is not allowed on a policy.")

    # -- named values ------------------------------------------------------------------------------------------------

    def _nv_body(self, nv_id: str, *, state: str = "Succeeded") -> dict[str, Any]:
        nv = self._state["named_values"][nv_id]
        props: dict[str, Any] = {"displayName": nv["displayName"], "tags": nv.get("tags") or [],
                                 "secret": nv.get("secret", False), "provisioningState": state}
        if not nv.get("secret") and not nv.get("keyVault"):
            props["value"] = nv.get("value")
        if nv.get("keyVault"):
            props["keyVault"] = {**nv["keyVault"], "lastStatus": {"code": "Success", "timeStampUtc": _now()}}
        return {"id": self.arm_id("namedValues", nv_id), "type": _TYPES["namedValues"], "name": nv_id,
                "properties": props}

    def _named_value(self, request: Request, nv_id: str, lro_fail: bool) -> Response:
        m = request.method
        nvs = self._state["named_values"]
        if m == "GET":
            if request.query.get("asyncId"):
                return self._poll(request.query["asyncId"])
            if nv_id not in nvs:
                raise _not_found("Named value")
            return Response.json(200, self._nv_body(nv_id), {"ETag": nvs[nv_id]["etag"]})
        if m == "DELETE":
            if nv_id not in nvs:
                return Response(204)
            self._check_if_match(request, nvs[nv_id]["etag"], required=True)
            name = nvs[nv_id]["displayName"]
            for entry in self._state["apis"].values():
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

            pending = {"id": self.arm_id("namedValues", nv_id), "type": _TYPES["namedValues"], "name": nv_id,
                       "properties": {"displayName": display, "secret": record["secret"], "tags": record["tags"],
                                      "provisioningState": "InProgress"}}
            return self._start_lro(f"namedValues/{quote(nv_id, safe='')}", 201 if created else 200, finish, lro_fail,
                                   None, body=pending, status=201 if created else 200, etag=etag)
        raise ArmError(405, "MethodNotAllowed", f"{m} is not allowed on a named value.")

    # -- tags and products ------------------------------------------------------------

    def _tag_body(self, tag_id: str) -> dict[str, Any]:
        return {"id": self.arm_id("tags", tag_id), "type": _TYPES["tags"], "name": tag_id,
                "properties": {"displayName": self._state["tags"][tag_id]["displayName"]}}

    def _tag(self, request: Request, tag_id: str) -> Response:
        tags = self._state["tags"]
        if request.method == "GET":
            if tag_id not in tags:
                raise _not_found("Tag")
            return Response.json(200, self._tag_body(tag_id), {"ETag": tags[tag_id]["etag"]})
        if request.method == "PUT":
            props = (request.json() or {}).get("properties") or {}
            display = props.get("displayName")
            if not API_ID.match(tag_id) or len(tag_id) > 80:
                raise ArmError(400, "ValidationError", f"Tag identifier '{tag_id}' is invalid (1-80 characters, "
                                                       "none of *#&+:<>?).")
            if not isinstance(display, str) or not 1 <= len(display) <= 160:
                raise ArmError(400, "ValidationError", "Property 'displayName' is required (1-160 characters).")
            created = tag_id not in tags
            tags[tag_id] = {"displayName": display, "etag": self._etag()}
            self._save()
            return Response.json(201 if created else 200, self._tag_body(tag_id), {"ETag": tags[tag_id]["etag"]})
        if request.method == "DELETE":
            tags.pop(tag_id, None)
            for links in self._state["api_tags"].values():
                if tag_id in links:
                    links.remove(tag_id)
            self._save()
            return Response(200)
        raise ArmError(405, "MethodNotAllowed", "Method not allowed on a tag.")

    def _api_tags(self, request: Request, api_id: str, tag_id: str | None) -> Response:
        base = self._base(api_id)
        links = self._state["api_tags"].setdefault(base, [])
        if tag_id is None:
            if request.method != "GET":
                raise ArmError(405, "MethodNotAllowed", "Method not allowed.")
            return self._list(request, ["apis", api_id, "tags"], [self._tag_body(t) for t in links])
        if tag_id not in self._state["tags"]:
            raise _not_found("Tag")
        if request.method == "PUT":
            created = tag_id not in links
            if created:
                links.append(tag_id)
                self._save()
            return Response.json(201 if created else 200, self._tag_body(tag_id))
        if request.method == "GET":
            if tag_id not in links:
                raise _not_found("Tag link")
            return Response.json(200, self._tag_body(tag_id))
        if request.method == "DELETE":
            if tag_id in links:
                links.remove(tag_id)
                self._save()
            return Response(200)
        raise ArmError(405, "MethodNotAllowed", "Method not allowed.")

    def _apis_by_tags(self) -> list[dict[str, Any]]:
        out = []
        for base, tags in sorted(self._state["api_tags"].items()):
            if base not in self._state["apis"]:
                continue
            props = self._api_body(base)["properties"]
            for tag in tags:
                # ApiManagementListApisByTags.json: ids in the short form, *display names* in "name"
                out.append({"tag": {"id": f"/tags/{tag}", "name": self._state["tags"][tag]["displayName"]},
                            "api": {"id": f"/apis/{base}", "name": props["displayName"],
                                    **{k: props.get(k) for k in ("apiRevision", "serviceUrl", "path", "isCurrent")}}})
        return out

    def _product_body(self, pid: str) -> dict[str, Any]:
        return {"id": self.arm_id("products", pid), "type": _TYPES["products"], "name": pid,
                "properties": self._state["products"][pid]}

    def _product(self, request: Request, pid: str) -> Response:
        products = self._state["products"]
        if request.method == "GET":
            if pid not in products:
                raise _not_found("Product")
            return Response.json(200, self._product_body(pid))
        if request.method == "PUT":
            props = (request.json() or {}).get("properties") or {}
            created = pid not in products
            products[pid] = {"displayName": props.get("displayName") or pid, "state": props.get("state", "published"),
                             "subscriptionRequired": props.get("subscriptionRequired", True),
                             "description": props.get("description", "")}
            self._state["product_apis"].setdefault(pid, [])
            self._save()
            return Response.json(201 if created else 200, self._product_body(pid))
        raise ArmError(405, "MethodNotAllowed", "Method not allowed on a product.")

    def _product_apis(self, request: Request, pid: str, api_id: str | None) -> Response:
        if pid not in self._state["products"]:
            raise _not_found("Product")
        links = self._state["product_apis"].setdefault(pid, [])
        if api_id is None:
            return self._list(request, ["products", pid, "apis"],
                              [self._api_body(a) for a in links if a in self._state["apis"]])
        base = self._base(api_id)
        if request.method == "PUT":
            created = base not in links
            if created:
                links.append(base)
                self._save()
            return Response.json(201 if created else 200, self._api_body(base))
        if request.method == "DELETE":
            if base in links:
                links.remove(base)
                self._save()
            return Response(200)
        raise ArmError(405, "MethodNotAllowed", "Method not allowed.")


_API_PROPS = ("displayName", "description", "serviceUrl", "path", "protocols", "subscriptionRequired",
              "apiRevisionDescription", "apiVersion", "apiVersionSetId", "subscriptionKeyParameterNames",
              "authenticationSettings", "contact", "license", "termsOfServiceUrl", "sourceApiId")


class _Throttled(ArmError):
    def __init__(self, emulated_wait: float, real_wait: float, header: str) -> None:
        super().__init__(429, "SubscriptionRequestsThrottled",
                         "Number of requests for subscription exceeded the limit. Please try again later.")
        self.headers = {"Retry-After": str(max(1, math.ceil(emulated_wait))),
                        "retry-after-ms": str(max(1, math.ceil(real_wait * 1000))), header: "0"}

    def response(self) -> Response:
        response = super().response()
        response.headers.update(self.headers)
        return response


def _reserialize(xml: str) -> str:
    """APIM stores policies re-indented with tabs and CRLF line ends (research/apim.md §2.3)."""
    lines = [line.rstrip() for line in xml.replace("\r\n", "\n").strip().split("\n")]
    out = []
    for line in lines:
        stripped = line.lstrip(" \t")
        depth = (len(line) - len(stripped)) // 2
        out.append("\t" * depth + stripped)
    return "\r\n".join(out)


def _filter(items: list[dict[str, Any]], expression: str | None) -> list[dict[str, Any]]:
    """A small OData $filter: field eq/ne 'v', startswith/endswith/contains(field,'v'), substringof('v',field),
    isCurrent eq true|false, joined with ``and``."""
    if not expression:
        return items
    tests: list[Any] = []
    for clause in re.split(r"\s+and\s+", expression.strip()):
        m = re.fullmatch(r"(\w+)\s+(eq|ne)\s+'([^']*)'", clause) or re.fullmatch(r"(\w+)\s+(eq|ne)\s+(true|false)",
                                                                              clause)
        if m:
            name, op, value = m.groups()
            typed: Any = {"true": True, "false": False}.get(value, value) if value in ("true", "false") else value
            tests.append(lambda it, n=name, o=op, v=typed: (_field(it, n) == v) == (o == "eq"))
            continue
        m = re.fullmatch(r"(startswith|endswith|contains)\((\w+),\s*'([^']*)'\)", clause)
        if m:
            fn, name, value = m.groups()
            tests.append(lambda it, f=fn, n=name, v=value: getattr(str(_field(it, n) or ""),
                                                                   {"contains": "__contains__"}.get(str(f), str(f)))(v))
            continue
        m = re.fullmatch(r"substringof\('([^']*)',\s*(\w+)\)", clause)
        if m:
            value, name = m.groups()
            tests.append(lambda it, n=name, v=value: v in str(_field(it, n) or ""))
            continue
        raise ArmError(400, "ValidationError", f"Invalid $filter expression: {clause}")
    return [it for it in items if all(t(it) for t in tests)]


def _field(item: dict[str, Any], name: str) -> Any:
    # apisByTags items carry the API's fields under "api" (TagResourceContract), the others under "properties"
    return item.get("name") if name == "name" else (item.get("properties") or item.get("api") or {}).get(name)
