"""A Databricks workspace emulator over HTTP: the serving-endpoints REST API (list, get, OpenAPI schema), the
data plane that answers queries (``dataplane``), the OAuth token endpoint and its discovery document (OAuth M2M
clients, databricks-sdk's ``oauth-m2m``, read the control plane with its tokens), and the host-metadata probe.

Seeded from a fixture folder (``endpoints.json`` in the real list shape, ``openapi/<name>.json`` per endpoint;
no file = no schema) and/or N synthetic endpoints. Errors use Databricks' envelope ``{"error_code", "message"}``.
Route-optimized endpoints are queried on a second listener, their "dedicated host".
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from apimsync.emulators._server import EmulatorServer, Faults, Request, Response
from apimsync.emulators.dataplane import DataPlane, dedicated_path
from apimsync.emulators.identities import Identities, error
from apimsync.emulators.latency import Latency, wait
from apimsync.emulators.synthetic import FAKE_WORKSPACE_HOST, synthetic_endpoints
from apimsync.errors import ConfigError
from apimsync.files import MAX_SPEC_BYTES, read_text

DEFAULT_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "default"
_SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_ENDPOINT = re.compile(r"^/api/2\.0/serving-endpoints/([^/]+)(/openapi)?$")
_INVOCATIONS = re.compile(r"^/serving-endpoints/([^/]+)(?:/served-models/([^/]+))?/invocations$")
_ERRORS = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST",
           409: "RESOURCE_CONFLICT", 429: "REQUEST_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR",
           503: "TEMPORARILY_UNAVAILABLE"}


def _error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> Response:
    response = error(status, code or _ERRORS.get(status, "UNKNOWN"), message)
    response.headers.update(headers or {})
    return response


class DatabricksEmulator:
    """The serving-endpoints API of one workspace, on 127.0.0.1.

    "No schema" answers 404 RESOURCE_DOES_NOT_EXIST and "not READY" 400 INVALID_STATE: the real codes are
    undocumented (Databricks' REST API reference names none); clients should treat any 4xx from /openapi as "no schema".
    """

    def __init__(self, fixtures: str | Path | None = DEFAULT_FIXTURES, *, endpoints: int | None = None,
                 token: str = "dapi-emulator-token", port: int = 0, dedicated_port: int = 0, seed: int = 0,
                 workspace_id: str = "1234567890123456", latency: Latency | None = None,
                 time_scale: float = 1.0) -> None:
        self.latency = latency or Latency()
        self.time_scale = time_scale
        self.identities = Identities(pats={token})
        self._token = token
        self.workspace_id = workspace_id
        self.data_plane = DataPlane(self)
        self.faults = Faults(seed)
        self._lock = threading.Lock()
        self._endpoints: dict[str, dict[str, Any]] = {}
        self._specs: dict[str, str] = {}
        self._stats: dict[str, Any] = {"requests": 0, "errors": 0, "by_route": {"list": 0, "get": 0, "openapi": 0}}
        if fixtures is not None:
            self._load(Path(fixtures))
        if endpoints:
            items, specs = synthetic_endpoints(endpoints, seed=seed)
            for item in items:
                self.put_endpoint(item, specs.get(item["name"]))
        self._server = EmulatorServer(self._app, port=port)
        self._dedicated = EmulatorServer(self._dedicated_app, port=dedicated_port)
        self.url = self._server.url
        self.dedicated_url = self._dedicated.url  # the data-plane host of route-optimized endpoints

    def _load(self, folder: Path) -> None:
        """Read a fixture folder; a problem is one ConfigError line naming the file (``emulate`` exits 2)."""
        listing_file = folder / "endpoints.json"
        try:
            listing = json.loads(read_text(listing_file, ConfigError))
        except ValueError as exc:
            raise ConfigError(f"{listing_file}: not JSON ({exc})") from None
        items = listing.get("endpoints") if isinstance(listing, dict) else None
        if not isinstance(items, list):
            raise ConfigError(f"{listing_file}: expected {{\"endpoints\": [...]}}")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "name" not in item:
                raise ConfigError(f"{listing_file}: endpoints[{i}]: expected an object with a name")
            # hostile fixtures are served as they are (that is what they test), but a name never picks a file
            # outside openapi/
            name = item["name"]
            spec_file = folder / "openapi" / f"{name}.json"
            usable = isinstance(name, str) and _SAFE_FILE_NAME.fullmatch(name) is not None and spec_file.exists()
            self.put_endpoint(item, read_text(spec_file, ConfigError, limit=MAX_SPEC_BYTES) if usable else None)

    @property
    def token(self) -> str:
        """The PAT clients of this workspace use (setting it replaces the old one)."""
        return self._token

    @token.setter
    def token(self, value: str) -> None:
        self.identities.pats.discard(self._token)
        self.identities.pats.add(value)
        self._token = value

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> DatabricksEmulator:
        self._server.start()
        self._dedicated.start()
        return self

    def stop(self) -> None:
        try:
            self._dedicated.stop()
        finally:
            self._server.stop()

    def __enter__(self) -> DatabricksEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test hooks ----------------------------------------------------------------------------------

    def endpoint_names(self) -> list[str]:
        with self._lock:
            return list(self._endpoints)

    def put_endpoint(self, endpoint: dict[str, Any], spec: dict[str, Any] | str | None = None) -> None:
        with self._lock:
            self._endpoints[endpoint["name"]] = json.loads(json.dumps(endpoint))
        self.set_spec(endpoint["name"], spec)

    def remove_endpoint(self, name: str) -> None:
        with self._lock:
            self._endpoints.pop(name, None)
            self._specs.pop(name, None)

    def set_spec(self, name: str, spec: dict[str, Any] | str | None) -> None:
        with self._lock:
            if spec is None:
                self._specs.pop(name, None)
            else:
                self._specs[name] = spec if isinstance(spec, str) else json.dumps(spec, indent=2)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            out = json.loads(json.dumps(self._stats))
        out["invocations"] = dict(self.data_plane.calls)
        return out

    def endpoint_and_spec(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        with self._lock:
            return self._endpoints.get(name), self._specs.get(name)

    def endpoint_url(self, item: dict[str, Any]) -> str:
        """The query URL of a route-optimized endpoint, on the dedicated listener."""
        given = item.get("endpoint_url")  # a fixture may set it (a hostile workspace does)
        if given:
            return str(given)
        return f"{self.dedicated_url}/{self.workspace_id}/serving-endpoints/{item['name']}/invocations"

    @staticmethod
    def traffic(item: dict[str, Any]) -> list[tuple[str, int]]:
        """(served entity, percentage) routes: the endpoint's traffic_config, else an even split."""
        config = item.get("config") or {}
        routes = (config.get("traffic_config") or {}).get("routes")
        if routes:
            return [(str(r["served_entity_name"]), int(r["traffic_percentage"])) for r in routes]
        names = [str(e["name"]) for e in config.get("served_entities", [])]
        if not names:
            return []
        share = 100 // len(names)
        return [(n, share + (100 - share * len(names) if i == 0 else 0)) for i, n in enumerate(names)]

    # -- the app ---------------------------------------------------------------------------------------

    def _app(self, request: Request) -> Response:
        path = unquote(request.path)
        if path == "/.well-known/databricks-config":
            # the fields databricks-sdk reads (oauth.HostMetadata); an Azure workspace's OIDC root is <host>/oidc
            return Response.json(200, {"oidc_endpoint": f"{self.url}/oidc", "workspace_id": self.workspace_id,
                                       "cloud": "azure"})
        if path == "/oidc/.well-known/oauth-authorization-server":
            # the fields OAuth clients read (databricks-sdk-py oauth.OidcEndpoints, databricks-sdk-go
            # u2m.OAuthAuthorizationServer); a workspace's endpoints are <host>/oidc/v1/{authorize,token}
            # (databricks-sdk-java DatabricksConfig, Databricks docs "Authorize service principal access ... OAuth")
            return Response.json(200, {"issuer": f"{self.url}/oidc", "authorization_endpoint":
                                        f"{self.url}/oidc/v1/authorize", "token_endpoint": f"{self.url}/oidc/v1/token"})
        if path == "/oidc/v1/token" and request.method == "POST":
            return self.data_plane.token(request)
        with self._lock:
            self._stats["requests"] += 1
        invocation = _INVOCATIONS.match(path)
        if invocation:
            return self.data_plane.invoke(request, invocation.group(1), invocation.group(2), dedicated_host=False)
        response = self._answer(request, path)
        if response.status >= 400:
            with self._lock:
                self._stats["errors"] += 1
        return response

    def _dedicated_app(self, request: Request) -> Response:
        found = dedicated_path(request.path)
        if found is None or found[0] != self.workspace_id:
            return _error(404, f"No API found for '{request.method} {unquote(request.path)}'", "ENDPOINT_NOT_FOUND")
        return self.data_plane.invoke(request, found[1], None, dedicated_host=True)

    def _answer(self, request: Request, path: str) -> Response:
        token = request.bearer_token
        if token is None:
            return _error(401, "Unable to authenticate: no credentials were provided")
        if self.identities.refuse(token, "*") is not None:
            return _error(403, "Invalid access token")
        rule = self.faults.apply(request, path)
        if rule is not None and rule.status:
            headers = {"Retry-After": str(int(rule.retry_after))} if rule.retry_after is not None else {}
            if rule.body is not None:
                return Response.text(rule.status, rule.body, headers)
            return _error(rule.status, "injected fault", headers=headers)
        if request.method != "GET":
            return _error(405, f"{request.method} is not supported here", "ENDPOINT_NOT_FOUND")
        if path == "/api/2.0/serving-endpoints":
            wait(self.latency.databricks_list, self.time_scale)
            self._count("list")
            with self._lock:
                return Response.json(200, {"endpoints": [self._list_item(e) for e in self._endpoints.values()]})
        match = _ENDPOINT.match(path)
        if not match:
            return _error(404, f"No API found for '{request.method} {path}'", "ENDPOINT_NOT_FOUND")
        name, openapi = match.group(1), bool(match.group(2))
        with self._lock:
            item = self._endpoints.get(name)
            spec = self._specs.get(name)
        if item is None:
            return _error(404, f"Endpoint with name '{name}' does not exist.")
        wait(self.latency.databricks_openapi if openapi else self.latency.databricks_get, self.time_scale)
        if not openapi:
            self._count("get")
            return Response.json(200, self._detail(item))
        self._count("openapi")
        if (item.get("state") or {}).get("ready") != "READY":
            return _error(400, f"Endpoint '{name}' is not in a READY state.", "INVALID_STATE")
        if spec is None:
            return _error(404, f"The served model of endpoint '{name}' has no model signature logged.")
        return Response.text(200, spec)

    def _count(self, route: str) -> None:
        with self._lock:
            self._stats["by_route"][route] += 1

    @staticmethod
    def _list_item(item: dict[str, Any]) -> dict[str, Any]:
        """The list shape of a real workspace (tests/data/databricks/real-list-shapes.json): served entities
        summarised, ``route_optimized`` on every endpoint but pay-per-token ones, no ``endpoint_url`` or
        ``data_plane_info`` (only the details name the dedicated URL) and no ``config_version``."""
        out = {k: v for k, v in item.items() if k not in ("endpoint_url", "data_plane_info")}
        if item.get("endpoint_type") != "FOUNDATION_MODEL_API":
            out["route_optimized"] = item.get("route_optimized", False)
        config = item.get("config") or {}
        entities = config.get("served_entities") if isinstance(config, dict) else None
        if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
            return out  # a malformed fixture is served as it is: clients must cope
        if config:
            out["config"] = {"served_entities": [
                {k: v for k, v in e.items() if k in ("name", "entity_name", "entity_version", "external_model",
                                                     "foundation_model", "type")}
                for e in config.get("served_entities", [])]}
            if "served_models" in config:  # deprecated, still listed beside served_entities for custom models
                out["config"]["served_models"] = config["served_models"]
        return out

    def _detail(self, item: dict[str, Any]) -> dict[str, Any]:
        """The GET shape: full config, traffic routes, and the dedicated URL of route-optimized endpoints."""
        try:
            return self._full_detail(item)
        except (AttributeError, TypeError, KeyError, ValueError):
            return item  # a malformed fixture is served as it is: clients must cope

    def _full_detail(self, item: dict[str, Any]) -> dict[str, Any]:
        out = json.loads(json.dumps(item))
        config = out.setdefault("config", {})
        for e in config.get("served_entities", []):
            e.setdefault("state", {"deployment": "DEPLOYMENT_READY"})
        routes = self.traffic(item)
        if routes:
            config["traffic_config"] = {"routes": [{"served_entity_name": n, "traffic_percentage": p}
                                                   for n, p in routes]}
        if item.get("route_optimized"):
            url = self.endpoint_url(item)
            out["endpoint_url"] = url
            # serving.ServingEndpointDetailed.data_plane_info: ModelDataPlaneInfo(query_info=DataPlaneInfo(...))
            out["data_plane_info"] = {"query_info": {"endpoint_url": url, "authorization_details": json.dumps([{
                "type": "workspace_permission", "object_type": "serving-endpoints",
                "object_path": f"/serving-endpoints/{item.get('id', item['name'])}",
                "actions": ["query_inference_endpoint"]}])}}
        out.setdefault("permission_level", "CAN_MANAGE")
        return out


__all__ = ["DEFAULT_FIXTURES", "FAKE_WORKSPACE_HOST", "DatabricksEmulator"]
