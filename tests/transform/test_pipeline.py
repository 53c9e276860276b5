"""The default pipeline on every real and shipped spec: valid OpenAPI 3.0.3, lint-clean, importable by the APIM
emulator, lossless for callers, idempotent, and pure."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV30SpecValidator, validate

from apimsync.emulators.apim_import import import_spec
from apimsync.emulators.databricks import DEFAULT_FIXTURES
from apimsync.transform import TransformContext, lint, load_pipeline
from apimsync.transform.walk import operations

# the shipped fixtures include the real corpus spec (shared/corpus/seed-rag-agent-endpoint.json) verbatim
SPECS = sorted((DEFAULT_FIXTURES / "openapi").glob("*.json"))
SEED = DEFAULT_FIXTURES / "openapi" / "agents_main-dbdemos_rag_chatbot-dbdemos_rag_demo.json"
KEPT_INPUTS = ("dataframe_records", "instances", "inputs", "params")
# served_model_routes: keep the per-entity routes beside /invocations, so every input operation can be compared
CTX = TransformContext(endpoint="ep", server_url="https://adb-1.azuredatabricks.net/serving-endpoints/ep",
                       served_model_routes=True)


def input_keys(schema: Any) -> set[str]:
    """Input variant keys a request schema accepts (top-level properties of the schema or its oneOf branches)."""
    if not isinstance(schema, dict):
        return set()
    keys = set(schema.get("properties") or {})
    for branch in schema.get("oneOf") or schema.get("anyOf") or []:
        keys |= input_keys(branch)
    return keys


def has_key(node: Any, key: str) -> bool:
    if isinstance(node, dict):
        return key in node or any(has_key(v, key) for v in node.values())
    if isinstance(node, list):
        return any(has_key(v, key) for v in node)
    return False


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_default_pipeline_makes_an_importable_lossless_spec(path: Path) -> None:
    spec = json.loads(path.read_text())
    before = copy.deepcopy(spec)
    out = load_pipeline().run(spec, CTX)
    assert spec == before, "the input is untouched"
    validate(out, cls=OpenAPIV30SpecValidator)
    assert out["openapi"] == "3.0.3"
    assert [f for f in lint(out) if f.severity == "error"] == []
    import_spec(json.dumps(out), "openapi+json")  # the APIM emulator accepts it
    ops_in = {(p, m) for p, m, _ in operations(spec)}
    assert {(p, m) for p, m, _ in operations(out)} == ops_in | {("/invocations", "post")}
    assert out["paths"]["/invocations"]["post"]["operationId"] == "invoke"
    for p, m, op in operations(spec):
        new = out["paths"][p][m]
        schema_in = op["requestBody"]["content"]["application/json"]["schema"]
        schema_out = new["requestBody"]["content"]["application/json"]["schema"]
        assert input_keys(schema_out) == input_keys(schema_in) - {"dataframe_split"}
        assert input_keys(schema_in) & set(KEPT_INPUTS) <= input_keys(schema_out)
        assert set(new["responses"]) == set(op["responses"])
        assert new["operationId"] and new["summary"]
    assert not has_key(out, "prefixItems") and "dataframe_split" not in json.dumps(out)
    assert out["servers"] == [{"url": CTX.server_url}]
    assert load_pipeline().run(out, CTX) == out, "idempotent"


def test_operation_ids_are_stable_per_served_entity() -> None:
    spec = json.loads(SEED.read_text())
    ids = {p: op["operationId"] for p, _, op in operations(load_pipeline().run(spec, CTX))}
    assert ids == {"/invocations": "invoke",
                   "/served-models/main-dbdemos_rag_chatbot-dbdemos_rag_demo_1/invocations":
                   "invoke-main-dbdemos_rag_chatbot-dbdemos_rag_demo_1",
                   "/served-models/feedback/invocations": "invoke-feedback"}
    other = TransformContext(endpoint="ep", server_url="https://elsewhere", config_version="9",
                             served_model_routes=True)
    assert {p: op["operationId"] for p, _, op in operations(load_pipeline().run(spec, other))} == ids


def test_by_default_only_the_stable_invocations_route_is_published() -> None:
    """The per-entity routes embed the model version; the endpoint's /invocations does not."""
    spec = json.loads(SEED.read_text())
    default = TransformContext(endpoint="ep", server_url="https://adb-1.azuredatabricks.net/serving-endpoints/ep")
    out = load_pipeline().run(spec, default)
    assert list(out["paths"]) == ["/invocations"]
    assert out["paths"]["/invocations"]["post"]["operationId"] == "invoke"
    renamed = json.loads(SEED.read_text().replace("dbdemos_rag_demo_1", "dbdemos_rag_demo_2"))
    assert load_pipeline().run(renamed, default) == out, "a new model version publishes the same API"


def test_none_pipeline_is_identity() -> None:
    spec = json.loads(SEED.read_text())
    assert load_pipeline("none").run(spec, CTX) == spec
