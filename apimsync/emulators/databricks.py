"""A Databricks workspace emulator: the serving-endpoints REST API (list, get, OpenAPI schema) over HTTP.

Seeded from a fixture folder (``endpoints.json`` in the real list shape, ``openapi/<name>.json`` per endpoint;
no file = no schema) and/or N synthetic endpoints. Errors use Databricks' envelope ``{"error_code", "message"}``.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from apimsync.emulators._server import EmulatorServer, Faults, Request, Response
from apimsync.emulators.synthetic import FAKE_WORKSPACE_HOST, synthetic_endpoints

DEFAULT_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "default"
_ENDPOINT = re.compile(r"^/api/2\.0/serving-endpoints/([^/]+)(/openapi)?$")
_ERRORS = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST",
           429: "REQUEST_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR", 503: "TEMPORARILY_UNAVAILABLE"}


def _error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> Response:
    return Response.json(status, {"error_code": code or _ERRORS.get(status, "UNKNOWN"), "message": message}, headers)


class DatabricksEmulator:
    """The serving-endpoints API of one workspace, on 127.0.0.1.

    "No schema" answers 404 RESOURCE_DOES_NOT_EXIST and "not READY" 400 INVALID_STATE: the real codes are
    undocumented (research/databricks.md §1.1); clients should treat any 4xx from /openapi as "no schema".
    """

    def __init__(self, fixtures: str | Path | None = DEFAULT_FIXTURES, *, endpoints: int | None = None,
                 token: str = "dapi-emulator-token", port: int = 0, seed: int = 0) -> None:
        self.token = token
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
        self.url = self._server.url

    def _load(self, folder: Path) -> None:
        listing = json.loads((folder / "endpoints.json").read_text(encoding="utf-8"))
        for item in listing.get("endpoints", []):
            spec_file = folder / "openapi" / f"{item['name']}.json"
            self.put_endpoint(item, spec_file.read_text(encoding="utf-8") if spec_file.exists() else None)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> DatabricksEmulator:
        self._server.start()
        return self

    def stop(self) -> None:
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
            return json.loads(json.dumps(self._stats))

    # -- the app ---------------------------------------------------------------------------------------

    def _app(self, request: Request) -> Response:
        path = unquote(request.path)
        if path == "/.well-known/databricks-config":
            return Response.text(404, "Not Found")
        with self._lock:
            self._stats["requests"] += 1
        response = self._answer(request, path)
        if response.status >= 400:
            with self._lock:
                self._stats["errors"] += 1
        return response

    def _answer(self, request: Request, path: str) -> Response:
        token = request.bearer_token
        if token is None:
            return _error(401, "Unable to authenticate: no credentials were provided")
        if token != self.token:
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
        """The list shape: served entities summarised, no route-optimisation details."""
        out = {k: v for k, v in item.items() if k not in ("route_optimized", "endpoint_url", "data_plane_info")}
        config = item.get("config") or {}
        if config:
            out["config"] = {"served_entities": [
                {k: v for k, v in e.items() if k in ("name", "entity_name", "entity_version", "external_model",
                                                     "foundation_model", "type")}
                for e in config.get("served_entities", [])]}
        return out

    def _detail(self, item: dict[str, Any]) -> dict[str, Any]:
        """The GET shape: full config, traffic routes, and the dedicated URL of route-optimized endpoints."""
        out = json.loads(json.dumps(item))
        config = out.setdefault("config", {})
        entities = config.get("served_entities", [])
        for e in entities:
            e.setdefault("state", {"deployment": "DEPLOYMENT_READY"})
        if entities:
            share = 100 // len(entities)
            config["traffic_config"] = {"routes": [
                {"served_entity_name": e["name"], "traffic_percentage": share + (100 - share * len(entities)
                                                                                  if i == 0 else 0)}
                for i, e in enumerate(entities)]}
        if item.get("route_optimized"):
            out["route_optimized"] = True
            out.setdefault("endpoint_url", f"https://{item.get('id', 'ep')}.12.serving.azuredatabricks.net/"
                                           f"1234567890123456/serving-endpoints/{item['name']}/invocations")
        out.setdefault("permission_level", "CAN_MANAGE")
        return out


__all__ = ["DEFAULT_FIXTURES", "FAKE_WORKSPACE_HOST", "DatabricksEmulator"]
