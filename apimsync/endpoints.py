"""Serving endpoints as the list (or detail) call reports them: parsed field by field, each field's type checked
(a workspace's answer is data, not trusted), and the selection of those to publish."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from apimsync.errors import SourceError
from apimsync.kinds import Kind, kind_of
from apimsync.settings import Selection

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
    id: str | None = None  # what an OAuth token's authorization_details names
    served_models: tuple[str, ...] = ()  # each served entity described: name (model vN | external or foundation model)
    authorization_details: str | None = None  # data_plane_info.query_info.authorization_details (details only)

    @cached_property
    def kind(self) -> Kind:
        """What kind of endpoint this is (custom model, agent, route-optimized…): apimsync.kinds."""
        return kind_of(self)

    @property
    def backend_url(self) -> str:
        """The URL APIM forwards to: the endpoint's base, on its dedicated host when route-optimized."""
        if self.route_optimized and self.endpoint_url:
            url = self.endpoint_url.rstrip("/")
            return url[: -len("/invocations")] if url.endswith("/invocations") else url
        return f"{self.host.rstrip('/')}/serving-endpoints/{self.name}"

    @classmethod
    def from_api(cls, workspace: str, host: str, item: Any) -> Endpoint:
        """Parse one item of the list (or detail) response; a field of the wrong type raises SourceError naming it.

        The workspace's answer is data, not trusted: every field is type-checked here, so no endpoint can make the
        plan raise, and a bad one fails alone."""
        if not isinstance(item, Mapping):
            raise SourceError(f"expected an object, got {describe_kind(item)}")
        name = _field(item, "name", str, required=True)
        state = _field(item, "state", Mapping) or {}
        config = _field(item, "config", Mapping) or {}
        entities = _field(config, "served_entities", list, "config.") or _field(config, "served_models", list,
                                                                                "config.") or []
        names, described = [], []
        for i, entity in enumerate(entities):
            if not isinstance(entity, Mapping):
                raise SourceError(f"config.served_entities[{i}]: expected an object, got {describe_kind(entity)}")
            entity_name = _field(entity, "name", str, f"config.served_entities[{i}].")
            if entity_name:
                names.append(entity_name)
                described.append(_describe_entity(entity_name, entity))
        tags: dict[str, str] = {}
        for i, tag in enumerate(_field(item, "tags", list) or []):
            if not isinstance(tag, Mapping) or not isinstance(tag.get("key"), str):
                raise SourceError(f"tags[{i}]: expected an object with a string key, got {describe_kind(tag)}")
            value = tag.get("value") or ""  # a tag may have no value
            if not isinstance(value, str):
                raise SourceError(f"tags[{i}].value: expected a string, got {describe_kind(value)}")
            tags[tag["key"]] = value
        version = config.get("config_version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, (int, str))):
            raise SourceError(f"config.config_version: expected a number, got {describe_kind(version)}")
        route_optimized = _field(item, "route_optimized", bool)
        plane = _field(item, "data_plane_info", Mapping) or {}
        query_info = _field(plane, "query_info", Mapping, "data_plane_info.") or {}
        return cls(
            workspace=workspace, name=name, host=host,
            ready=_field(state, "ready", str, "state.") == "READY",
            tags=tags, task=_field(item, "task", str), endpoint_type=_field(item, "endpoint_type", str),
            served_entities=tuple(names), config_version=None if version is None else str(version),
            route_optimized=bool(route_optimized), endpoint_url=_field(item, "endpoint_url", str),
            id=_field(item, "id", str), served_models=tuple(described),
            authorization_details=_field(query_info, "authorization_details", str, "data_plane_info.query_info."),
        )

    @property
    def oauth_id(self) -> str | None:
        """The id an OAuth token for this endpoint names (``/serving-endpoints/<id>``): from the
        ``authorization_details`` Databricks gives ready-made, else the endpoint's id, else the first label of its
        dedicated host ("the alpha-numeric ID ... in the hostName of the endpoint URL", Databricks' "Query
        route-optimized serving endpoints"). Only an id of endpoint-name characters is returned."""
        candidates: list[str | None] = []
        try:
            details = json.loads(self.authorization_details or "[]")
            candidates += [str(d.get("object_path", "")).rsplit("/", 1)[-1] for d in details
                           if isinstance(d, Mapping) and d.get("object_type") == "serving-endpoints"]
        except (ValueError, TypeError, AttributeError):
            pass
        candidates.append(self.id)
        if self.endpoint_url:
            candidates.append((urlsplit(self.endpoint_url).hostname or "").split(".", 1)[0])
        return next((c for c in candidates if c and ENDPOINT_NAME.fullmatch(c)), None)


def _describe_entity(name: str, entity: Mapping[str, Any]) -> str:
    """``name (main.ml.model v3)``, ``name (external openai/gpt-4o)`` or ``name (Meta Llama 3.3 70B)``."""
    model, version = entity.get("entity_name"), entity.get("entity_version")
    external, foundation = entity.get("external_model"), entity.get("foundation_model")
    if isinstance(model, str) and model:
        detail = model + (f" v{version}" if isinstance(version, (str, int)) and not isinstance(version, bool) else "")
    elif isinstance(external, Mapping) and isinstance(external.get("name"), str):
        detail = f"external {external.get('provider') or 'model'}/{external['name']}"
    elif isinstance(foundation, Mapping) and isinstance(foundation.get("display_name"), str):
        detail = foundation["display_name"]
    else:
        return name
    return f"{name} ({detail[:200]})"


def _field(item: Mapping[str, Any], key: str, kind: type, prefix: str = "", *, required: bool = False) -> Any:
    value = item.get(key)
    if value is None:
        if required:
            raise SourceError(f"{prefix}{key}: missing")
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise SourceError(f"{prefix}{key}: expected {_KINDS.get(kind, kind.__name__)}, got {describe_kind(value)}")
    return value


_KINDS = {str: "a string", bool: "true or false", list: "a list", Mapping: "an object"}


def describe_kind(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value) if isinstance(value, (str, int, float, bool)) or value is None else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Invalid:
    """A list item apimsync could not read (a field of the wrong type): it fails alone, with the reason."""

    workspace: str
    label: str  # the name when it is a string, else "#<index>"
    reason: str


@dataclass(frozen=True)
class Fetched:
    """The outcome of fetching one endpoint: its spec, or why there is none."""

    endpoint: Endpoint
    spec: dict[str, Any] | None = None
    skip_reason: str | None = None  # held back on purpose (no schema available)
    error: str | None = None  # failed (network, auth, unreadable spec)
    synthesized: bool = False  # Databricks serves no schema: the spec was built from the endpoint's task
    reused: bool = False  # the published spec still holds (its source is unchanged): not fetched


def select(endpoints: list[Endpoint], selection: Selection) -> tuple[list[Endpoint], list[tuple[Endpoint, str]]]:
    """Split endpoints into those to publish and those selected but held back (with the reason)."""
    chosen: list[Endpoint] = []
    held: list[tuple[Endpoint, str]] = []
    for ep in endpoints:
        if not name_selected(ep.name, selection):
            continue
        if not ep.kind.selected_by_default and not selection.foundation_models \
                and ep.name not in selection.include:
            continue
        if any(ep.tags.get(k) is None or (v != "*" and ep.tags.get(k) != v) for k, v in selection.tags.items()):
            continue
        if selection.ready_only and not ep.ready:
            held.append((ep, "endpoint is not READY"))
            continue
        chosen.append(ep)
    return chosen, held


def name_selected(name: str, selection: Selection) -> bool:
    """Whether the include/exclude globs pick this name (tags and readiness aside)."""
    return any(fnmatch.fnmatchcase(name, g) for g in selection.include) and not any(
        fnmatch.fnmatchcase(name, g) for g in selection.exclude)
