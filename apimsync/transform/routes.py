"""Which of a workspace's routes may be published: only the invocation routes apimsync knows.

A workspace's spec is data, and every operation published is forwarded to the workspace with APIM's credential,
so the spec must not choose what APIM forwards: a path ``/../../api/2.0/serving-endpoints`` (GET) or
``/admin/{rest}`` would reach the workspace's REST API as APIM's identity. Before the pipeline runs, the spec keeps
``POST /invocations`` and ``POST /served-models/<entity>/invocations`` of the entities the endpoint lists, and
loses every operation id it brought (APIM matches operations by id, and apimsync's own gateway conditions name
ids apimsync chose: ``operation-ids`` and ``openai-routes`` set them). The pipeline may then add what the
configuration asks for (the configuration is trusted).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from apimsync.transform.steps import entity_of


def published_routes(spec: dict[str, Any], served_entities: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """(the spec with only the known invocation routes, each without its operation id; what was dropped).

    The input is not changed: the document, ``paths``, the kept path items and operations are new objects; their
    schemas are shared with the input."""
    entities = set(served_entities)
    paths = spec.get("paths")
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for path, item in (paths.items() if isinstance(paths, dict) else ()):
        entity = entity_of(str(path))
        known = path == "/invocations" or (entity is not None and entity in entities)
        methods = [m for m in item if m.lower() in _METHODS] if isinstance(item, dict) else []
        for method in methods:
            if not (known and method == "post" and isinstance(item[method], dict)):
                dropped.append(f"{method.upper()} {str(path)[:120]}")
        if known and isinstance(item, dict) and isinstance(item.get("post"), dict):
            kept[path] = {"post": {k: v for k, v in item["post"].items() if k != "operationId"}}
        elif not methods:
            dropped.append(str(path)[:120])
    return {**spec, "paths": kept}, dropped


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
