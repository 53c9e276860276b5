"""The APIM linter: one case per rule, each finding with a pointer, a severity and a fix hint."""

from __future__ import annotations

from typing import Any

import pytest

from apimsync.transform import lint


def doc(schema: Any = None, **top: Any) -> dict[str, Any]:
    spec = {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "servers": [{"url": "https://h"}],
            "paths": {"/x": {"post": {"operationId": "x", "requestBody": {"content": {"application/json": {
                "schema": schema or {"type": "object"}}}}, "responses": {"200": {"description": "ok"}}}}}}
    spec.update(top)
    return spec


S = "#/paths/~1x/post/requestBody/content/application~1json/schema"


@pytest.mark.parametrize(("spec", "rule", "severity", "pointer"), [
    (doc(openapi="3.1.0"), "openapi-version", "warning", "#/openapi"),
    (doc(openapi="2.9"), "openapi-version", "error", "#/openapi"),
    (doc({"type": ["string", "null"]}), "type-array", "error", f"{S}/type"),
    (doc({"type": "number", "exclusiveMaximum": 3}), "exclusive-bound", "error", f"{S}/exclusiveMaximum"),
    (doc({"type": "array", "prefixItems": [{}]}), "prefix-items", "error", f"{S}/prefixItems"),
    (doc({"const": 1}), "const", "error", f"{S}/const"),
    (doc({"type": "string", "examples": ["a"]}), "schema-examples", "error", f"{S}/examples"),
    (doc({"$ref": "#/components/schemas/A", "description": "x"}, components={"schemas": {"A": {}}}),
     "ref-siblings", "error", S),
    (doc({"$ref": "https://example.com/a.json"}), "external-ref", "error", f"{S}/$ref"),
    (doc({"$ref": "#/components/schemas/Nope"}), "missing-ref", "error", f"{S}/$ref"),
    (doc({"type": "number", "default": "0.5"}), "type-mismatch", "error", f"{S}/default"),
    (doc({"type": "object", "format": "unknown"}), "format-unknown", "warning", f"{S}/format"),
    (doc(info={"title": "t", "version": "1", "summary": "s"}), "info-summary", "error", "#/info/summary"),
    (doc(webhooks={}), "webhooks", "error", "#/webhooks"),
    (doc(components={"schemas": {"a b": {"type": "object"}}}), "component-key", "error",
     "#/components/schemas/a b"),
    (doc(components={"schemas": {"N": {"properties": {"n": {"$ref": "#/components/schemas/N"}}}}}), "recursion",
     "error", "#/components/schemas/N"),
    (doc(servers=[{"url": "http://h"}]), "servers", "warning", "#/servers"),
    (doc(paths={}), "no-paths", "warning", "#/paths"),  # APIM imports an API without operations
    (doc(paths={"/a/{id}": {"get": {"operationId": "a", "responses": {"200": {"description": "ok"}}}}}),
     "path-template", "error", "#/paths/~1a~1{id}/get"),
    (doc(paths={"/a": {"get": {"responses": {"200": {"description": "ok"}}}}}), "operation-id", "warning",
     "#/paths/~1a/get"),
])
def test_each_rule(spec: dict[str, Any], rule: str, severity: str, pointer: str) -> None:
    findings = [f for f in lint(spec) if f.rule == rule]
    assert findings, f"{rule} not reported"
    assert findings[0].severity == severity and findings[0].pointer == pointer
    assert findings[0].hint and findings[0].message


def test_size_limit_and_duplicate_operation_names() -> None:
    big = doc(info={"title": "t", "version": "1", "description": "x" * (4 * 1024 * 1024)})
    assert [f.rule for f in lint(big) if f.severity == "error"] == ["size"]
    twice = doc(paths={"/a": {"post": {"operationId": "Same", "responses": {"200": {"description": "ok"}}}},
                       "/b": {"post": {"operationId": "same", "responses": {"200": {"description": "ok"}}}}})
    assert [f.rule for f in lint(twice)] == ["operation-name"]


def test_clean_spec_has_no_findings() -> None:
    assert lint(doc()) == []
