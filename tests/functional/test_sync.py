"""The sync engine end to end: real SDK clients against the Databricks and APIM emulators."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import requests
from azure.mgmt.apimanagement.models import TagCreateUpdateParameters

from apimsync.arm import location_poller
from apimsync.changes import API_SETTINGS, POLICY, Action
from apimsync.emulators.sandbox import DEMO_TOKEN, DEMO_TOKEN_ENV, Sandbox


def owned_ids(box: Sandbox) -> set[str]:
    client = box.apim.client()
    return {a.name for a in client.api.list_by_service(box.apim.RESOURCE_GROUP, box.apim.SERVICE)}


def redeploy(box: Sandbox, name: str, spec: object) -> None:
    """A new deployment of the endpoint: a new version of its model (a registered version's signature is fixed, so
    a new spec comes with a new version), and so a new config version."""
    item, _ = box.databricks.endpoint_and_spec(name)
    assert item is not None
    item["config"]["config_version"] = int(item["config"].get("config_version") or 1) + 1
    for entity in item["config"].get("served_entities", []):
        entity["entity_version"] = str(int(entity.get("entity_version") or 1) + 1)
    box.databricks.put_endpoint(item, spec)


def test_first_sync_creates_every_api_with_policy_and_named_value(sandbox: Sandbox) -> None:
    report = sandbox.engine().sync()
    assert report.ok, report.failed
    created = {o.api_id for o in report.outcomes if o.action is Action.CREATE and o.ok}
    skipped = {s.endpoint for s in report.plan.skipped}
    assert created, "fixtures should produce APIs"
    assert skipped == {"fraud-scorer", "legacy-no-signature"}, \
        "NOT_READY and schema-less fixtures are skipped with a reason"
    assert all(s.reason for s in report.plan.skipped)
    client = sandbox.apim.client()
    rg, svc = sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    assert owned_ids(sandbox) == created
    for api_id in created:
        api = client.api.get(rg, svc, api_id)
        assert api.api_revision_description.startswith("apimsync:1 ")
        endpoint = api_id.removeprefix("dbx-")
        policy = client.api_policy.get(rg, svc, api_id, "policy", format="xml").value
        root = ET.fromstring(policy)
        header = root.find("./inbound/set-header[@name='Authorization']/value")
        assert header is not None
        if endpoint == "ranker-route-optimized":  # its own host, and an OAuth token the policy obtains
            assert api.service_url.startswith(sandbox.databricks.dedicated_url)
            assert header.text == '@("Bearer " + (string)context.Variables["databricks-token"])'
            continue
        assert api.service_url == f"{sandbox.databricks.url}/serving-endpoints/{endpoint}"
        assert header.text == "Bearer {{databricks-token-emulator}}"
        assert list(client.api_operation.list_by_api(rg, svc, api_id)), f"{api_id} has operations"
    nv = client.named_value.get(rg, svc, "databricks-token-emulator")
    assert nv.secret is True
    assert nv.value is None
    assert client.named_value.list_value(rg, svc, "databricks-token-emulator").value == DEMO_TOKEN
    # at most 2 writes per new API, plus the named values and the lock (created, taken, released), and the
    # listValue above (a POST: ARM counts it as a write)
    writes = sandbox.apim.stats()["writes"]
    assert writes <= 2 * len(created) + len(report.plan.named_values) + 3 + 1


def test_second_sync_is_all_noop_with_zero_writes(sandbox: Sandbox) -> None:
    assert sandbox.engine().sync().ok
    sandbox.apim.reset_stats()
    report = sandbox.engine().sync()
    assert report.ok
    assert not report.plan.has_changes
    assert {c.action for c in report.plan.changes} == {Action.NOOP}
    stats = sandbox.apim.stats()
    assert stats["writes"] == 0
    assert stats["deletes"] == 0


def test_spec_change_updates_only_that_api(sandbox: Sandbox) -> None:
    sandbox.engine().sync()
    name = next(n for n in sandbox.databricks.endpoint_names() if "chat" in n or "custom" in n)
    spec = json.loads(sandbox.workspace_client().serving_endpoints.get_open_api(name).contents.read())
    for item in spec["paths"].values():  # the model's signature changed
        item["post"]["requestBody"]["content"]["application/json"]["schema"]["description"] = "a new version"
    redeploy(sandbox, name, spec)
    report = sandbox.engine().sync()
    changed = [c for c in report.plan.changes if c.action is not Action.NOOP]
    # the description names the served model versions
    assert [(c.endpoint, c.reasons) for c in changed] == [(name, ("spec changed", "settings changed: description"))]
    assert report.ok


def test_settings_change_and_drift_are_repaired(sandbox: Sandbox) -> None:
    sandbox.engine().sync()
    settings = sandbox.settings(naming={"display_name": "Model {endpoint}"})
    report = sandbox.engine(settings).sync()
    assert report.ok
    # the spec's info.title carries the display name too (APIM takes it from the spec on import)
    assert all("settings changed" in " ".join(c.reasons) for c in report.plan.changes if c.action is Action.UPDATE)
    # someone edits an API's display name in the portal: the next sync repairs it
    client = sandbox.apim.client()
    rg, svc = sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    api_id = sorted(owned_ids(sandbox))[0]
    from azure.mgmt.apimanagement.models import ApiUpdateContract

    client.api.update(rg, svc, api_id, "*", ApiUpdateContract(display_name="edited by hand"))
    report = sandbox.engine(settings).sync()
    (change,) = [c for c in report.plan.changes if c.action is Action.UPDATE]
    assert change.api_id == api_id
    assert change.reasons[0].startswith("drift")
    assert client.api.get(rg, svc, api_id).display_name.startswith("Model ")


def test_policy_change_and_token_rotation(sandbox: Sandbox) -> None:
    sandbox.engine().sync()
    client = sandbox.apim.client()
    rg, svc = sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    report = sandbox.engine(env={DEMO_TOKEN_ENV: "dapi-rotated"}).sync()
    assert {n.name: n.reasons for n in report.plan.named_values if n.reasons} == {
        "databricks-token-emulator": ("value changed (token rotated)",)}
    assert client.named_value.list_value(rg, svc, "databricks-token-emulator").value == "dapi-rotated"
    assert not [c for c in report.plan.changes if c.action is not Action.NOOP]
    settings = sandbox.settings(policy={"template": "managed-identity-auth", "named_value": {
        "env": DEMO_TOKEN_ENV}})
    report = sandbox.engine(settings).sync()
    assert report.ok
    updated = [c for c in report.plan.changes if c.action is Action.UPDATE]
    assert updated
    # the policy, and the API's marker that records its hash (so a no-op need not read it)
    assert all(c.writes == (API_SETTINGS, POLICY) and c.reasons[-1].startswith("policy") for c in updated)
    policy = client.api_policy.get(rg, svc, updated[0].api_id, "policy", format="xml").value
    assert ET.fromstring(policy).find("./inbound/authentication-managed-identity") is not None


def test_prune_deletes_only_owned_apis_of_gone_endpoints(sandbox: Sandbox) -> None:
    sandbox.engine().sync()
    client = sandbox.apim.client()
    rg, svc = sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    from azure.mgmt.apimanagement.models import ApiCreateOrUpdateParameter

    client.api.begin_create_or_update(rg, svc, "hand-made", ApiCreateOrUpdateParameter(
        path="hand/made", display_name="hand made", protocols=["https"]), polling=location_poller(0.05)).result()
    names = sandbox.databricks.endpoint_names()
    gone = names[0]
    sandbox.databricks.remove_endpoint(gone)
    plan = sandbox.engine().plan()  # prune off by default
    assert not any(c.action is Action.DELETE for c in plan.changes)
    report = sandbox.engine().sync(prune=True)
    deleted = [c.api_id for c in report.plan.changes if c.action is Action.DELETE]
    assert report.ok
    assert len(deleted) <= 1
    assert "hand-made" in owned_ids(sandbox)
    # every endpoint gone: the empty-source guard keeps everything
    for n in sandbox.databricks.endpoint_names():
        sandbox.databricks.remove_endpoint(n)
    before = owned_ids(sandbox)
    report = sandbox.engine().sync(prune=True, force=True)
    assert report.plan.withheld
    assert owned_ids(sandbox) == before
    assert report.exit_code == 1


def test_id_collision_fails_both_before_any_write(sandbox: Sandbox) -> None:
    settings = sandbox.settings(naming={"api_id": "same-id", "path": "p/{endpoint}"})
    report = sandbox.engine(settings).sync()
    assert not report.ok
    assert all(f.stage == "naming" for f in report.plan.failures)
    assert sandbox.apim.stats()["apis"] == 0


def test_unimportable_spec_fails_that_endpoint_only(sandbox: Sandbox) -> None:
    name = sandbox.databricks.endpoint_names()[0]
    # an external $ref: no step can repair it (a recursive schema, the old example, is now cut by the pipeline)
    external = {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {"/invocations": {"post": {
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "other.json#/N"}}}},
        "responses": {"200": {"description": "ok"}}}}}}
    sandbox.databricks.set_spec(name, external)
    report = sandbox.engine().sync()
    failed = {f.endpoint: f for f in report.plan.failures}
    assert set(failed) == {name}
    assert failed[name].stage == "lint"
    assert any(o.ok for o in report.outcomes)
    assert report.exit_code == 1


def test_import_publishes_one_endpoint_and_never_prunes(sandbox: Sandbox) -> None:
    name = next(n for n in sandbox.databricks.endpoint_names())
    report = sandbox.engine().sync(only=name)
    assert [c.endpoint for c in report.plan.changes] == [name]
    assert report.ok
    assert len(owned_ids(sandbox)) == 1
    with pytest.raises(Exception, match="not found"):
        sandbox.engine().sync(only="no-such-endpoint")


def test_revision_strategy_releases_a_new_revision(sandbox: Sandbox) -> None:
    settings = sandbox.settings(update_strategy="revision")
    sandbox.engine(settings).sync()
    name = sandbox.databricks.endpoint_names()[0]
    spec = json.loads(sandbox.workspace_client().serving_endpoints.get_open_api(name).contents.read())
    for item in spec["paths"].values():  # the model's signature changed
        item["post"]["requestBody"]["content"]["application/json"]["schema"]["description"] = "v2"
    redeploy(sandbox, name, spec)
    sandbox.apim.journal.clear()
    report = sandbox.engine(settings).sync()
    assert report.ok, report.failed
    (outcome,) = [o for o in report.outcomes if o.action is Action.UPDATE]
    assert "release" in outcome.writes
    # the documented two steps: a clone with sourceApiId alone (ApiManagementCreateApiRevisionFromExistingApi.json),
    # then the import into it (az apim api import --api-revision)
    puts = [keys for method, path, keys in sandbox.apim.journal if method == "PUT" and path.endswith(";rev=2")]
    assert len(puts) == 2 and "sourceApiId" in puts[0] and "value" not in puts[0]
    assert "value" in puts[1] and "sourceApiId" not in puts[1]
    client = sandbox.apim.client()
    api = client.api.get(sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE, outcome.api_id)
    assert api.api_revision == "2"
    assert api.is_current
    assert not sandbox.engine(settings).plan().has_changes


def test_revision_strategy_keeps_working_across_releases_and_renames(sandbox: Sandbox) -> None:
    """Azure lists old revisions beside the current one: they must not count as a second owned API on the same
    path, the new revision cannot change the name ("Can't change property Name for non-current revision"), and
    revisions beyond the retention (one) are deleted."""
    settings = sandbox.settings(update_strategy="revision")
    assert sandbox.engine(settings).sync().ok
    name = "churn-classifier"
    rg, svc, client = sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE, sandbox.apim.client()
    for version in range(2, 5):
        spec = json.loads(sandbox.workspace_client().serving_endpoints.get_open_api(name).contents.read())
        post = spec["paths"]["/served-models/churn_classifier-3/invocations"]["post"]
        post["requestBody"]["content"]["application/json"]["schema"]["description"] = f"v{version}"
        sandbox.databricks.set_spec(name, spec)
        renamed = sandbox.settings(update_strategy="revision", naming={"display_name": f"{{endpoint}} v{version}"})
        report = sandbox.engine(renamed).sync()
        assert report.ok, report.failed
        api = client.api.get(rg, svc, f"dbx-{name}")
        assert (api.api_revision, api.display_name) == (str(version), f"{name} v{version}")
        revisions = sorted(int(r.api_revision) for r in client.api_revision.list_by_service(rg, svc, f"dbx-{name}"))
        assert revisions == [version - 1, version], "the current one and one before it"
        assert not sandbox.engine(renamed).plan().has_changes
    answer = requests.post(f"{sandbox.apim.gateway_url}/serving/{name}/invocations", verify=str(sandbox.apim.ca_file),
                           headers={"Ocp-Apim-Subscription-Key": sandbox.apim.subscription_key}, timeout=30,
                           json={"dataframe_records": [{"age": 1, "tenure_months": 2.0, "plan": "x", "extras": {}}]})
    assert answer.status_code == 200, "the released revision is what the gateway serves"


def test_one_spec_change_in_place_costs_one_write_and_converges(sandbox: Sandbox) -> None:
    """APIM takes info.title/description from an imported spec: the spec carries the API's own name and
    description, so a re-import leaves nothing for the next run to repair."""
    assert sandbox.engine().sync().ok
    spec = json.loads(sandbox.workspace_client().serving_endpoints.get_open_api("openai-chat").contents.read())
    spec["info"] = {"title": "A title from Databricks", "description": "A description from Databricks",
                    "version": "7"}
    item, _ = sandbox.databricks.endpoint_and_spec("openai-chat")
    sandbox.databricks.put_endpoint(item, spec)  # an external model's spec changes with Databricks, not its config
    sandbox.apim.reset_stats()
    report = sandbox.engine().sync(refresh=True)
    assert [(o.api_id, o.writes) for o in report.outcomes] == [("dbx-openai-chat", ("api",))]
    stats = sandbox.apim.stats()
    assert (stats["writes"], stats["deletes"]) == (1 + 2, 0), "the API import; the lock taken and released"
    api = sandbox.apim.client().api.get(sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE, "dbx-openai-chat")
    assert api.display_name == "openai-chat"
    sandbox.apim.reset_stats()
    assert not sandbox.engine().sync().plan.has_changes and sandbox.apim.stats()["writes"] == 0


def test_a_shared_tag_keeps_its_display_name(sandbox: Sandbox) -> None:
    client, rg, svc = sandbox.apim.client(), sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    client.tag.create_or_update(rg, svc, "ml-serving", TagCreateUpdateParameters(display_name="ML serving (team X)"))
    assert sandbox.engine(sandbox.settings(apis={"tags": ["ml-serving"]})).sync().ok
    assert client.tag.get(rg, svc, "ml-serving").display_name == "ML serving (team X)"


def test_products_and_tags_are_linked_once(sandbox: Sandbox) -> None:
    settings = sandbox.settings(apis={"products": ["starter"], "tags": ["ml-serving"]})
    report = sandbox.engine(settings).sync()
    assert report.ok, report.failed
    created = [o for o in report.outcomes if o.action is Action.CREATE]
    assert all(o.writes == ("api", "policy", "product:starter", "tag:ml-serving") for o in created)
    client = sandbox.apim.client()
    rg, svc = sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    in_product = {a.name for a in client.product_api.list_by_product(rg, svc, "starter")}
    tagged = {t.api.id.rsplit("/", 1)[-1] for t in client.api.list_by_tags(rg, svc) if t.tag.id == "/tags/ml-serving"}
    assert in_product == tagged == {o.api_id for o in created}
    sandbox.apim.reset_stats()
    again = sandbox.engine(settings).sync()
    assert not again.plan.has_changes
    assert sandbox.apim.stats()["writes"] == 0


def test_key_vault_named_value_is_a_reference(sandbox: Sandbox) -> None:
    kv = "https://my-vault.vault.azure.net/secrets/databricks-token"
    settings = sandbox.settings(policy={"named_value": {"name": "databricks-token", "key_vault": kv}, "oauth": None})
    report = sandbox.engine(settings).sync()
    assert report.ok, report.failed
    nv = sandbox.apim.client().named_value.get(sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE, "databricks-token")
    assert nv.secret is True and nv.key_vault.secret_identifier == kv
    assert not sandbox.engine(settings).plan().named_values[0].reasons
    moved = sandbox.settings(policy={"named_value": {"name": "databricks-token", "key_vault": kv + "-v2"},
                                     "oauth": None})
    assert sandbox.engine(moved).plan().named_values[0].reasons == ("Key Vault reference changed",)


def test_renaming_ids_moves_apis_deleting_first_to_free_their_paths(sandbox: Sandbox) -> None:
    assert sandbox.engine().sync().ok
    renamed = sandbox.settings(naming={"api_id": "ml-{endpoint}"}, prune={"enabled": True})
    plan = sandbox.engine(renamed).plan()
    assert plan.withheld and "max_delete_fraction" in plan.withheld[0]
    report = sandbox.engine(renamed).sync(force=True)
    assert report.ok, report.failed
    ids = owned_ids(sandbox)
    assert ids and all(i.startswith("ml-") for i in ids)
    assert not sandbox.engine(renamed).plan().has_changes


def test_colliding_paths_fail_both_endpoints(sandbox: Sandbox) -> None:
    settings = sandbox.settings(naming={"path": "serving/all"})
    report = sandbox.engine(settings).sync()
    assert {f.stage for f in report.plan.failures} == {"naming"}
    assert "path 'serving/all' is produced by several endpoints" in report.plan.failures[0].message
    assert sandbox.apim.stats()["writes"] == 0


def test_a_no_op_resync_fetches_no_spec_and_a_change_fetches_only_its_own(sandbox: Sandbox) -> None:
    """Each API's marker carries a fingerprint of what determined its spec (served models and versions, config
    version, task, tags, the configuration): an unchanged source is not fetched again."""
    assert sandbox.engine().sync().ok
    marker = sandbox.apim.client().api.get(sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE, "dbx-churn-classifier")
    assert " src=" in marker.api_revision_description
    routes = sandbox.databricks.stats()["by_route"]
    writes = sandbox.apim.stats()["writes"]
    again = sandbox.engine().sync()
    assert again.ok and not again.plan.has_changes and sandbox.apim.stats()["writes"] == writes
    after = sandbox.databricks.stats()["by_route"]
    assert after["list"] - routes["list"] == 1
    assert after["openapi"] - routes["openapi"] == 1, "only the endpoint without an API (no signature) is asked"
    # details: that endpoint, and the route-optimized one (its host is only in its details: Databricks' list
    # response has no endpoint_url, research/databricks.md §1.2)
    routed = [n for n in sandbox.databricks.endpoint_names()
              if (sandbox.databricks.endpoint_and_spec(n)[0] or {}).get("route_optimized")]
    assert after["get"] - routes["get"] == 1 + len(routed)
    # a new model version: only that endpoint's spec is fetched
    item, spec = sandbox.databricks.endpoint_and_spec("recommender-ab")
    assert item is not None and spec is not None
    item["config"]["served_entities"][0]["entity_version"] = "9"
    sandbox.databricks.put_endpoint(item, spec)
    before = sandbox.databricks.stats()["by_route"]["openapi"]
    changed = sandbox.engine().sync()
    assert changed.ok and sandbox.databricks.stats()["by_route"]["openapi"] - before == 2
    assert [c.endpoint for c in changed.plan.changes if c.action is Action.UPDATE] == ["recommender-ab"]
    # --refresh (and any configuration change) fetches everything again
    before = sandbox.databricks.stats()["by_route"]["openapi"]
    assert not sandbox.engine().plan(refresh=True).has_changes
    assert sandbox.databricks.stats()["by_route"]["openapi"] - before == 9


def test_a_token_that_cannot_be_read_fails_the_apis_that_need_it_and_writes_nothing(sandbox: Sandbox) -> None:
    """Named values are decided per API as it is planned (a sync streams its writes): every API whose policy reads
    the unreadable token fails with the reason and nothing of it is written; the route-optimized endpoint, whose
    policy reads the service principal's named values instead, is published."""
    settings = sandbox.settings(policy={"named_value": {"env": "APIMSYNC_TEST_TOKEN_NOT_SET"}})
    report = sandbox.engine(settings).sync()
    assert not report.ok
    assert report.plan.failures and {f.stage for f in report.plan.failures} == {"policy"}
    assert all("APIMSYNC_TEST_TOKEN_NOT_SET" in f.message for f in report.plan.failures), report.plan.failures[0]
    assert [(o.api_id, o.ok) for o in report.outcomes] == [("dbx-ranker-route-optimized", True)]
    assert owned_ids(sandbox) == {"dbx-ranker-route-optimized"}
    assert "databricks-token-emulator" not in {nv.name for nv in report.plan.named_values}


def test_a_pipeline_reading_the_config_version_sees_every_new_one(sandbox: Sandbox, tmp_path: Path) -> None:
    """The endpoint list reports no config version: a pipeline that reads ``{config_version}`` has each endpoint's
    details read (not its spec) on every run, so a new version (a traffic split, a workload size) reaches the
    published spec."""
    pipeline = tmp_path / "pipeline.yaml"
    shipped = (Path(__file__).resolve().parents[2] / "transforms" / "databricks-serving.yaml").read_text()
    pipeline.write_text(shipped.replace("  # - set-info: {title", "  - set-info: {title"))
    settings = sandbox.settings(pipeline=str(pipeline))
    assert sandbox.engine(settings).sync().ok
    before = sandbox.databricks.stats()["by_route"]
    assert not sandbox.engine(settings).plan().has_changes
    after = sandbox.databricks.stats()["by_route"]
    assert after["openapi"] - before["openapi"] == 1, "only the endpoint without an API"
    assert after["get"] - before["get"] >= 8, "the details of every published endpoint"
    item, spec = sandbox.databricks.endpoint_and_spec("churn-classifier")
    assert item is not None
    item["config"]["config_version"] = 7  # a new traffic split or workload size: same served models
    sandbox.databricks.put_endpoint(item, spec)
    report = sandbox.engine(settings).sync()
    assert [c.endpoint for c in report.plan.changes if c.action is Action.UPDATE] == ["churn-classifier"]
    published = sandbox.apim.client().api.get(sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE,
                                              "dbx-churn-classifier")
    assert published.api_version is None or "7" not in str(published.api_version)  # info.version is not a setting
    assert report.ok


def test_a_synthesized_spec_is_never_changed_by_a_build(tmp_path: Path) -> None:
    """Specs synthesized from a task share their parts with every other endpoint of that task: the pipeline works
    on a copy of them (only a fetched spec, used for one build alone, is transformed in place). A step limited to
    endpoint ``a`` must not reach ``b``."""
    from apimsync.config import settings_from_mapping
    from apimsync.desired import build
    from apimsync.endpoints import Endpoint, Fetched
    from apimsync.kinds import TASKS
    from apimsync.model import DesiredApi
    from apimsync.policy import load_template
    from apimsync.transform import load_pipeline

    settings = settings_from_mapping({"apim": {"subscription_id": "s", "resource_group": "r", "service": "a"},
                                      "workspaces": [{"name": "ws", "host": "https://adb-1.2.azuredatabricks.net"}]},
                                     origin="test")
    file = tmp_path / "pipeline.yaml"
    file.write_text("steps:\n  - jsonpath: {remove: \"$.paths['/invocations'].post.requestBody.content"
                    "['application/json'].schema.properties.top_k\"}\n    when: {endpoints: [a]}\n")
    pipeline = load_pipeline(str(file))
    template = load_template(settings.policy.template)[0]
    pristine = json.dumps(TASKS["llm/v1/chat"].spec("a"), sort_keys=True)
    published = {}
    for name in ("a", "b"):
        spec = TASKS["llm/v1/chat"].spec(name)
        assert spec is not None
        ep = Endpoint("ws", name, "https://adb-1.2.azuredatabricks.net", True, task="llm/v1/chat")
        built = build(Fetched(ep, spec=spec, synthesized=True), settings, pipeline, lambda _name: template)
        assert isinstance(built, DesiredApi) and built.spec_json, built
        published[name] = built.spec_json
    assert '"top_k"' not in published["a"] and '"top_k"' in published["b"]
    assert json.dumps(TASKS["llm/v1/chat"].spec("a"), sort_keys=True) == pristine
