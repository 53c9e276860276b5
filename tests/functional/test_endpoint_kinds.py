"""Every endpoint kind publishable and callable through the gateway (issue 11 §5, §6).

Fixture shapes follow a captured /api/2.0/serving-endpoints list (reggie-db/dbx-tools-js,
packages/serving/test/models.test.ts): pay-per-token endpoints have endpoint_type FOUNDATION_MODEL_API and a
served entity with foundation_model; Agent Bricks endpoints (mas-*) list "config": {} with task agent/v1/responses.
MLflow's task names: mlflow/pyfunc/model.py (agent/v1/chat, agent/v2/chat, agent/v1/responses).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from apimsync.changes import Action
from apimsync.emulators._server import FaultRule
from apimsync.emulators.sandbox import Sandbox


def call(box: Sandbox, path: str, body: Any) -> requests.Response:
    return requests.post(f"{box.apim.gateway_url}/{path}", json=body, verify=str(box.apim.ca_file), timeout=30,
                         headers={"Ocp-Apim-Subscription-Key": box.apim.subscription_key})


def test_pay_per_token_endpoints_are_published_only_when_asked_for(sandbox: Sandbox) -> None:
    default = sandbox.engine().plan()
    planned = {c.endpoint for c in default.changes}
    assert not planned & {"databricks-gte-large-en", "databricks-meta-llama-3-3-70b-instruct"}
    assert "databricks-gte-large-en" not in {s.endpoint for s in default.skipped}, "not selected: not listed"
    by_name = sandbox.engine(sandbox.settings(select={"include": ["databricks-gte-large-en"]})).sync()
    assert [c.endpoint for c in by_name.plan.changes] == ["databricks-gte-large-en"]
    (change,) = by_name.plan.changes
    assert "spec synthesized from task llm/v1/embeddings" in change.notes
    answer = call(sandbox, "serving/databricks-gte-large-en/invocations", {"input": ["hello", "world"]})
    assert answer.status_code == 200 and [d["index"] for d in answer.json()["data"]] == [0, 1]
    refused = call(sandbox, "serving/databricks-gte-large-en/invocations", {"messages": []})
    assert refused.status_code == 400 and "input" in refused.json()["message"]
    every = sandbox.engine(sandbox.settings(select={"foundation_models": True})).plan()
    assert {"databricks-gte-large-en", "databricks-meta-llama-3-3-70b-instruct"} <= {
        c.endpoint for c in every.changes}


def test_an_agent_bricks_endpoint_gets_the_responses_shape(sandbox: Sandbox) -> None:
    report = sandbox.engine().sync()
    (change,) = [c for c in report.plan.changes if c.endpoint == "mas-7f3c9e21-endpoint"]
    assert change.action is Action.CREATE and "spec synthesized from task agent/v1/responses" in change.notes
    assert "spec synthesized" in str(report.plan) and change.to_dict()["notes"] == list(change.notes)
    answer = call(sandbox, "serving/mas-7f3c9e21-endpoint/invocations",
                  {"input": [{"role": "user", "content": "Where is my order?"}]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "response" and body["output"][0]["content"][0]["type"] == "output_text"
    assert sandbox.engine().plan().changes and not sandbox.engine().plan().has_changes, "synthesis is stable"


def test_every_kind_answers_through_the_gateway(sandbox: Sandbox) -> None:
    """Custom model, A/B, external chat and embeddings, agent (chat and responses), route-optimized (OAuth)."""
    engine = sandbox.engine()
    assert engine.sync().ok
    report = engine.verify()
    assert report.ok, str(report)
    assert {c.endpoint for c in report.checks} >= {"churn-classifier", "recommender-ab", "openai-chat",
                                                   "openai-embeddings", "ranker-route-optimized",
                                                   "agents_main-dbdemos_rag_chatbot-dbdemos_rag_demo",
                                                   "mas-7f3c9e21-endpoint"}


def test_three_runs_publish_the_same_backends_and_every_kind_answers_on_each(sandbox: Sandbox) -> None:
    """A real list carries route_optimized but no endpoint_url: an unchanged route-optimized endpoint still has its
    details read (only they name its dedicated host), so the second run, and a third with refresh, keep every
    backend as the first published it, write nothing, and every API answers on each run."""
    client, rg, svc = sandbox.apim.client(), sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE

    def backends() -> dict[str, str]:
        return {str(a.name): str(a.service_url) for a in client.api.list_by_service(rg, svc)}

    first = sandbox.engine().sync()
    assert first.ok
    published = backends()
    assert sandbox.databricks.dedicated_url in published["dbx-ranker-route-optimized"]
    for refresh in (False, True):
        sandbox.apim.reset_stats()
        again = sandbox.engine().sync(refresh=refresh)
        assert again.ok and not again.plan.has_changes, [(c.api_id, c.reasons) for c in again.plan.changes
                                                         if c.reasons]
        assert sandbox.apim.stats()["writes"] == 0 and backends() == published
        report = sandbox.engine().verify()
        assert report.ok, str(report)
        assert len(report.checks) == len(published)


@pytest.mark.parametrize(("status", "outcome"), [(400, "failed"), (403, "failed"), (500, "failed"),
                                                 (404, "skipped")])
def test_openapi_errors_other_than_a_missing_schema_are_failures(sandbox: Sandbox, status: int,
                                                                 outcome: str) -> None:
    """Before, any 4xx but 401/403/429 from /openapi was a silent skip with exit 0. Now only a 404 after the
    endpoint's own GET succeeded means "no schema" (the served model has no signature); anything else fails that
    endpoint with Databricks' message. databricks-sdk maps 400/403/404/500 to BadRequest, PermissionDenied,
    NotFound, InternalError (research/databricks.md §1.4)."""
    sandbox.databricks.faults.add(FaultRule(method="GET", path="churn-classifier/openapi$", status=status,
                                            count=None))
    plan = sandbox.engine().plan()
    failed = {f.endpoint: f.message for f in plan.failures}
    skipped = {s.endpoint: s.reason for s in plan.skipped}
    if outcome == "failed":
        assert "injected fault" in failed["churn-classifier"] and "churn-classifier" not in skipped
    else:
        assert "no schema available" in skipped["churn-classifier"]
    assert len(plan.changes) == 7, "the others are planned"


@pytest.mark.parametrize(("status", "synthesized"), [(400, True), (404, True), (409, True), (403, False),
                                                     (500, False)])
def test_an_endpoint_without_served_entities_gets_its_task_spec_whatever_openapi_answers(
        sandbox: Sandbox, status: int, synthesized: bool) -> None:
    """An Agent Bricks endpoint lists no served entity; what /openapi answers for it is not documented
    (research/databricks-real.md c4): a client error means "build it from the task", an auth or server error is
    still a failure with Databricks' message."""
    sandbox.databricks.faults.add(FaultRule(method="GET", path="mas-7f3c9e21-endpoint/openapi$", status=status,
                                            count=None))
    plan = sandbox.engine().plan()
    changes = {c.endpoint: c for c in plan.changes}
    if synthesized:
        assert "spec synthesized from task agent/v1/responses" in changes["mas-7f3c9e21-endpoint"].notes
    else:
        assert "mas-7f3c9e21-endpoint" in {f.endpoint for f in plan.failures}


def test_a_recursive_schema_is_broken_at_its_cycle_published_and_answers(sandbox: Sandbox) -> None:
    """APIM imports no recursive schema; the default pipeline cuts the cycle (the inner level becomes an untyped
    object) instead of failing the endpoint."""
    item, _ = sandbox.databricks.endpoint_and_spec("churn-classifier")
    assert item is not None
    tree = {"type": "object", "properties": {"label": {"type": "string"}, "children": {
        "type": "array", "items": {"$ref": "#/components/schemas/Tree"}}}}
    spec = {"openapi": "3.1.0", "info": {"title": "trees", "version": "1"},
            "paths": {"/served-models/churn_classifier-3/invocations": {"post": {
                "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
                    "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tree"}}}}}}},
                "responses": {"200": {"description": "Successful operation"}}}}},
            "components": {"schemas": {"Tree": tree}}}
    sandbox.databricks.set_spec("churn-classifier", json.dumps(spec))
    report = sandbox.engine().sync()
    assert report.ok and "churn-classifier" not in {f.endpoint for f in report.plan.failures}
    answer = call(sandbox, "serving/churn-classifier/invocations", {"inputs": [{"label": "root", "children": []}]})
    assert answer.status_code == 200, answer.text


def test_the_developer_portal_shows_what_databricks_knows(sandbox: Sandbox) -> None:
    """The API description names the served models and the task; the model's input example (Databricks puts it in
    the dataframe_split variant) becomes the request example as dataframe_records; endpoint tags become APIM tags
    when asked for (apis.endpoint_tags)."""
    settings = sandbox.settings(apis={"endpoint_tags": True})
    assert sandbox.engine(settings).sync().ok
    client = sandbox.apim.client()
    rg, svc = sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    churn = client.api.get(rg, svc, "dbx-churn-classifier")
    assert churn.description == ("Databricks Model Serving endpoint churn-classifier (custom model): "
                                 "churn_classifier-3 (main.ml.churn_classifier v3)")
    chat = client.api.get(rg, svc, "dbx-openai-chat")
    assert "(llm/v1/chat): gpt-4o-mini (external openai/gpt-4o-mini)" in chat.description
    (target,) = sandbox.engine(settings).verify_targets(["churn-classifier"])
    media = target.spec["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]
    assert media["example"] == {"dataframe_records": [{"age": 1, "tenure_months": 0.5, "plan": "text",
                                                       "extras": {}}]}
    assert call(sandbox, "serving/churn-classifier/invocations", media["example"]).status_code == 200
    tags = {t.name for t in client.tag.list_by_api(rg, svc, "dbx-churn-classifier")}
    assert "apim-sync-true" in tags
