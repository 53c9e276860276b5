"""The Databricks edge: list serving endpoints, select the ones to publish, fetch each one's OpenAPI spec."""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from apimsync.__about__ import __version__
from apimsync.config import Selection, Workspace
from apimsync.errors import SourceError, SpecError

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

log = logging.getLogger(__name__)
# "alphanumeric characters, dashes, and underscores" (the serving UI's rule for endpoint names)
ENDPOINT_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Endpoint:
    """A serving endpoint as the list call reports it, plus what the detail call adds."""

    workspace: str
    name: str
    host: str  # the workspace URL, e.g. https://adb-123.4.azuredatabricks.net
    ready: bool
    tags: Mapping[str, str] = field(default_factory=dict)
    task: str | None = None
    endpoint_type: str | None = None
    served_entities: tuple[str, ...] = ()
    config_version: str | None = None
    route_optimized: bool = False
    endpoint_url: str | None = None

    @property
    def backend_url(self) -> str:
        """The URL APIM forwards to: the endpoint's base, on its dedicated host when route-optimized."""
        if self.route_optimized and self.endpoint_url:
            url = self.endpoint_url.rstrip("/")
            return url[: -len("/invocations")] if url.endswith("/invocations") else url
        return f"{self.host.rstrip('/')}/serving-endpoints/{self.name}"

    @classmethod
    def from_api(cls, workspace: str, host: str, item: Mapping[str, Any]) -> Endpoint:
        state = item.get("state") or {}
        config = item.get("config") or {}
        entities = config.get("served_entities") or config.get("served_models") or []
        return cls(
            workspace=workspace, name=item["name"], host=host,
            ready=state.get("ready") == "READY",
            tags={t["key"]: str(t.get("value", "")) for t in item.get("tags") or [] if "key" in t},
            task=item.get("task"), endpoint_type=item.get("endpoint_type"),
            served_entities=tuple(e.get("name", "") for e in entities if e.get("name")),
            config_version=str(config["config_version"]) if config.get("config_version") is not None else None,
            route_optimized=bool(item.get("route_optimized")), endpoint_url=item.get("endpoint_url"),
        )


@dataclass(frozen=True)
class Fetched:
    """The outcome of fetching one endpoint: its spec, or why there is none."""

    endpoint: Endpoint
    spec: dict[str, Any] | None = None
    skip_reason: str | None = None  # held back on purpose (no schema available)
    error: str | None = None  # failed (network, auth, unreadable spec)


def select(endpoints: list[Endpoint], selection: Selection) -> tuple[list[Endpoint], list[tuple[Endpoint, str]]]:
    """Split endpoints into those to publish and those selected but held back (with the reason)."""
    chosen: list[Endpoint] = []
    held: list[tuple[Endpoint, str]] = []
    for ep in endpoints:
        if not any(fnmatch.fnmatchcase(ep.name, g) for g in selection.include):
            continue
        if any(fnmatch.fnmatchcase(ep.name, g) for g in selection.exclude):
            continue
        if any(ep.tags.get(k) is None or (v != "*" and ep.tags.get(k) != v) for k, v in selection.tags.items()):
            continue
        if selection.ready_only and not ep.ready:
            held.append((ep, "endpoint is not READY"))
            continue
        chosen.append(ep)
    return chosen, held


class DatabricksSource:
    """One Databricks workspace, reached through databricks-sdk (unified auth)."""

    def __init__(self, workspace: Workspace, *, client: WorkspaceClient | None = None) -> None:
        self.workspace = workspace
        if client is not None:
            self.__dict__["client"] = client

    @cached_property
    def client(self) -> WorkspaceClient:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        ws = self.workspace
        try:
            return WorkspaceClient(config=Config(host=ws.host, profile=ws.profile, product="apimsync",
                                                 product_version=__version__,
                                                 retry_timeout_seconds=ws.retry_timeout_seconds))
        except Exception as exc:  # the SDK raises ValueError and friends for config problems
            raise SourceError(f"workspace {self.workspace.name}: {_one_line(exc)}") from exc

    @property
    def host(self) -> str:
        return str(self.client.config.host)

    def list_endpoints(self) -> list[Endpoint]:
        """All serving endpoints; the raw list keeps fields the SDK's dataclasses drop (endpoint_type)."""
        try:
            payload = self.client.api_client.do("GET", "/api/2.0/serving-endpoints")
        except Exception as exc:
            raise SourceError(f"workspace {self.workspace.name}: listing serving endpoints: {_one_line(exc)}") from exc
        items = payload.get("endpoints", []) if isinstance(payload, dict) else []
        return [Endpoint.from_api(self.workspace.name, self.host, item) for item in items]

    def fetch(self, endpoint: Endpoint) -> Fetched:
        """Details (route optimisation) and the OpenAPI spec of one endpoint."""
        from databricks.sdk.errors import DatabricksError

        from apimsync.spec import load_spec

        if not ENDPOINT_NAME.fullmatch(endpoint.name):
            # checked before the name becomes part of a URL: "../x" or "a?b" must never address something else
            return Fetched(endpoint, error="the name is outside Databricks' endpoint name characters (letters, digits, "
                                           "'-', '_'); refused before it reaches a URL")
        try:
            detail = self.client.api_client.do("GET", f"/api/2.0/serving-endpoints/{endpoint.name}")
            if isinstance(detail, dict):
                endpoint = Endpoint.from_api(endpoint.workspace, endpoint.host, {**detail, "tags": detail.get(
                    "tags") or [{"key": k, "value": v} for k, v in endpoint.tags.items()]})
            raw = self.client.serving_endpoints.get_open_api(endpoint.name).contents
            body = raw.read() if raw is not None else b""
        except DatabricksError as exc:
            status = _status_of(exc)
            if status is not None and 400 <= status < 500 and status not in (401, 403, 429):
                return Fetched(endpoint, skip_reason=f"no schema available ({_one_line(exc)})")
            return Fetched(endpoint, error=f"fetching the spec: {_one_line(exc)}")
        except Exception as exc:  # timeouts, connection errors: the SDK already retried
            return Fetched(endpoint, error=f"fetching the spec: {_one_line(exc)}")
        try:
            spec = load_spec(body, origin=f"spec of endpoint {endpoint.name}")
        except SpecError as exc:
            return Fetched(endpoint, error=str(exc))
        return Fetched(endpoint, spec=spec)


def _status_of(exc: Exception) -> int | None:
    from databricks.sdk import errors

    table = {errors.BadRequest: 400, errors.Unauthenticated: 401, errors.PermissionDenied: 403,
             errors.NotFound: 404, errors.ResourceConflict: 409, errors.TooManyRequests: 429}
    for klass, status in table.items():
        if isinstance(exc, klass):
            return status
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
