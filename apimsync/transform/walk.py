"""Walking an OpenAPI document's schemas the schema-aware way: only places a schema can stand, never into
``example``, ``default`` or ``enum`` values, and never treating a property *named* like a keyword as one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

Schema = dict[str, Any]
Pointer = tuple[Any, ...]

_SUB_ONE = ("items", "additionalProperties", "not", "contains", "if", "then", "else", "propertyNames",
            "unevaluatedItems", "unevaluatedProperties")
_SUB_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUB_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _content_roots(content: Any, where: Pointer) -> Iterator[tuple[Any, Pointer, str]]:
    if isinstance(content, dict):
        for media, body in content.items():
            if isinstance(body, dict) and "schema" in body:
                yield body, (*where, media), "schema"


def _parameter_roots(params: Any, where: Pointer) -> Iterator[tuple[Any, Pointer, str]]:
    if isinstance(params, list):
        for i, p in enumerate(params):
            if isinstance(p, dict):
                if "schema" in p:
                    yield p, (*where, i), "schema"
                yield from _content_roots(p.get("content"), (*where, i, "content"))


def _response_roots(responses: Any, where: Pointer) -> Iterator[tuple[Any, Pointer, str]]:
    if isinstance(responses, dict):
        for status, response in responses.items():
            if isinstance(response, dict):
                yield from _content_roots(response.get("content"), (*where, status, "content"))
                headers = response.get("headers")
                if isinstance(headers, dict):
                    for name, header in headers.items():
                        if isinstance(header, dict) and "schema" in header:
                            yield header, (*where, status, "headers", name), "schema"


def schema_roots(doc: dict[str, Any]) -> Iterator[tuple[Any, Pointer, str]]:
    """(container, pointer of container, key) for every top-level schema slot in the document."""
    components = doc.get("components")
    if isinstance(components, dict):
        schemas = components.get("schemas")
        if isinstance(schemas, dict):
            for name in schemas:
                yield schemas, ("components", "schemas"), name
        yield from _parameter_roots(list((components.get("parameters") or {}).values())
                                    if isinstance(components.get("parameters"), dict) else [],
                                    ("components", "parameters"))
        for name, body in (components.get("requestBodies") or {}).items() if isinstance(
                components.get("requestBodies"), dict) else ():
            if isinstance(body, dict):
                yield from _content_roots(body.get("content"), ("components", "requestBodies", name, "content"))
        yield from _response_roots(components.get("responses"), ("components", "responses"))
    paths = doc.get("paths")
    if not isinstance(paths, dict):
        return
    for path, item in paths.items():
        if not isinstance(item, dict):
            continue
        yield from _parameter_roots(item.get("parameters"), ("paths", path, "parameters"))
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            where = ("paths", path, method)
            yield from _parameter_roots(op.get("parameters"), (*where, "parameters"))
            body = op.get("requestBody")
            if isinstance(body, dict):
                yield from _content_roots(body.get("content"), (*where, "requestBody", "content"))
            yield from _response_roots(op.get("responses"), (*where, "responses"))


def walk_schemas(doc: dict[str, Any], visit: Callable[[Schema, Pointer], None]) -> None:
    """Call ``visit(schema, pointer)`` on every schema, parents before children.

    ``visit`` may rewrite the node in place (including its subschema keys); the walk then descends into the
    node's subschemas as they are after the visit.
    """
    stack: list[tuple[Any, Pointer]] = []
    for container, where, key in schema_roots(doc):
        node = container.get(key)
        if isinstance(node, dict):
            stack.append((node, (*where, key)))
    while stack:
        node, ptr = stack.pop()
        visit(node, ptr)
        for key in _SUB_ONE:
            child = node.get(key)
            if isinstance(child, dict):
                stack.append((child, (*ptr, key)))
        for key in _SUB_MAP:
            children = node.get(key)
            if isinstance(children, dict):
                for name, child in children.items():
                    if isinstance(child, dict):
                        stack.append((child, (*ptr, key, name)))
        for key in _SUB_LIST:
            children = node.get(key)
            if isinstance(children, list):
                for i, child in enumerate(children):
                    if isinstance(child, dict):
                        stack.append((child, (*ptr, key, i)))


def visit_schemas(doc: dict[str, Any], visit: Callable[[Schema], None]) -> None:
    """:func:`walk_schemas` without pointers: the fast path the built-in steps use."""
    stack: list[Any] = []
    for container, _where, key in schema_roots(doc):
        node = container.get(key)
        if isinstance(node, dict):
            stack.append(node)
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        visit(node)
        for key in _SUB_ONE:
            child = node.get(key)
            if child.__class__ is dict:
                push(child)
        for key in _SUB_MAP:
            children = node.get(key)
            if children.__class__ is dict:
                for child in children.values():
                    if child.__class__ is dict:
                        push(child)
        for key in _SUB_LIST:
            children = node.get(key)
            if children.__class__ is list:
                for child in children:
                    if child.__class__ is dict:
                        push(child)


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) for every operation."""
    paths = doc.get("paths")
    if isinstance(paths, dict):
        for path, item in paths.items():
            if isinstance(item, dict):
                for method in METHODS:
                    op = item.get(method)
                    if isinstance(op, dict):
                        yield path, method, op


def pointer(parts: Pointer) -> str:
    """A JSON pointer in APIM's style: ``#/paths/~1x/post``."""
    return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)
