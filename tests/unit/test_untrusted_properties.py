"""Property: whatever a workspace returns, nothing escapes the plan (issue 13, "done when").

Hypothesis generates list items and specs with arbitrary JSON values in every field. For each: the list item parses
or fails with a SourceError, the spec loads or fails with a SpecError, and the endpoint becomes a desired API, a skip
or a failure, never an exception. Every desired API's policy reads only the named values its template names, and
its backend is an allowed host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apimsync.backend import backend_problem
from apimsync.changes import Failure, Skip
from apimsync.config import settings_from_mapping
from apimsync.desired import build
from apimsync.endpoints import ENDPOINT_NAME, Endpoint, Fetched
from apimsync.engine import Engine
from apimsync.errors import SourceError, SpecError
from apimsync.model import DesiredApi
from apimsync.policy import named_value_refs
from apimsync.spec import load_spec

HOST = "https://adb-1234567890123456.7.azuredatabricks.net"
TEMPLATE = """<policies><inbound><base />
  <set-header name="Authorization" exists-action="override"><value>Bearer {{${named_value}}}</value></set-header>
  <set-header name="x-endpoint" exists-action="override"><value>${endpoint}</value></set-header>
  <rewrite-uri template='/x/${endpoint}/${workspace}' />
  <set-backend-service base-url="${backend_url}" />
</inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"""

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(
    max_size=12)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=12)
names = st.from_regex(ENDPOINT_NAME, fullmatch=True).filter(lambda n: len(n) <= 60) | values
tricky = st.sampled_from(["x{{other-secret}}", "y{{missing}}", "a'b", 'a"b', "a<b>&", "../../outside", "a\nb",
                          "\x1b[31mred", " ws=other ep=victim"])
items = st.fixed_dictionaries(
    {"name": names | tricky},
    optional={"state": st.fixed_dictionaries({"ready": st.just("READY") | values}) | values,
              "tags": st.lists(st.fixed_dictionaries({"key": st.text(max_size=5) | values,
                                                      "value": st.text(max_size=5) | tricky | values})) | values,
              "config": st.fixed_dictionaries({"served_entities": st.lists(st.fixed_dictionaries(
                  {"name": st.text(max_size=8) | values})) | values}) | values,
              "task": st.text(max_size=10) | values, "route_optimized": st.booleans() | values,
              "endpoint_url": st.sampled_from([HOST + "/x", "https://attacker.example.net/x", "http://127.0.0.1:1/x",
                                               "https://a.b.serving.azuredatabricks.net/1/serving-endpoints/x"])
              | values})


def _spec(schema: Any, extra: dict[str, Any]) -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, **extra, "paths": {
        "/served-models/m-1/invocations": {"post": {
            "requestBody": {"content": {"application/json": {"schema": schema}}},
            "responses": {"200": {"description": "ok"}}}}}}


specs = st.builds(_spec, values, st.dictionaries(st.sampled_from(["components", "servers", "x-a", "webhooks",
                                                                  "info"]), values, max_size=2)) | values


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    template = Path(tmp_path_factory.mktemp("policy")) / "policy.xml"
    template.write_text(TEMPLATE, encoding="utf-8")
    return Engine(settings_from_mapping({"apim": {"subscription_id": "s", "resource_group": "r", "service": "svc"},
                                         "policy": {"template": str(template)}}))


@given(item=items, spec=specs)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
def test_nothing_a_workspace_returns_escapes_the_plan(engine: Engine, item: dict[str, Any], spec: Any) -> None:
    try:
        endpoint = Endpoint.from_api("ws", HOST, item)
    except SourceError:
        return  # one line naming the field: checked case by case in test_hostile_workspace
    try:
        loaded = load_spec(json.dumps(spec), origin="spec")
    except SpecError:
        return
    built = build(Fetched(endpoint, spec=loaded), engine.settings, engine.pipeline, engine.template)
    assert isinstance(built, (DesiredApi, Skip, Failure))
    if isinstance(built, DesiredApi):
        assert named_value_refs(built.policy_xml) == {"databricks-token-ws"}, built.policy_xml
        assert backend_problem(built.settings.service_url, HOST) is None
        load_spec(built.spec_json, origin="published")  # what is sent is strict JSON (no NaN, no duplicate keys)


code_like = st.sampled_from(["@(context.Subscription.Key)", "@{return 1;}", " @(1)", "m{{databricks-token-w}}",
                             "{{x}}", "a}}{{b", "@", "{", "&#64;(1)", "&#123;&#123;x&#125;&#125;"])
TASKS = ["llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings", "agent/v1/chat", "agent/v2/chat",
         "agent/v1/responses"]


@pytest.fixture(scope="module", params=["named-value-auth", "oauth-service-principal"])
def llm_engine(request: pytest.FixtureRequest) -> Engine:
    """Every optional policy on, with a shipped template: what a workspace's values can reach."""
    oauth = {"client_id": {"value": "sp"}, "client_secret": {"value": "secret"}, "all_endpoints": True} \
        if request.param == "oauth-service-principal" else None
    return Engine(settings_from_mapping({
        "apim": {"subscription_id": "s", "resource_group": "r", "service": "svc"},
        "workspaces": [{"name": "w", "host": HOST}],
        "policy": {"named_value": {"value": "t"}, "llm": {"tokens_per_minute": 100, "emit_metrics": True},
                   **({"oauth": oauth} if oauth else {})},
        "apis": {"validate_requests": True}}))


def _policy_of(engine: Engine, ep: Endpoint) -> DesiredApi | Skip | Failure:
    spec = _spec({"type": "object", "properties": {"messages": {"type": "array"}}}, {})
    spec["paths"] = {f"/served-models/{e}/invocations": spec["paths"]["/served-models/m-1/invocations"]
                     for e in ep.served_entities} or spec["paths"]
    return build(Fetched(ep, spec=spec), engine.settings, engine.pipeline, engine.template)


def _code(xml: str) -> tuple[list[tuple[str, tuple[str, ...]]], set[str]]:
    """(the element structure, every attribute value or text APIM would run as an expression or resolve)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    structure = [(el.tag, tuple(sorted(el.attrib))) for el in root.iter()]
    texts = [v for el in root.iter() for v in el.attrib.values()] + [el.text or "" for el in root.iter()]
    return structure, {t.strip() for t in texts if t.strip().startswith("@") or "{{" in t}


@given(entities=st.lists(st.text(max_size=20) | code_like, min_size=1, max_size=3),
       tags=st.dictionaries(st.text(max_size=10) | code_like, st.text(max_size=10) | code_like, max_size=3),
       task=st.sampled_from(TASKS) | st.text(max_size=12) | code_like)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_workspace_value_becomes_policy_code(llm_engine: Engine, entities: list[str], tags: dict[str, str],
                                                task: str) -> None:
    """Whatever served-entity names, tags and task an endpoint lists, its policy has the element structure of the
    same kind of endpoint with plain values, and runs or resolves nothing else: no attribute value or text from
    the workspace starts with '@' or holds '{{'."""
    ep = Endpoint("w", "ep", HOST, True, tags=tags, task=task, served_entities=tuple(entities),
                  id="0123456789abcdef0123456789abcdef")
    plain = Endpoint("w", "ep", HOST, True, task=task if task in TASKS else "custom", served_entities=("m-1",),
                     id="0123456789abcdef0123456789abcdef")
    built, reference = _policy_of(llm_engine, ep), _policy_of(llm_engine, plain)
    assert isinstance(reference, DesiredApi), reference
    if not isinstance(built, DesiredApi):
        assert "\n" not in built.message  # refused with a one-line reason
        return
    assert _code(built.policy_xml) == _code(reference.policy_xml)
