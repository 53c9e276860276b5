"""The APIM emulator's import rules: every rejection in research/apim.md §1.3, and operation naming (§1.4)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apimsync.emulators.apim_import import ImportedOperation, ImportRejected, import_spec, operation_name
from apimsync.emulators.apim_import import reimport_operations as reimport
from apimsync.emulators.databricks import DEFAULT_FIXTURES

CORPUS = DEFAULT_FIXTURES / "openapi" / "agents_main-dbdemos_rag_chatbot-dbdemos_rag_demo.json"  # the real corpus spec


def doc(schema: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {"/x": {"post": {
        "requestBody": {"content": {"application/json": {"schema": schema or {"type": "object"}}}},
        "responses": {"200": {"description": "ok"}}}}}}
    spec.update(top)
    return spec


def rejected(spec: Any, fmt: str = "openapi+json") -> list[str]:
    with pytest.raises(ImportRejected) as info:
        import_spec(spec if isinstance(spec, (str, bytes)) else json.dumps(spec), fmt)
    envelope = info.value.envelope()["error"]
    assert envelope["code"] == "ValidationError"
    assert all(d["target"] == "representation" for d in envelope["details"])
    return info.value.messages


BODY = "#/paths/~1x/post/requestBody/content/application~1json/schema"


@pytest.mark.parametrize(("schema", "message", "pointer"), [
    ({"type": ["string", "null"]}, "Cannot create a scalar value from this type of node.", f"{BODY}/type"),
    ({"type": "number", "exclusiveMinimum": 0}, "Cannot create a scalar value", f"{BODY}/exclusiveMinimum"),
    ({"type": "array", "prefixItems": [{"type": "integer"}]}, "'prefixItems'", f"{BODY}/prefixItems"),
    ({"const": "a"}, "'const'", f"{BODY}/const"),
    ({"type": "string", "examples": ["a"]}, "Cannot create a scalar value", f"{BODY}/examples"),
    ({"type": "number", "default": "0.5"}, "Data and type mismatch found.", f"{BODY}/default"),
    ({"type": "string", "example": {"a": 1}}, "Data and type mismatch found.", f"{BODY}/example"),
    ({"$ref": "#/components/schemas/A", "description": "x"}, "$ref cannot have sibling", BODY),
    ({"$ref": "other.json#/A"}, "external references are not allowed", f"{BODY}/$ref"),
    ({"$ref": "#/components/schemas/Missing"}, "Invalid Reference", f"{BODY}/$ref"),
])
def test_schema_rejections(schema: dict[str, Any], message: str, pointer: str) -> None:
    spec = doc(schema, components={"schemas": {"A": {"type": "object"}}})
    first = rejected(spec)[0]
    assert first.startswith("Parsing error(s): ") and message in first
    assert first.endswith(f"[{pointer}]")


def test_the_3_0_reader_footer_is_appended() -> None:
    assert "versions/3.0.1.md" in rejected(doc({"type": ["string"]}))[-1]


def test_info_summary_recursion_and_component_keys() -> None:
    spec = doc(info={"title": "t", "version": "1", "summary": "s"})
    assert rejected(spec)[0].endswith("[#/info/summary]")
    recursive = doc({"$ref": "#/components/schemas/Node"}, components={"schemas": {"Node": {
        "type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}}}})
    assert any("defined recursively" in m for m in rejected(recursive))
    odd = doc(components={"schemas": {"KeyValuePair`2": {"type": "object"}}})
    assert rejected(odd)[0] == ("Parsing error(s): The key 'KeyValuePair`2' in 'schemas' of components MUST match "
                                "the regular expression '^[a-zA-Z0-9\\.\\-_]+$'. [#/components]")


def test_bom_size_versions_and_shapes() -> None:
    assert "Mapping values are not allowed in this context." in rejected("\ufeff" + json.dumps(doc()))[0]
    big = doc()
    big["info"]["description"] = "x" * (4 * 1024 * 1024)
    assert "4 MB" in rejected(big)[0]
    for version in ("3.1.1", "3.2.0", "4.0.0", ""):
        assert "not supported" in rejected({**doc(), "openapi": version})[0]
    assert rejected("[1, 2]")
    assert rejected("{not json")
    with pytest.raises(ValueError, match="not supported by the emulator"):
        import_spec(json.dumps(doc()), "wsdl")


def test_3_1_without_unsupported_constructs_imports() -> None:
    api = import_spec(json.dumps({**doc(), "openapi": "3.1.0"}), "openapi+json")
    assert api.openapi_version == "3.1.0"


def test_yaml_format() -> None:
    api = import_spec("openapi: 3.0.1\ninfo: {title: y, version: '1'}\npaths:\n  /a:\n    get:\n      responses:"
                      "\n        '200': {description: ok}\n", "openapi")
    assert [o.name for o in api.operations] == ["get-a"]


def test_real_corpus_spec_rejected_for_prefix_items_then_accepted() -> None:
    spec = json.loads(CORPUS.read_text())
    messages = rejected(spec)
    assert sum("'prefixItems'" in m for m in messages) == 2

    def strip(node: Any) -> None:
        if isinstance(node, dict):
            if "prefixItems" in node:
                node["items"] = node.pop("prefixItems")[0]
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    strip(spec)
    api = import_spec(json.dumps(spec), "openapi+json")
    assert {o.url_template for o in api.operations} == set(spec["paths"])
    assert api.service_url == spec["servers"][0]["url"]


def test_path_template_parameters_must_be_defined() -> None:
    spec = doc()
    spec["paths"] = {"/items/{id}": {"get": {"responses": {"200": {"description": "ok"}}}}}
    assert "path parameter 'id'" in rejected(spec)[0]


def test_operation_names_and_dedupe() -> None:
    assert operation_name("Get Some_Thing!!", "post", "/x") == "get-some-thing"
    assert operation_name(None, "post", "/served-models/m-1/invocations") == "post-served-models-m-1-invocations"
    assert len(operation_name("a" * 200, "get", "/")) == 76
    spec = doc()
    spec["paths"]["/y"] = {"post": {"operationId": "same", "responses": {"200": {"description": "ok"}}}}
    spec["paths"]["/x"]["post"]["operationId"] = "same"
    assert [o.name for o in import_spec(json.dumps(spec), "openapi+json").operations] == ["same", "same-1"]


@given(st.text(max_size=120), st.sampled_from(["get", "post", "put"]), st.text(max_size=60))
def test_operation_names_always_follow_apim_rules(op_id: str, method: str, path: str) -> None:
    name = operation_name(op_id or None, method, "/" + path)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name)
    assert len(name) <= 80


def test_reimport_keeps_matched_and_deletes_unmatched() -> None:
    old = [ImportedOperation("a", "A", "POST", "/a", "", "a"), ImportedOperation("b", "B", "POST", "/b", "", "b")]
    new = [ImportedOperation("a", "A2", "POST", "/a2", "", "a"), ImportedOperation("c", "C", "GET", "/c", "", "c")]
    result, deleted = reimport(old, new)
    assert [o.name for o in result] == ["a", "c"] and result[0].display_name == "A2"
    assert deleted == ["b"]
