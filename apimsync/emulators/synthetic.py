"""Databricks-shaped serving endpoints and OpenAPI 3.1 specs, built the way the real service shapes them (Databricks
REST API reference, ``GET /api/2.0/serving-endpoints/{name}/openapi``): one ``/served-models/<entity>/invocations`` POST
per served entity, input variants under a root ``oneOf``, ``prefixItems`` in ``dataframe_split``, string defaults for
numeric params, schema-level ``examples``, ``format: unknown``, and ``nullable`` inside 3.1 documents.

Used for the shipped fixtures, benchmarks and load tests.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

FAKE_WORKSPACE_HOST = "https://adb-1234567890123456.7.azuredatabricks.net"
_COLUMN_TYPES: list[dict[str, Any]] = [
    {"type": "integer", "format": "int64"},
    {"type": "number", "format": "double"},
    {"type": "string"},
    {"type": "boolean"},
    {"type": "object", "format": "unknown"},
    {"type": "array", "items": {"type": "number", "format": "float"}},
]


def _server(host: str, name: str) -> list[dict[str, str]]:
    return [{"url": f"{host}/serving-endpoints/{name}"}]


def _ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": "Successful operation",
                    "content": {"application/json": {"schema": schema}}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def column_request(columns: list[tuple[str, dict[str, Any]]], params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A column-signature request: dataframe_split (prefixItems) and dataframe_records, each with params."""
    names = [n for n, _ in columns]
    split: dict[str, Any] = {
        "type": "object",
        "properties": {
            "dataframe_split": {
                "type": "object",
                "properties": {
                    "index": {"type": "array", "items": {"type": "integer"}},
                    "columns": {"description": f"required fields: {', '.join(names)}", "type": "array",
                                "items": {"type": "string", "enum": names}},
                    "data": {"type": "array", "items": {"type": "array",
                                                        "prefixItems": [dict(s) for _, s in columns]}},
                },
            }
        },
        "examples": [{"columns": names, "data": [[_sample(s) for _, s in columns]]}],
    }
    records: dict[str, Any] = {
        "type": "object",
        "properties": {
            "dataframe_records": {"type": "array", "items": {
                "required": names, "type": "object", "properties": {n: dict(s) for n, s in columns}}}
        },
    }
    if params:
        for variant in (split, records):
            variant["properties"]["params"] = {"type": "object", "properties": params}
    return {"oneOf": [split, records]}


def tensor_request(shape: list[int], dtype: dict[str, Any]) -> dict[str, Any]:
    """A tensor-signature request: instances (rows) and inputs (columns)."""
    item: dict[str, Any] = dict(dtype)
    for _ in shape[1:]:
        item = {"type": "array", "items": item}
    return {"oneOf": [
        {"type": "object", "properties": {"instances": {"type": "array", "items": item}}},
        {"type": "object", "properties": {"inputs": {"type": "array", "items": item}}},
    ]}


def chat_request() -> dict[str, Any]:
    return {"type": "object", "properties": {
        "messages": {"type": "array", "items": {"type": "object", "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant"]},
            "content": {"type": "string"}}}},
        "max_tokens": {"type": "integer", "nullable": True},
        "temperature": {"type": "number", "nullable": True},
        "top_p": {"type": "number", "nullable": True},
        "n": {"type": "integer", "nullable": True},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}], "nullable": True},
        "stream": {"type": "boolean", "nullable": True},
    }}


def chat_response() -> dict[str, Any]:
    return {"type": "object", "properties": {
        "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "finish_reason": {"type": "string", "nullable": True},
            "message": {"type": "object", "properties": {"role": {"type": "string"},
                                                          "content": {"type": "string"}}}}}},
        "usage": {"type": "object", "nullable": True, "properties": {
            "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"}}},
    }}


def embeddings_request() -> dict[str, Any]:
    return {"type": "object", "properties": {
        "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}}


def embeddings_response() -> dict[str, Any]:
    return {"type": "object", "properties": {
        "object": {"type": "string"}, "model": {"type": "string"},
        "data": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "object": {"type": "string"},
            "embedding": {"type": "array", "items": {"type": "number"}}}}}}}


PREDICTIONS = {"type": "object", "properties": {"predictions": {"type": "array", "items": {}}}}


def spec(name: str, paths: dict[str, tuple[dict[str, Any], dict[str, Any]]], *, host: str = FAKE_WORKSPACE_HOST,
         version: str = "1") -> dict[str, Any]:
    """A serving spec: ``paths`` maps served entity → (request schema, response schema)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": name, "version": version},
        "servers": _server(host, name),
        "paths": {f"/served-models/{entity}/invocations": {"post": {
            "requestBody": _body(req), "responses": _ok(resp)}} for entity, (req, resp) in paths.items()},
    }


def endpoint(name: str, entities: list[dict[str, Any]], *, ready: bool = True, tags: dict[str, str] | None = None,
             task: str | None = None, endpoint_type: str | None = None, version: int = 1,
             route_optimized: bool = False) -> dict[str, Any]:
    """A list-item endpoint object, as GET /api/2.0/serving-endpoints returns it."""
    item: dict[str, Any] = {
        "name": name, "creator": "someone@example.com", "creation_timestamp": 1730000000000,
        "last_updated_timestamp": 1730000000000 + version, "id": hashlib.sha1(name.encode()).hexdigest()[:12],
        "state": {"ready": "READY" if ready else "NOT_READY",
                  "config_update": "NOT_UPDATING" if ready else "IN_PROGRESS"},
        "config": {"served_entities": entities, "config_version": version},
        "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
        "permission_level": "CAN_MANAGE",
    }
    if task:
        item["task"] = task
    if endpoint_type:
        item["endpoint_type"] = endpoint_type
    if route_optimized:
        item["route_optimized"] = True
    return item


def _sample(schema: dict[str, Any]) -> Any:
    t = schema.get("type")
    return {"integer": 1, "number": 0.5, "string": "text", "boolean": True, "array": [], "object": {}}.get(str(t))


def synthetic_endpoints(n: int, seed: int = 0, host: str = FAKE_WORKSPACE_HOST) -> tuple[list[dict[str, Any]],
                                                                                        dict[str, dict[str, Any]]]:
    """n READY endpoints tagged apim-sync=true, named syn-0000…, cycling through the real shapes."""
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    specs: dict[str, dict[str, Any]] = {}
    for i in range(n):
        name = f"syn-{i:04d}"
        kind = i % 5
        tags = {"apim-sync": "true", "team": rng.choice(["ml", "search", "risk"])}
        if kind == 0:
            cols = [(f"f{j}", dict(rng.choice(_COLUMN_TYPES))) for j in range(rng.randint(2, 9))]
            params = {"temperature": {"type": "number", "format": "double", "default": "0.5"}} if rng.random() < .5 \
                else None
            entity = f"{name.replace('-', '_')}_model-{rng.randint(1, 9)}"
            specs[name] = spec(name, {entity: (column_request(cols, params), PREDICTIONS)}, host=host)
            items.append(endpoint(name, [{"name": entity, "entity_name": f"main.ml.{name}",
                                          "entity_version": "1"}], tags=tags))
        elif kind == 1:
            shape = [-1] + [rng.randint(2, 8) for _ in range(rng.randint(0, 2))]
            entity = f"{name.replace('-', '_')}_tensor-1"
            specs[name] = spec(name, {entity: (tensor_request(shape, dict(rng.choice(_COLUMN_TYPES[:2]))),
                                               PREDICTIONS)}, host=host)
            items.append(endpoint(name, [{"name": entity, "entity_name": f"main.ml.{name}",
                                          "entity_version": "1"}], tags=tags))
        elif kind == 2:
            entity = "gpt-4o-mini"
            specs[name] = spec(name, {entity: (chat_request(), chat_response())}, host=host)
            items.append(endpoint(name, [{"name": entity, "external_model": {
                "provider": "openai", "name": entity, "task": "llm/v1/chat"}}], tags=tags, task="llm/v1/chat"))
        elif kind == 3:
            entity = "text-embedding-3-small"
            specs[name] = spec(name, {entity: (embeddings_request(), embeddings_response())}, host=host)
            items.append(endpoint(name, [{"name": entity, "external_model": {
                "provider": "openai", "name": entity, "task": "llm/v1/embeddings"}}], tags=tags,
                task="llm/v1/embeddings"))
        else:
            a, b = f"{name.replace('-', '_')}_a-1", f"{name.replace('-', '_')}_b-2"
            cols = [(f"x{j}", dict(rng.choice(_COLUMN_TYPES[:3]))) for j in range(rng.randint(2, 5))]
            specs[name] = spec(name, {a: (column_request(cols), PREDICTIONS),
                                      b: (column_request(cols), PREDICTIONS)}, host=host)
            items.append(endpoint(name, [{"name": a, "entity_name": f"main.ml.{name}_a", "entity_version": "1"},
                                         {"name": b, "entity_name": f"main.ml.{name}_b", "entity_version": "2"}],
                                  tags=tags))
    return items, specs


def big_spec(paths: int = 1500, seed: int = 0, *, every_variant: bool = False) -> dict[str, Any]:
    """One Databricks-shaped 3.1 spec with ``paths`` served-entity paths (about 1 KB each); ``every_variant``:
    wider signatures offered in every request variant (dataframe_split, dataframe_records, instances, inputs),
    about 4 KB each."""
    rng = random.Random(seed)
    entities: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for i in range(paths):
        width = rng.randint(8, 14) if every_variant else rng.randint(1, 4)
        cols = [(f"c{j}", dict(rng.choice(_COLUMN_TYPES))) for j in range(width)]
        request = column_request(cols, {"alpha": {"type": "number", "default": "0.1"}})
        if every_variant:
            request["oneOf"] += tensor_request([-1, width], {"type": "number", "format": "double"})["oneOf"]
        entities[f"model_{i:05d}-1"] = (request, PREDICTIONS)
    return spec("big-endpoint", entities)
