"""Hypothesis: Databricks-shaped specs with random columns, tensors and 3.1 constructs always come out valid 3.0,
lint-clean, importable, idempotent, and with every operation and kept input variant."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from apimsync.emulators import synthetic
from apimsync.emulators.apim_import import import_spec
from apimsync.transform import TransformContext, lint, load_pipeline

SCALARS = st.sampled_from([
    {"type": "integer", "format": "int64"}, {"type": "number", "format": "double"}, {"type": "string"},
    {"type": "boolean"}, {"type": "object", "format": "unknown"}, {"type": ["string", "null"]},
    {"type": ["integer", "string"]}, {"const": False}, {"const": 0}, {"type": "number", "exclusiveMinimum": 0},
    {"type": "string", "examples": ["a", "b"]}, {"type": "number", "default": "0.5"},
    {"type": "integer", "example": "not a number"}, {"$ref": "#/components/schemas/Shared", "description": "d"},
])


def columns(schemas: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(schemas, lambda inner: st.one_of(
        st.builds(lambda s: {"type": "array", "items": s}, inner),
        st.builds(lambda s: {"type": "array", "prefixItems": [s, {"type": "string"}]}, inner),
        st.dictionaries(st.sampled_from(["a", "b", "const", "prefixItems", "type"]), inner, min_size=1, max_size=3)
        .map(lambda props: {"type": "object", "properties": props})), max_leaves=6)


@st.composite
def serving_specs(draw: st.DrawFn) -> dict[str, Any]:
    entities: dict[str, Any] = {}
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["columns", "tensor", "chat"]))
        if kind == "columns":
            cols = [(f"c{j}", draw(columns(SCALARS))) for j in range(draw(st.integers(1, 5)))]
            params = {"t": draw(SCALARS)} if draw(st.booleans()) else None
            request = synthetic.column_request(cols, params)
        elif kind == "tensor":
            shape = [-1, *draw(st.lists(st.integers(1, 4), max_size=3))]
            request = synthetic.tensor_request(shape, draw(SCALARS))
        else:
            request = synthetic.chat_request()
        entities[f"model_{i}-{draw(st.integers(1, 9))}"] = (request, synthetic.PREDICTIONS)
    spec = synthetic.spec("ep", entities)
    spec["components"] = {"schemas": {"Shared": {"type": "object", "properties": {"x": {"type": ["number", "null"]}}}}}
    if draw(st.booleans()):
        spec["info"]["summary"] = "s"
        spec["webhooks"] = {}
    return spec


def inputs(schema: Any) -> set[str]:
    keys = set(schema.get("properties") or {})
    for branch in schema.get("oneOf") or []:
        keys |= set(branch.get("properties") or {})
    return keys


CTX = TransformContext(endpoint="ep", server_url="https://adb-1.azuredatabricks.net/serving-endpoints/ep",
                       served_model_routes=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(serving_specs())
def test_any_databricks_shaped_spec_becomes_importable(spec: dict[str, Any]) -> None:
    pipeline = load_pipeline()
    out = pipeline.run(spec, CTX)
    validate(out, cls=OpenAPIV30SpecValidator)
    assert [f for f in lint(out) if f.severity == "error"] == []
    import_spec(json.dumps(out), "openapi+json")
    assert set(out["paths"]) == set(spec["paths"]) | {"/invocations"}
    for path, item in spec["paths"].items():
        before = inputs(item["post"]["requestBody"]["content"]["application/json"]["schema"])
        after = inputs(out["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"])
        assert after == before - {"dataframe_split"}
    assert pipeline.run(out, CTX) == out
