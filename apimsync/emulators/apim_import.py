"""How the emulated APIM reads an imported OpenAPI document: what it rejects (with APIM's messages) and the
operations it builds. Stands in for Azure, so it is deliberately independent of apimsync's own linter.

Facts: Learn, "API import restrictions and known issues" (name rules); the parser is microsoft/OpenAPI.NET with a
3.0-era JSON Schema reader (its error strings).
Small helpers (``$ref`` resolution, cycle detection) are repeated from ``apimsync.transform.lint`` on purpose:
the emulator must keep judging specs the way Azure does even when the product's linter changes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

MAX_INLINE_BYTES = 4 * 1024 * 1024
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")
SCHEMA_KEYS_ONE = ("items", "additionalProperties", "not")
SCHEMA_KEYS_LIST = ("allOf", "anyOf", "oneOf")
# 2020-12 keywords its 3.0 reader cannot read (decided: rejected as unknown schema keywords, the way
# OpenAPI.NET's strict reader reports them; no public report says otherwise).
UNREADABLE = ("prefixItems", "const", "$schema", "$id", "$defs", "$dynamicRef", "$dynamicAnchor",
              "$recursiveRef", "$recursiveAnchor", "$anchor", "unevaluatedProperties", "unevaluatedItems",
              "dependentRequired", "dependentSchemas", "propertyNames", "contains", "if", "then", "else",
              "patternProperties", "contentMediaType", "contentEncoding")
MISMATCH = "Data and type mismatch found."
SCALAR = "Cannot create a scalar value from this type of node."
SPEC_NOTE = ("The input OpenAPI file is not valid for the OpenAPI specification "
             "https://github.com/OAI/OpenAPI-Specification/blob/master/versions/3.0.1.md "
             "(schema https://github.com/OAI/OpenAPI-Specification/blob/master/schemas/v3.0/schema.yaml).")


class ImportRejected(Exception):
    """APIM's 400 ValidationError for a spec it cannot import."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(messages[0] if messages else "invalid")
        self.messages = messages

    def envelope(self) -> dict[str, Any]:
        return {"error": {"code": "ValidationError", "message": "One or more fields contain incorrect values:",
                          "details": [{"code": "ValidationError", "target": "representation", "message": m}
                                      for m in self.messages]}}


@dataclass
class ImportedOperation:
    name: str
    display_name: str
    method: str
    url_template: str
    description: str
    operation_id: str | None
    # the JSON request body's schema, with the document's components beside it for its $refs (validate-content)
    request_schema: dict[str, Any] | None = None


@dataclass
class ImportedApi:
    openapi_version: str
    title: str | None
    description: str | None
    version: str | None
    service_url: str | None
    operations: list[ImportedOperation]


def _pointer(parts: tuple[Any, ...]) -> str:
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class _Reader:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.errors: list[str] = []

    def error(self, message: str, where: tuple[Any, ...]) -> None:
        if len(self.errors) < 50:
            self.errors.append(f"Parsing error(s): {message} [{_pointer(where)}]")

    def schema(self, node: Any, where: tuple[Any, ...]) -> None:
        if isinstance(node, bool) or not isinstance(node, dict):
            if not isinstance(node, dict):
                self.error(SCALAR, where)
            return
        if "$ref" in node:
            self.ref(node["$ref"], (*where, "$ref"))
            extra = [k for k in node if k != "$ref"]
            if extra:
                self.error(f"A $ref cannot have sibling keywords ({', '.join(extra)}).", where)
            return
        kind = node.get("type")
        if isinstance(kind, list):
            self.error(SCALAR, (*where, "type"))
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if key in node and not isinstance(node[key], bool):
                self.error(SCALAR, (*where, key))
        if isinstance(node.get("examples"), list):
            self.error(SCALAR, (*where, "examples"))
        for key in UNREADABLE:
            if key in node:
                self.error(f"The field '{key}' in 'schema' object is not supported.", (*where, key))
        for key in ("example", "default"):
            if key in node and isinstance(kind, str) and not _fits(node[key], kind, node.get("nullable")):
                self.error(MISMATCH, (*where, key))
        props = node.get("properties")
        if isinstance(props, dict):
            for name, sub in props.items():
                self.schema(sub, (*where, "properties", name))
        for key in SCHEMA_KEYS_ONE:
            if key in node and not isinstance(node[key], bool):
                self.schema(node[key], (*where, key))
        for key in SCHEMA_KEYS_LIST:
            if isinstance(node.get(key), list):
                for i, sub in enumerate(node[key]):
                    self.schema(sub, (*where, key, i))

    def ref(self, ref: Any, where: tuple[Any, ...]) -> None:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            self.error(f"The reference '{ref}' is not supported: external references are not allowed.", where)
            return
        if _resolve(self.doc, ref) is None:
            self.error(f"Invalid Reference identifier '{ref}'.", where)

    def content(self, content: Any, where: tuple[Any, ...]) -> None:
        if not isinstance(content, dict):
            return
        for media, body in content.items():
            if isinstance(body, dict):
                if "schema" in body:
                    self.schema(body["schema"], (*where, media, "schema"))
                schema = _obj(body.get("schema"))
                kind = schema.get("type")
                if "example" in body and isinstance(kind, str) and not _fits(body["example"], kind, False):
                    self.error(MISMATCH, (*where, media, "example"))

    def parameters(self, params: Any, where: tuple[Any, ...]) -> list[dict[str, Any]]:
        out = []
        for i, p in enumerate(params if isinstance(params, list) else []):
            if isinstance(p, dict) and "$ref" in p:
                self.ref(p["$ref"], (*where, i, "$ref"))
                p = _resolve(self.doc, p["$ref"]) or {}
            if isinstance(p, dict):
                out.append(p)
                if "schema" in p:
                    self.schema(p["schema"], (*where, i, "schema"))
                kind = p.get("schema", {}).get("type") if isinstance(p.get("schema"), dict) else None
                if "example" in p and isinstance(kind, str) and not _fits(p["example"], kind, False):
                    self.error(MISMATCH, (*where, i, "example"))
        return out


def _obj(value: Any) -> dict[str, Any]:
    """The value if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _fits(value: Any, kind: str, nullable: Any) -> bool:
    if value is None:
        return bool(nullable)
    return {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }.get(kind, True)


def _resolve(doc: Any, ref: str) -> Any:
    node = doc
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _refs_in(node: Any) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                found.add(ref.rsplit("/", 1)[1])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _recursive_schemas(schemas: dict[str, Any]) -> list[str]:
    graph = {name: _refs_in(body) & set(schemas) for name, body in schemas.items()}
    looping: list[str] = []
    for start in graph:
        seen: set[str] = set()
        stack = list(graph[start])
        while stack:
            name = stack.pop()
            if name == start:
                looping.append(start)
                break
            if name not in seen:
                seen.add(name)
                stack.extend(graph.get(name, ()))
    return looping


def operation_name(operation_id: str | None, method: str, path: str) -> str:
    """APIM's operation resource name (Learn, "API import restrictions and known issues": lower case,
    non-alphanumerics to "-", 76 characters), before de-duplication."""
    source = operation_id if operation_id else f"{method}-{path}"
    name = re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")
    return name[:76].strip("-") or method.lower()


def import_spec(value: str | bytes, fmt: str) -> ImportedApi:
    """Read an inline spec as APIM does; ImportRejected for what it rejects, ValueError for unknown formats."""
    if fmt not in ("openapi+json", "openapi", "swagger-json"):
        raise ValueError(f"format '{fmt}' is not supported by the emulator")
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if len(raw) > MAX_INLINE_BYTES:
        raise ImportRejected([f"Parsing error(s): The specification is {len(raw)} bytes; inline imports are "
                              f"limited to {MAX_INLINE_BYTES} bytes (4 MB). [#]"])
    text = raw.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        # az cli's BOM bug: the reader falls back to YAML and trips over the first JSON mapping
        raise ImportRejected(["Parsing error(s): (Lin: 1, Col: 11, Chr: 12) - (Lin: 1, Col: 11, Chr: 12): "
                              "Mapping values are not allowed in this context. [#]"])
    try:
        doc = json.loads(text) if fmt != "openapi" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ImportRejected([f"Parsing error(s): {str(exc).splitlines()[0]} [#]"]) from None
    if not isinstance(doc, dict):
        raise ImportRejected([f"Parsing error(s): {SCALAR} [#]"])
    version = str(doc.get("openapi") or doc.get("swagger") or "")
    if not (version == "2.0" or re.fullmatch(r"3\.0\.[0-3]", version) or version == "3.1.0"):
        raise ImportRejected([f"Parsing error(s): OpenAPI specification version '{version}' is not supported. [#]"])
    reader = _Reader(doc)
    info = _obj(doc.get("info"))
    if "summary" in info:
        reader.error("The field 'summary' in 'info' object is not supported.", ("info", "summary"))
    if "webhooks" in doc:
        reader.error("The field 'webhooks' in 'document' object is not supported.", ("webhooks",))
    if "jsonSchemaDialect" in doc:
        reader.error("The field 'jsonSchemaDialect' in 'document' object is not supported.", ("jsonSchemaDialect",))
    components = _obj(doc.get("components"))
    for section, entries in components.items():
        if isinstance(entries, dict):
            for key in entries:
                if not COMPONENT_KEY.match(str(key)):
                    reader.errors.append(
                        f"Parsing error(s): The key '{key}' in '{section}' of components MUST match the regular "
                        f"expression '^[a-zA-Z0-9\\.\\-_]+$'. [#/components]")
    schemas = _obj(components.get("schemas"))
    for name, body in schemas.items():
        reader.schema(body, ("components", "schemas", name))
    for name in _recursive_schemas(schemas):
        reader.error(f"The schema '{name}' is defined recursively, which API Management does not support.",
                     ("components", "schemas", name))
    operations: list[ImportedOperation] = []
    paths = _obj(doc.get("paths"))
    for path, item in paths.items():
        if not isinstance(item, dict):
            continue
        shared = reader.parameters(item.get("parameters"), ("paths", path, "parameters"))
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            where = ("paths", path, method)
            params = shared + reader.parameters(op.get("parameters"), (*where, "parameters"))
            declared = {p.get("name") for p in params if p.get("in") == "path"}
            for template in re.findall(r"\{([^}]+)\}", path):
                if template not in declared:
                    reader.error(f"The path parameter '{template}' is not defined for operation.", where)
            body = op.get("requestBody")
            if isinstance(body, dict):
                if "$ref" in body:
                    reader.ref(body["$ref"], (*where, "requestBody", "$ref"))
                reader.content(body.get("content"), (*where, "requestBody", "content"))
            for status, response in (op.get("responses") or {}).items():
                if isinstance(response, dict):
                    reader.content(response.get("content"), (*where, "responses", status, "content"))
                    for header, spec in (response.get("headers") or {}).items():
                        if isinstance(spec, dict) and "schema" in spec:
                            reader.schema(spec["schema"], (*where, "responses", status, "headers", header, "schema"))
            op_id = op.get("operationId") if isinstance(op.get("operationId"), str) else None
            operations.append(ImportedOperation(
                name=operation_name(op_id, method, path),
                display_name=str(op.get("summary") or op_id or "")[:300] or operation_name(op_id, method, path),
                method=method.upper(), url_template=path, description=str(op.get("description") or ""),
                operation_id=op_id, request_schema=_request_schema(op, doc)))
    if reader.errors:
        raise ImportRejected([*reader.errors, f"Parsing error(s): {SPEC_NOTE}"])
    _dedupe(operations)
    servers = [s.get("url") for s in doc.get("servers") or [] if isinstance(s, dict)]
    https = next((u for u in servers if isinstance(u, str) and u.startswith("https://")), None)
    return ImportedApi(version, info.get("title"), info.get("description"), info.get("version"), https, operations)


def _dedupe(operations: list[ImportedOperation]) -> None:
    seen: set[str] = set()
    for op in operations:
        base, name, n = op.name, op.name, 0
        while name in seen:
            n += 1
            if n > 999:
                raise ImportRejected([f"Parsing error(s): Too many operations named '{base}'. [#/paths]"])
            name = f"{base[:76 - len(str(n)) - 1]}-{n}"
        op.name = name
        seen.add(name)


def _request_schema(op: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any] | None:
    body = op.get("requestBody")
    content = body.get("content") if isinstance(body, dict) else None
    media = content.get("application/json") if isinstance(content, dict) else None
    schema = media.get("schema") if isinstance(media, dict) else None
    if not isinstance(schema, dict):
        return None
    components = doc.get("components") if isinstance(doc.get("components"), dict) else {}
    return {**schema, "components": components} if components else dict(schema)


def reimport_operations(existing: list[ImportedOperation],
                        new: list[ImportedOperation]) -> tuple[list[ImportedOperation], list[str]]:
    """APIM re-import: match on operationId ↔ existing name; unmatched existing operations are deleted."""
    by_name = {op.name: op for op in existing}
    result = []
    for op in new:
        key = operation_name(op.operation_id, op.method, op.url_template) if op.operation_id else op.name
        match = by_name.get(key) or by_name.get(op.name)
        result.append(ImportedOperation(match.name if match else op.name, op.display_name, op.method,
                                        op.url_template, op.description, op.operation_id, op.request_schema))
    kept = {op.name for op in result}
    return result, [name for name in by_name if name not in kept]
