"""Optional gateway policies (issue 16 §1, §2), through the emulated gateway to the emulated data plane.

- validate-content (Learn, "Validate content" policy): with action prevent in inbound, 400 and the "Public
  response" messages of its validation-errors table ("Body of the request does not conform to the definition ...",
  "Request's body is N bytes long and it exceeds the limit of M bytes.").
- llm-token-limit (Learn, "Limit large language model API token usage"): past tokens-per-minute, 429 with
  Retry-After; tokens counted from the backend's usage (estimate-prompt-tokens false).
- llm-emit-token-metric (Learn, "Emit metrics for consumption of large language model tokens"): the usage with the
  given dimensions; default dimensions (Subscription ID, API ID) need no value.
"""

from __future__ import annotations

from typing import Any

import requests

from apimsync.emulators.sandbox import DEMO_SP_ID, Sandbox

CHAT = {"messages": [{"role": "user", "content": "hello there, how are you today?"}]}


def call(box: Sandbox, endpoint: str, body: Any, **kwargs: Any) -> requests.Response:
    return requests.post(f"{box.apim.gateway_url}/serving/{endpoint}/invocations", json=body, timeout=30,
                         headers={"Ocp-Apim-Subscription-Key": box.apim.subscription_key},
                         verify=str(box.apim.ca_file), **kwargs)


def test_a_bad_payload_is_refused_at_the_gateway_with_validation_and_by_databricks_without(sandbox: Sandbox) -> None:
    bad = {"dataframe_records": "not a list"}
    assert sandbox.engine().sync().ok
    passed = call(sandbox, "churn-classifier", bad)
    assert passed.status_code == 400 and "error_code" in passed.json(), "Databricks refused it (and was called)"
    forwarded = sandbox.apim.stats()["gateway_calls"]["dbx-churn-classifier"]
    assert forwarded == 1

    settings = sandbox.settings(apis={"validate_requests": True, "max_request_bytes": 2048})
    report = sandbox.engine(settings).sync()
    assert report.ok and all("request validation" in c.notes for c in report.plan.changes)
    refused = call(sandbox, "churn-classifier", bad)
    assert refused.status_code == 400
    assert refused.json()["message"].startswith("Body of the request does not conform to the definition")
    too_big = call(sandbox, "churn-classifier", {"dataframe_records": [{"plan": "x" * 4000}]})
    assert too_big.status_code == 400 and "exceeds the limit of 2048 bytes" in too_big.json()["message"]
    assert sandbox.apim.stats()["gateway_calls"]["dbx-churn-classifier"] == forwarded, "neither reached Databricks"
    assert sandbox.engine(settings).verify().ok, "every valid request still reaches the model"


def test_the_token_limit_answers_429_once_the_minute_is_used_up_and_metrics_are_emitted(sandbox: Sandbox) -> None:
    settings = sandbox.settings(policy={**sandbox.config()["policy"],
                                        "llm": {"tokens_per_minute": 40, "emit_metrics": True}})
    report = sandbox.engine(settings).sync()
    notes = {c.endpoint: c.notes for c in report.plan.changes}
    assert {"LLM token limit 40/min", "LLM token metrics"} <= set(notes["openai-chat"])
    assert not any("LLM" in n for n in notes["churn-classifier"]), "custom models get no LLM policy"
    assert not any("LLM" in n for n in notes["openai-embeddings"]), "Learn lists chat and responses APIs only"
    statuses = []
    for _ in range(6):
        answer = call(sandbox, "openai-chat", CHAT)
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            assert int(answer.headers["Retry-After"]) > 0
            assert answer.json()["message"].startswith("Token limit is exceeded.")
            break
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    metrics = sandbox.apim.stats()["llm_metrics"]
    assert metrics and metrics[0]["dimensions"] == {"Subscription ID": "master", "API ID": "dbx-openai-chat",
                                                   "endpoint": "openai-chat", "model": "gpt-4o-mini"}
    assert all(m["total_tokens"] == m["prompt_tokens"] + m["completion_tokens"] for m in metrics)
    assert sandbox.engine(settings).verify(["churn-classifier"]).ok, "other APIs are not limited"


def test_policies_with_expressions_are_read_back_as_written_and_a_second_sync_writes_nothing(
        sandbox: Sandbox) -> None:
    """OpenAI routes, OAuth for every endpoint and both LLM policies put policy expressions (quoted strings) in
    attributes: written and read as xml, the second sync compares them equal; every API answers on both runs."""
    settings = sandbox.settings(policy={"llm": {"tokens_per_minute": 100000, "emit_metrics": True},
                                        "oauth": {"client_id": {"value": DEMO_SP_ID},
                                                  "client_secret": {"env": "APIMSYNC_DEMO_SP_SECRET"},
                                                  "all_endpoints": True}})
    first = sandbox.engine(settings).sync()
    assert first.ok
    assert sandbox.engine(settings).verify().ok
    sandbox.apim.reset_stats()
    second = sandbox.engine(settings).sync()
    assert second.ok and not second.plan.has_changes, [(c.api_id, c.reasons) for c in second.plan.changes
                                                       if c.reasons]
    assert sandbox.apim.stats()["writes"] == 0
    assert sandbox.engine(settings).verify().ok


def test_request_validation_takes_what_mlflow_takes_and_refuses_what_it_refuses(sandbox: Sandbox) -> None:
    """Every body of tests/data/payloads/corpus.json that MLflow accepts (verdicts.json) passes validate-content
    and is answered by the model; every one it refuses is refused at the gateway, before Databricks. Custom-model
    bodies that depend on a signature (dataframe fields) are left to test_the_data_plane_gives_mlflows_verdict."""
    import json
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "data" / "payloads"
    corpus = json.loads((data / "corpus.json").read_text(encoding="utf-8"))["payloads"]
    verdicts = json.loads((data / "verdicts.json").read_text(encoding="utf-8"))["verdicts"]
    for name, task in (("completer", "llm/v1/completions"), ("chat-agent", "agent/v2/chat")):
        sandbox.databricks.put_endpoint({"name": name, "id": f"{name}-id", "task": task, "state": {
            "ready": "READY", "config_update": "NOT_UPDATING"}, "config": {"served_entities": [{
                "name": f"{name}-1", "external_model": {"provider": "openai", "name": name}}]}})
    endpoints = {None: "churn-classifier", "llm/v1/chat": "openai-chat", "llm/v1/embeddings": "openai-embeddings",
                 "llm/v1/completions": "completer", "agent/v1/chat": "agents_main-dbdemos_rag_chatbot-dbdemos_rag_demo",
                 "agent/v2/chat": "chat-agent", "agent/v1/responses": "mas-7f3c9e21-endpoint"}
    settings = sandbox.settings(apis={"validate_requests": True})
    assert sandbox.engine(settings).sync().ok
    for entry in corpus:
        if entry["task"] is None and any(k.startswith(("dataframe", "instances", "inputs")) for k in entry["body"]
                                         if isinstance(entry["body"], dict)):
            continue  # depends on the model's signature
        answer = call(sandbox, endpoints[entry["task"]], entry["body"])
        if verdicts[entry["id"]]["accepted"]:
            assert answer.status_code == 200, (entry["id"], answer.text)
        else:
            assert answer.status_code == 400, (entry["id"], answer.text)
            assert answer.json().get("message", "").startswith("Body of the request does not conform"), \
                (entry["id"], answer.text)


def test_the_consumption_tier_has_no_token_limit_and_no_built_in_cache() -> None:
    """The service's SKU decides (ApiManagementServiceGetService.json: sku.name): on Consumption the plan refuses
    llm-token-limit with the reason before any write (the emulated ARM refuses the policy as Azure does), and the
    OAuth policy's token cache keeps nothing (a token request per call), which the plan notes."""
    from apimsync.emulators.sandbox import Sandbox as Box

    with Box(sku="Consumption") as box:
        limited = box.engine(box.settings(policy={**box.config()["policy"], "llm": {"tokens_per_minute": 1000}}))
        report = limited.sync()
        failed = {f.endpoint: f for f in report.plan.failures}
        assert "not available on the Consumption tier" in failed["openai-chat"].message
        assert "dbx-openai-chat" not in {str(a.name) for a in box.apim.client().api.list_by_service(
            box.apim.RESOURCE_GROUP, box.apim.SERVICE)}
        plain = box.engine().sync()
        assert plain.ok
        (ranker,) = [c for c in plain.plan.changes if c.endpoint == "ranker-route-optimized"]
        assert any("no built-in cache" in note for note in ranker.notes)
        before = box.databricks.data_plane.tokens_issued
        body = {"dataframe_records": [{"query": "q", "doc": "d"}]}
        for _ in range(3):
            answer = requests.post(f"{box.apim.gateway_url}/serving/ranker-route-optimized/invocations", json=body,
                                   headers={"Ocp-Apim-Subscription-Key": box.apim.subscription_key},
                                   verify=str(box.apim.ca_file), timeout=30)
            assert answer.status_code == 200, answer.text
        assert box.databricks.data_plane.tokens_issued - before == 3, "no cache: a token per call"
