"""Each built-in and user step, with its documented before/after example and its edge cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from apimsync.errors import PipelineError
from apimsync.transform import TransformContext, lint, load_pipeline

CTX = TransformContext(endpoint="churn", server_url="https://h/serving-endpoints/churn", tags={"team": "ml"},
                       variables={"workspace": "prod"}, served_model_routes=True)


def run(tmp_path: Path, steps: str, spec: dict[str, Any], ctx: TransformContext = CTX) -> dict[str, Any]:
    file = tmp_path / "p.yaml"
    file.write_text("steps:\n" + steps)
    return load_pipeline(file).run(spec, ctx)


def doc(schema: Any = None, **top: Any) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {"/served-models/m-1/invocations": {"post": {
                "requestBody": {"content": {"application/json": {"schema": schema or {"type": "object"}}}},
                "responses": {"200": {"description": "ok"}}}}}, **top}


def body(spec: dict[str, Any]) -> Any:
    return spec["paths"]["/served-models/m-1/invocations"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]


SPLIT = {"properties": {"dataframe_split": {"type": "object"}, "params": {"type": "object"}}}
RECORDS = {"properties": {"dataframe_records": {"type": "array"}, "params": {"type": "object"}}}
INSTANCES = {"properties": {"instances": {"type": "array"}}}


def _requiring(branch: dict[str, Any], field: str) -> dict[str, Any]:
    return {**branch, "required": [field]}


def test_drop_input_variants(tmp_path: Path) -> None:
    out = run(tmp_path, "  - drop-input-variants: {}\n", doc({"oneOf": [SPLIT, RECORDS]}))
    assert body(out) == _requiring(RECORDS, "dataframe_records"), "one branch left: the oneOf collapses"
    out = run(tmp_path, "  - drop-input-variants: {}\n", doc({"oneOf": [SPLIT, RECORDS, INSTANCES]}))
    assert body(out) == {"oneOf": [_requiring(RECORDS, "dataframe_records"), _requiring(INSTANCES, "instances")]}
    out = run(tmp_path, "  - drop-input-variants: {keep: [instances]}\n", doc({"oneOf": [SPLIT, RECORDS, INSTANCES]}))
    assert body(out) == _requiring(INSTANCES, "instances")
    out = run(tmp_path, "  - drop-input-variants: {}\n", doc({"oneOf": [SPLIT]}))
    assert body(out) == {"oneOf": [SPLIT]}, "never drop every variant"


def test_each_variant_requires_its_input_field_so_a_strict_one_of_accepts_a_valid_payload(tmp_path: Path) -> None:
    """Without required, {"instances": [...]} is valid under every branch and a strict oneOf (APIM's
    validate-content) refuses it; MLflow's scoring server takes exactly one input field anyway."""
    from jsonschema import Draft4Validator

    out = run(tmp_path, "  - drop-input-variants: {}\n", doc({"oneOf": [SPLIT, RECORDS, INSTANCES]}))
    validator = Draft4Validator(body(out))
    assert validator.is_valid({"instances": [1]}) and validator.is_valid({"dataframe_records": []})
    assert not validator.is_valid({"instances": [1], "dataframe_records": []})


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
     {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}),
    ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "integer"}]},
     {"type": "array", "items": {"type": "integer"}}),
    ({"type": "array", "prefixItems": [{"type": "integer"}], "items": False},
     {"type": "array", "maxItems": 1, "items": {"type": "integer"}}),
    ({"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
     {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}),
    ({"type": "array", "prefixItems": [{"type": "integer"}, {}]}, {"type": "array", "items": {}}),
    ({"type": "object", "properties": {"prefixItems": {"type": "string"}}},
     {"type": "object", "properties": {"prefixItems": {"type": "string"}}}),
])
def test_prefix_items(tmp_path: Path, schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert body(run(tmp_path, "  - prefix-items: {}\n", doc(schema))) == expected


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": ["string", "null"], "const": "a", "examples": ["a", "b"]},
     {"type": "string", "nullable": True, "enum": ["a"], "example": "a"}),
    ({"const": False}, {"enum": [False]}),
    ({"const": 0}, {"enum": [0]}),
    ({"type": ["integer", "string"]}, {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
    ({"type": "number", "exclusiveMinimum": 5, "minimum": 1}, {"type": "number", "minimum": 5,
                                                               "exclusiveMinimum": True}),
    ({"type": "number", "exclusiveMinimum": 1, "minimum": 5}, {"type": "number", "minimum": 5}),
    ({"type": "number", "exclusiveMaximum": 9}, {"type": "number", "maximum": 9, "exclusiveMaximum": True}),
    ({"type": "object", "format": "unknown"}, {"type": "object"}),
    ({"$ref": "#/components/schemas/A", "description": "d"}, {"allOf": [{"$ref": "#/components/schemas/A"}],
                                                             "description": "d"}),
    ({"type": "string", "contentEncoding": "base64"}, {"type": "string", "format": "byte"}),
    ({"type": "object", "properties": {"const": {"type": "string"}}, "$schema": "x", "$id": "y",
      "unevaluatedProperties": False}, {"type": "object", "properties": {"const": {"type": "string"}}}),
])
def test_downconvert_schemas(tmp_path: Path, schema: dict[str, Any], expected: dict[str, Any]) -> None:
    spec = doc(schema, components={"schemas": {"A": {"type": "object"}}})
    out = run(tmp_path, "  - downconvert-3.0: {}\n", spec)
    assert body(out) == expected
    assert out["openapi"] == "3.0.3"


def test_downconvert_document(tmp_path: Path) -> None:
    spec = doc(jsonSchemaDialect="x", webhooks={"a": {}}, info={"title": "t", "version": "1", "summary": "s",
                                                                "license": {"name": "MIT", "identifier": "MIT"}})
    out = run(tmp_path, "  - downconvert-3.0: {}\n", spec)
    assert "jsonSchemaDialect" not in out and "webhooks" not in out
    assert out["info"] == {"title": "t", "version": "1", "description": "s",
                           "license": {"name": "MIT", "url": "https://spdx.org/licenses/MIT.html"}}


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "number", "default": "0.5"}, {"type": "number", "default": 0.5}),
    ({"type": "integer", "example": "many"}, {"type": "integer"}),
    ({"type": "boolean", "default": "false"}, {"type": "boolean", "default": False}),
    ({"type": "string", "example": 3}, {"type": "string", "example": "3"}),
    ({"type": "integer", "default": 2.0}, {"type": "integer", "default": 2}),
    ({"type": "string", "nullable": True, "default": None}, {"type": "string", "nullable": True, "default": None}),
])
def test_fix_example_types(tmp_path: Path, schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert body(run(tmp_path, "  - fix-example-types: {}\n", doc(schema))) == expected


def test_rewrite_servers_operation_ids_info_invocations_and_hoist(tmp_path: Path) -> None:
    spec = doc({"oneOf": [RECORDS, INSTANCES]}, servers=[{"url": "https://a"}, {"url": "https://b"}])
    spec["paths"]["/served-models/m-1/invocations"]["servers"] = [{"url": "https://c"}]
    out = run(tmp_path, "  - rewrite-servers: {url: '{server_url}'}\n  - operation-ids: {}\n"
                        "  - set-info: {title: '{endpoint} ({workspace})'}\n  - add-invocations-path: {}\n"
                        "  - hoist-schemas: {}\n", spec)
    assert out["servers"] == [{"url": CTX.server_url}]
    assert "servers" not in out["paths"]["/served-models/m-1/invocations"]
    op = out["paths"]["/served-models/m-1/invocations"]["post"]
    assert (op["operationId"], op["summary"]) == ("invoke-m-1", "Invoke m-1")
    assert out["info"]["title"] == "churn (prod)"
    routed = out["paths"]["/invocations"]["post"]
    assert routed["summary"] == "Invoke churn (traffic-routed)"
    assert "anyOf" not in json.dumps(routed["requestBody"]), "one served entity: its schema as is"
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/invoke-m-1-request"
    assert out["components"]["schemas"]["invoke-m-1-request"] == {"oneOf": [RECORDS, INSTANCES]}
    assert [f for f in lint(out) if f.rule == "component-key"] == []


def test_when_limits_steps_to_endpoints_and_tags(tmp_path: Path) -> None:
    steps = ("  - set-info: {title: globbed}\n    when: {endpoints: ['churn*']}\n"
             "  - set-info: {description: tagged}\n    when: {tags: {team: ml}}\n"
             "  - set-info: {version: never}\n    when: {tags: {team: other}}\n")
    out = run(tmp_path, steps, doc())
    assert out["info"] == {"title": "globbed", "version": "1", "description": "tagged"}


def test_overlay_and_jsonpath_user_steps(tmp_path: Path) -> None:
    (tmp_path / "o.yaml").write_text(
        "overlay: 1.0.0\ninfo: {title: mine, version: '1'}\nactions:\n"
        "  - target: $.info\n    update: {x-team: ml, contact: {name: ML}}\n"
        "  - target: $.tags[1]\n    remove: true\n"
        "  - target: $.tags[0]\n    remove: true\n")
    spec = doc(tags=[{"name": "a"}, {"name": "b"}, {"name": "c"}])
    out = run(tmp_path, "  - overlay: {file: o.yaml}\n"
                        "  - jsonpath: {set: $.info.title, value: Churn}\n"
                        "  - jsonpath: {merge: $.info, value: {description: merged}}\n"
                        "  - jsonpath: {remove: \"$.paths['/served-models/m-1/invocations'].post.responses\"}\n",
              spec)
    assert out["info"] == {"title": "Churn", "version": "1", "x-team": "ml", "contact": {"name": "ML"},
                           "description": "merged"}
    assert out["tags"] == [{"name": "c"}]
    assert "responses" not in out["paths"]["/served-models/m-1/invocations"]["post"]


@pytest.mark.parametrize(("steps", "message"), [
    ("  - make-it-work: {}\n", "step 1: unknown step 'make-it-work'"),
    ("  - prefix-items: {mode: drop}\n", "step 1 (prefix-items): unknown parameter(s) mode"),
    ("  - jsonpath: {remove: '$.[[['}\n", "bad JSONPath"),
    ("  - jsonpath: {remove: 'info'}\n", "JSONPath must be a string starting with '$'"),
    ("  - jsonpath: {set: '$.a'}\n", "'set' needs a 'value'"),
    ("  - overlay: {file: nowhere.yaml}\n", "overlay file not found"),
    ("  - set-info: {title: x}\n    when: {weekday: monday}\n", "'when' takes"),
    ("  - [a, b]\n", "expected a mapping"),
])
def test_pipeline_errors_name_file_and_step(tmp_path: Path, steps: str, message: str) -> None:
    file = tmp_path / "p.yaml"
    file.write_text("steps:\n" + steps)
    with pytest.raises(PipelineError, match=None) as info:
        load_pipeline(file)
    assert str(file) in str(info.value) and message in str(info.value)


def test_template_with_unknown_placeholder_fails_at_run(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"unknown placeholder \{nope\}"):
        run(tmp_path, "  - rewrite-servers: {url: 'https://{nope}'}\n", doc())


def _run(spec: dict[str, Any], steps: str) -> dict[str, Any]:
    from apimsync.transform import TransformContext
    from apimsync.transform.pipeline import Pipeline
    from apimsync.transform.steps import REGISTRY

    pipeline = Pipeline([REGISTRY[name]({}, name) for name in steps.split()])
    return pipeline.run(spec, TransformContext(endpoint="e", server_url="https://h/serving-endpoints/e"))


def test_break_recursion_cuts_each_cycle_once_and_keeps_the_rest() -> None:
    ref = {"$ref": "#/components/schemas/Node"}
    spec = {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {},
            "components": {"schemas": {
                "Node": {"type": "object", "properties": {"child": ref, "name": {"type": "string"}}},
                "A": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}}},
                "B": {"type": "array", "items": {"$ref": "#/components/schemas/A"}},
                "Leaf": {"type": "object", "properties": {"node": {"$ref": "#/components/schemas/Node"}}}}}}
    out = _run(spec, "break-recursion")["components"]["schemas"]
    assert out["Node"]["properties"]["child"] == {"type": "object",
                                                  "description": "recursive Node: not described further"}
    assert out["Node"]["properties"]["name"] == {"type": "string"}
    assert out["A"]["properties"]["b"] == {"$ref": "#/components/schemas/B"}, "one cut per cycle"
    assert out["B"]["items"]["type"] == "object"
    assert out["Leaf"]["properties"]["node"] == {"$ref": "#/components/schemas/Node"}, "not part of a cycle"
    assert spec["components"]["schemas"]["Node"]["properties"]["child"] == ref, "the input is untouched"


def test_break_recursion_walks_long_chains_without_recursing() -> None:
    n = 5000
    schemas: dict[str, Any] = {f"S{i}": {"$ref": f"#/components/schemas/S{i + 1}"} for i in range(n)}
    schemas[f"S{n}"] = {"$ref": "#/components/schemas/S0"}
    out = _run({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {},
                "components": {"schemas": schemas}}, "break-recursion")
    assert sum("$ref" not in s for s in out["components"]["schemas"].values()) == 1


def test_a_type_array_moves_each_types_keywords_into_its_branch() -> None:
    spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}, "components": {"schemas": {
        "X": {"type": ["string", "integer", "null"], "minLength": 1, "minimum": 0, "description": "d"}}}}
    out = _run(spec, "downconvert-3.0")["components"]["schemas"]["X"]
    assert out == {"nullable": True, "description": "d",
                   "anyOf": [{"type": "string", "minLength": 1}, {"type": "integer", "minimum": 0}]}


def test_break_recursion_sees_a_property_named_like_a_value_keyword() -> None:
    spec = {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {}, "components": {"schemas": {
        "A": {"type": "object", "properties": {"default": {"$ref": "#/components/schemas/A"}},
              "example": {"$ref": "#/components/schemas/A"}}}}}
    out = _run(spec, "break-recursion")["components"]["schemas"]["A"]
    assert out["properties"]["default"]["type"] == "object", "a property named 'default' is a schema"
    assert out["example"] == {"$ref": "#/components/schemas/A"}, "an example is data: never rewritten"


def test_no_records_example_when_the_records_variant_is_dropped(tmp_path: Path) -> None:
    split = {"properties": {"dataframe_split": {"type": "object"}},
             "examples": [{"columns": ["a"], "data": [[1]]}]}
    out = run(tmp_path, "  - drop-input-variants: {keep: [dataframe_split]}\n", doc({"oneOf": [split, RECORDS]}))
    media = out["paths"]["/served-models/m-1/invocations"]["post"]["requestBody"]["content"]["application/json"]
    assert "example" not in media
    out = run(tmp_path, "  - drop-input-variants: {}\n", doc({"oneOf": [split, RECORDS]}))
    media = out["paths"]["/served-models/m-1/invocations"]["post"]["requestBody"]["content"]["application/json"]
    assert media["example"] == {"dataframe_records": [{"a": 1}]}
