"""Callable, not just published: real requests through the emulated APIM gateway to the emulated Databricks data
plane, answered by the model. Each emulator behaviour checked here cites the public source it follows."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.mgmt.apimanagement.models import NamedValueCreateContract, PolicyContract
from click.testing import CliRunner

from apimsync.arm import location_poller
from apimsync.cli import main
from apimsync.config import settings_from_mapping
from apimsync.emulators.sandbox import Sandbox, token_named_value

DATA = Path(__file__).resolve().parents[1] / "data"  # official examples, copied from shared/contracts


def call(box: Sandbox, path: str, body: Any, *, key: str | None = "default", **kwargs: Any) -> requests.Response:
    headers = {"Ocp-Apim-Subscription-Key": box.apim.subscription_key if key == "default" else key} if key else {}
    return requests.post(f"{box.apim.gateway_url}/{path}", json=body, headers=headers,
                         verify=str(box.apim.ca_file), timeout=30, **kwargs)


CHURN_ROW = {"age": 42, "tenure_months": 12.5, "plan": "pro", "extras": {}}


@pytest.fixture
def synced(sandbox: Sandbox) -> Sandbox:
    report = sandbox.engine().sync()
    assert report.ok, report.failed
    return sandbox


def test_every_published_api_answers_2xx_through_the_gateway(synced: Sandbox) -> None:
    report = synced.engine().verify()
    published = {o.api_id for o in synced.engine().plan().changes}
    assert {c.api_id for c in report.checks} == published and len(published) == 8
    assert report.ok, str(report)
    assert all(c.status == 200 and c.url.endswith("/invocations") for c in report.checks)
    # the model answered each one: the data plane counted one scored request per endpoint
    scored = Counter(key.split("/")[0] for key in synced.databricks.stats()["invocations"])
    assert set(scored) == {c.endpoint for c in report.checks}
    assert set(synced.apim.stats()["gateway_calls"]) == published


def test_the_answer_is_the_models(synced: Sandbox) -> None:
    answer = call(synced, "serving/churn-classifier/invocations", {"dataframe_records": [CHURN_ROW, CHURN_ROW]})
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2
    chat = call(synced, "serving/openai-chat/invocations", {"messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["role"] == "assistant"
    assert chat.json()["usage"]["total_tokens"] > 0


def test_a_bad_payload_gets_the_databricks_400_through_the_gateway(synced: Sandbox) -> None:
    # MLflow's scoring server answers {"error_code": "BAD_REQUEST", "message": "The input must be a JSON dictionary
    # with exactly one of the input fields ..."} (mlflow/pyfunc/scoring_server/__init__.py)
    wrong_format = call(synced, "serving/churn-classifier/invocations", {"rows": [CHURN_ROW]})
    assert wrong_format.status_code == 400
    assert wrong_format.json()["error_code"] == "BAD_REQUEST"
    assert "exactly one of the input fields" in wrong_format.json()["message"]
    missing_column = call(synced, "serving/churn-classifier/invocations", {"dataframe_records": [{"age": 1}]})
    assert missing_column.status_code == 400 and "tenure_months" in missing_column.json()["message"]


def test_subscription_keys_are_enforced_as_apim_does(synced: Sandbox) -> None:
    # bodies and messages: MicrosoftDocs/SupportArticles-docs, api-mgmt "unauthorized-errors-invoke-apis";
    # header Ocp-Apim-Subscription-Key, query subscription-key (Learn, "Subscriptions in API Management")
    body = {"dataframe_records": [CHURN_ROW]}
    missing = call(synced, "serving/churn-classifier/invocations", body, key=None)
    assert missing.status_code == 401
    assert missing.json() == {"statusCode": 401, "message": "Access denied due to missing subscription key. Make "
                              "sure to include subscription key when making requests to an API."}
    wrong = call(synced, "serving/churn-classifier/invocations", body, key="not-a-key")
    assert wrong.status_code == 401 and "invalid subscription key" in wrong.json()["message"]
    by_query = call(synced, f"serving/churn-classifier/invocations?subscription-key={synced.apim.subscription_key}",
                    body, key=None)
    assert by_query.status_code == 200
    nothing_there = call(synced, "serving/churn-classifier/no-such-operation", body)
    assert nothing_there.status_code == 404 and nothing_there.json()["message"] == "Resource not found"
    assert call(synced, "no-such-api/invocations", body).status_code == 404


def test_a_wrong_token_in_the_named_value_is_a_credential_failure(synced: Sandbox) -> None:
    client = synced.apim.client()
    client.named_value.begin_create_or_update(
        synced.apim.RESOURCE_GROUP, synced.apim.SERVICE, token_named_value(),
        NamedValueCreateContract(display_name=token_named_value(), value="dapi-of-another-workspace", secret=True),
        polling=location_poller(0.02)).result()
    refused = call(synced, "serving/churn-classifier/invocations", {"dataframe_records": [CHURN_ROW]})
    # an unknown token: 403 {"error_code": 403, "message": "Invalid access token."} (databricks-sdk-go issue 873)
    assert refused.status_code == 403 and refused.json()["message"] == "Invalid access token."
    report = synced.engine().verify()
    assert not report.ok and report.exit_code == 1
    by_diagnosis = {c.api_id: c.diagnosis for c in report.checks}
    assert by_diagnosis.pop("dbx-ranker-route-optimized") == "ok", "OAuth: the token named value is not used"
    assert set(by_diagnosis.values()) == {"credential"}


def test_managed_identity_policy_reaches_the_model_only_when_registered(sandbox: Sandbox) -> None:
    settings = sandbox.settings(policy={"template": "managed-identity-auth"})
    assert sandbox.engine(settings).sync().ok
    assert sandbox.engine(settings).verify().ok
    sandbox.databricks.identities.entra_apps.clear()  # the identity is no longer a service principal there
    checks = sandbox.engine(settings).verify().checks
    # the route-optimized endpoint uses the service principal's OAuth token, not the managed identity
    assert {(c.status, c.diagnosis) for c in checks if c.api_id != "dbx-ranker-route-optimized"} == {
        (403, "credential")}


def test_the_traffic_split_is_honoured_on_invocations(synced: Sandbox) -> None:
    body = {"dataframe_records": [{"user_id": "u1", "item_count": 3}]}
    first = call(synced, "serving/recommender-ab/invocations", body)
    assert first.status_code == 200, first.text
    for _ in range(99):
        assert call(synced, "serving/recommender-ab/invocations", body).status_code == 200
    served = synced.databricks.stats()["invocations"]
    routes = dict(synced.databricks.traffic(synced.databricks.endpoint_and_spec("recommender-ab")[0] or {}))
    assert {k.split("/")[1]: v for k, v in served.items() if k.startswith("recommender-ab/")} == routes


def test_a_new_model_version_keeps_the_published_url(synced: Sandbox) -> None:
    """The served entity is renamed by a new deployment: the published operation keeps its name and URL (only the
    description, which names the served models, is updated), and /invocations answers from the new version."""
    item, spec = synced.databricks.endpoint_and_spec("churn-classifier")
    assert item is not None and spec is not None
    item = json.loads(json.dumps(item))
    item["config"]["served_entities"][0]["name"] = "churn_classifier-4"
    item["config"]["config_version"] = 2
    synced.databricks.put_endpoint(item, spec.replace("churn_classifier-3", "churn_classifier-4"))
    client = synced.apim.client()
    rg, svc = synced.apim.RESOURCE_GROUP, synced.apim.SERVICE
    before = [(o.name, o.url_template) for o in client.api_operation.list_by_api(rg, svc, "dbx-churn-classifier")]
    report = synced.engine().sync()
    assert report.ok
    (change,) = [c for c in report.plan.changes if c.endpoint == "churn-classifier"]
    assert change.reasons == ("spec changed", "settings changed: description"), "the description names the version"
    assert "churn_classifier-4" in client.api.get(rg, svc, "dbx-churn-classifier").description
    assert [(o.name, o.url_template) for o in client.api_operation.list_by_api(
        rg, svc, "dbx-churn-classifier")] == before == [("invoke", "/invocations")]
    answer = call(synced, "serving/churn-classifier/invocations", {"dataframe_records": [CHURN_ROW]})
    assert answer.status_code == 200
    assert "churn-classifier/churn_classifier-4" in synced.databricks.stats()["invocations"]


def test_an_unimplemented_policy_element_fails_loudly(synced: Sandbox) -> None:
    policy = ("<policies><inbound><base /><rate-limit calls=\"5\" renewal-period=\"60\" /></inbound>"
              "<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>")
    synced.apim.client().api_policy.create_or_update(synced.apim.RESOURCE_GROUP, synced.apim.SERVICE,
                                                     "dbx-churn-classifier", "policy",
                                                     PolicyContract(value=policy, format="rawxml"))
    answer = call(synced, "serving/churn-classifier/invocations", {"dataframe_records": [CHURN_ROW]})
    assert answer.status_code == 500 and "<rate-limit>" in answer.json()["message"]


def test_route_optimized_endpoints_take_only_oauth_tokens_on_their_own_host(sandbox: Sandbox) -> None:
    """Databricks docs, "Query route-optimized serving endpoints": a dedicated URL
    <id>.<n>.serving.azuredatabricks.net/<workspace-id>/serving-endpoints/<name>/invocations; "Personal access
    tokens are not supported"; tokens from POST /oidc/v1/token (client_credentials, scope all-apis,
    authorization_details naming serving-endpoints by id with the action query_inference_endpoint)."""
    db = sandbox.databricks
    detail = requests.get(f"{db.url}/api/2.0/serving-endpoints/ranker-route-optimized",
                          headers={"Authorization": f"Bearer {db.token}"}, timeout=10).json()
    url = detail["endpoint_url"]
    assert url == detail["data_plane_info"]["query_info"]["endpoint_url"]
    assert url.startswith(db.dedicated_url) and url.endswith("/serving-endpoints/ranker-route-optimized/invocations")
    body = {"dataframe_records": [{"query": "q", "doc": "d"}]}
    with_pat = requests.post(url, json=body, headers={"Authorization": f"Bearer {db.token}"}, timeout=10)
    assert with_pat.status_code == 401 and "personal access tokens" in with_pat.json()["message"]
    db.identities.service_principals["sp-client"] = "sp-secret"
    scoped = json.loads(detail["data_plane_info"]["query_info"]["authorization_details"])
    basic = base64.b64encode(b"sp-client:sp-secret").decode()
    minted = requests.post(f"{db.url}/oidc/v1/token", headers={"Authorization": f"Basic {basic}"}, timeout=10, data={
        "grant_type": "client_credentials", "scope": "all-apis", "authorization_details": json.dumps(scoped)})
    assert minted.status_code == 200 and minted.json()["token_type"] == "Bearer"
    assert minted.json()["expires_in"] == 3600  # "Each access token is valid for one hour" (OAuth M2M docs)
    token = minted.json()["access_token"]
    answer = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    # the token is scoped: not valid for another endpoint, and the workspace host does not serve this endpoint
    other = requests.post(f"{db.url}/serving-endpoints/churn-classifier/invocations", timeout=10,
                          json={"dataframe_records": [CHURN_ROW]}, headers={"Authorization": f"Bearer {token}"})
    assert other.status_code == 403
    wrong_secret = requests.post(f"{db.url}/oidc/v1/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": "sp-client", "client_secret": "nope"})
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"


def test_route_optimized_without_a_service_principal_is_skipped_not_published_uncallable(sandbox: Sandbox) -> None:
    config = sandbox.config()
    del config["policy"]["oauth"]
    engine = sandbox.engine(settings_from_mapping(config))
    engine.sync()
    skipped = {s.endpoint: s.reason for s in engine.plan().skipped}
    assert "configure policy.oauth" in skipped["ranker-route-optimized"]
    # published by hand with the workspace PAT policy, it would be refused: that is what the skip prevents
    names = [a.name for a in sandbox.apim.client().api.list_by_service(sandbox.apim.RESOURCE_GROUP,
                                                                       sandbox.apim.SERVICE)]
    assert "dbx-ranker-route-optimized" not in names and len(names) == 7


def test_route_optimized_is_called_with_an_oauth_token_the_gateway_obtains_and_caches(synced: Sandbox) -> None:
    """The shipped oauth-service-principal template: a client-credentials token from the workspace's
    /oidc/v1/token (basic auth with the client id and secret named values), scoped to this endpoint's id by
    authorization_details, cached for 50 minutes (tokens live 60), sent to the endpoint's own host."""
    db = synced.databricks
    body = {"dataframe_records": [{"query": "q", "doc": "d"}]}
    before = db.data_plane.tokens_issued
    answers = [call(synced, "serving/ranker-route-optimized/invocations", body) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
    assert db.data_plane.tokens_issued - before <= 1, "one token for several calls: it is cached"
    assert synced.databricks.stats()["invocations"].get("ranker-route-optimized/ranker-2", 0) >= 3
    policy = synced.apim.client().api_policy.get(synced.apim.RESOURCE_GROUP, synced.apim.SERVICE,
                                                 "dbx-ranker-route-optimized", "policy").value
    assert "{{databricks-sp-secret-emulator}}" in policy and "Bearer {{" not in policy
    # a wrong secret: Databricks refuses the client; the policy's JObject lookup of access_token gives null, so
    # the endpoint gets "Bearer " and answers 401, which verify reports as the credential
    client = synced.apim.client()
    client.named_value.begin_create_or_update(
        synced.apim.RESOURCE_GROUP, synced.apim.SERVICE, "databricks-sp-secret-emulator",
        NamedValueCreateContract(display_name="databricks-sp-secret-emulator", value="wrong", secret=True),
        polling=location_poller(0.02)).result()
    synced.apim.gateway.clear_cache()
    refused = call(synced, "serving/ranker-route-optimized/invocations", body)
    assert refused.status_code == 401 and "error_code" in refused.json()
    checks = {c.endpoint: c for c in synced.engine().verify().checks}
    assert checks["ranker-route-optimized"].diagnosis == "credential"


def test_arm_reads_the_gateway_url_and_the_all_access_key(synced: Sandbox) -> None:
    """What verify reads; the shapes of these answers are held to the official examples in test_conformance.py."""
    rg, svc = synced.apim.RESOURCE_GROUP, synced.apim.SERVICE
    client = synced.apim.client()
    assert client.api_management_service.get(rg, svc).gateway_url == synced.apim.gateway_url
    keys = client.subscription.list_secrets(rg, svc, "master")
    assert keys.primary_key == synced.apim.subscription_key and keys.secondary_key
    # keys never appear in a GET of the subscription (definitions.json: "Use '/listSecrets' POST request")
    sub = client.subscription.get(rg, svc, "master")
    assert sub.primary_key is None and sub.display_name == "Built-in all-access subscription"


def test_verify_cli_exit_codes_and_the_key_is_never_printed(synced: Sandbox, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "apimsync.yaml"
    config.write_text(synced.config_yaml(), encoding="utf-8")
    env = synced.env()
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "APIMSYNC_DEMO_TOKEN", "APIMSYNC_DEMO_SP_SECRET"):
        monkeypatch.setenv(name, env[name])
    result = CliRunner().invoke(main, ["verify", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "Verified 8 of 8" in result.stdout and synced.apim.subscription_key not in result.output
    result = CliRunner().invoke(main, ["-o", "json", "verify", "--config", str(config), "churn-classifier"])
    assert result.exit_code == 0 and [c["endpoint"] for c in json.loads(result.stdout)["checks"]] == [
        "churn-classifier"]
    result = CliRunner().invoke(main, ["verify", "--config", str(config), "--subscription-key", "wrong"])
    assert result.exit_code == 1 and "subscription key" in result.stdout
    result = CliRunner().invoke(main, ["verify", "--config", str(config), "no-such-endpoint"])
    assert result.exit_code == 2 and "no-such-endpoint" in result.output


def test_verify_reports_an_endpoint_that_is_not_published_yet(sandbox: Sandbox) -> None:
    report = sandbox.engine().verify()
    assert report.exit_code == 1 and {c.diagnosis for c in report.checks} == {"not published"}


def test_a_product_scoped_key_opens_only_that_products_apis(sandbox: Sandbox) -> None:
    """Learn, "Subscriptions in Azure API Management": a product's subscription key is valid for the APIs in that
    product only; apimsync's products setting decides which APIs a team's key reaches."""
    settings = sandbox.settings(apis={**sandbox.config()["apis"], "products": ["starter"]})
    assert sandbox.engine(settings).sync().ok
    client, rg, svc = sandbox.apim.client(), sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    client.product_api.delete(rg, svc, "starter", "dbx-openai-embeddings")  # one API left out of the product
    key = sandbox.apim.add_subscription("team-a", "/products/starter")
    body = {"messages": [{"role": "user", "content": "hi"}]}
    inside = requests.post(f"{sandbox.apim.gateway_url}/serving/openai-chat/invocations", json=body, timeout=30,
                           headers={"Ocp-Apim-Subscription-Key": key}, verify=str(sandbox.apim.ca_file))
    outside = requests.post(f"{sandbox.apim.gateway_url}/serving/openai-embeddings/invocations", timeout=30,
                            json={"input": "hi"}, headers={"Ocp-Apim-Subscription-Key": key},
                            verify=str(sandbox.apim.ca_file))
    assert inside.status_code == 200, inside.text
    assert outside.status_code == 401 and "invalid subscription key" in outside.json()["message"]
