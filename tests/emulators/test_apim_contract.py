"""The APIM emulator against the ARM contract, driven by the real azure-mgmt-apimanagement client over HTTPS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.apimanagement.models import (
    ApiCreateOrUpdateParameter,
    ApiReleaseContract,
    KeyVaultContractCreateProperties,
    NamedValueCreateContract,
    PolicyContract,
    TagCreateUpdateParameters,
)

from apimsync.arm import location_poller
from apimsync.emulators._server import FaultRule
from apimsync.emulators.apim import ApimEmulator, Throttle
from apimsync.emulators.latency import lro_only

CONTRACTS = Path(__file__).resolve().parents[1] / "data"  # copied from shared/contracts/apim-2024-05-01/examples
SPEC = {"openapi": "3.0.3", "info": {"title": "Echo", "version": "1", "description": "echo api"},
        "servers": [{"url": "https://backend.example.com/v1"}],
        "paths": {"/echo": {"post": {"operationId": "Echo It", "summary": "Echo",
                                     "responses": {"200": {"description": "ok"}}}},
                  "/items/{id}": {"get": {"parameters": [{"name": "id", "in": "path", "required": True,
                                                          "schema": {"type": "string"}}],
                                          "responses": {"200": {"description": "ok"}}}}}}


def poll() -> object:
    """A fresh Location poller for each operation (the SDK's default poller fails on APIM, by design)."""
    return location_poller(0.02)


@pytest.fixture
def emu() -> Iterator[ApimEmulator]:
    with ApimEmulator(latency=lro_only(0.05)) as emulator:
        yield emulator


def body(path: str = "echo", spec: dict | None = None, **props: object) -> ApiCreateOrUpdateParameter:
    return ApiCreateOrUpdateParameter(format="openapi+json", value=json.dumps(spec or SPEC), path=path,
                                      protocols=["https"], **props)


def create(emu: ApimEmulator, api_id: str = "echo", **kw: object) -> object:
    c = emu.client()
    return c.api.begin_create_or_update(emu.RESOURCE_GROUP, emu.SERVICE, api_id, body(**kw), polling=poll()).result()


def raw(emu: ApimEmulator, method: str, path: str, json_body: object = None) -> requests.Response:
    """A plain HTTPS call with a bearer token, for what the SDK hides (status codes, headers)."""
    return requests.request(method, emu.url + emu.arm_id(path) + "?api-version=2024-05-01", json=json_body,
                            headers={"Authorization": "Bearer t"}, verify=str(emu.ca_file), timeout=10)


def test_create_is_long_running_like_the_contract_example(emu: ApimEmulator) -> None:
    example = json.loads((CONTRACTS / "ApiManagementCreateApiUsingOai3Import.json").read_text())
    assert set(example["responses"]) == {"201", "200"}
    resp = raw(emu, "PUT", "apis/echo", {"properties": {"format": "openapi+json", "value": json.dumps(SPEC),
                                                        "path": "echo"}})
    assert resp.status_code == 201
    assert "asyncId=" in resp.headers["Location"] and "asyncCode=201" in resp.headers["Location"]
    assert "/tenant/operationResults/" in resp.headers["Azure-AsyncOperation"]
    assert resp.json()["properties"]["provisioningState"] == "InProgress"
    assert raw(emu, "GET", "apis/echo").status_code == 404, "not visible before the operation completes"
    polled = requests.get(resp.headers["Location"], headers={"Authorization": "Bearer t"}, verify=str(emu.ca_file))
    assert polled.status_code == 202
    result = requests.get(resp.headers["Azure-AsyncOperation"], headers={"Authorization": "Bearer t"},
                          verify=str(emu.ca_file)).json()
    assert "status" not in result and result["properties"]["status"] in ("InProgress", "Succeeded")


def test_create_update_get_head_and_operations(emu: ApimEmulator) -> None:
    c, rg, svc = emu.client(), emu.RESOURCE_GROUP, emu.SERVICE
    api = create(emu, service_url="https://override.example.com", display_name="Echo API")
    assert api.path == "echo" and api.service_url == "https://override.example.com"
    assert api.display_name == "Echo API" and api.api_revision == "1" and api.is_current
    got, etag = c.api.get(rg, svc, "echo", cls=lambda _r, b, h: (b, h["ETag"]))
    assert etag.startswith('"') and got.description == "echo api"
    assert c.api.get_entity_tag(rg, svc, "echo") is True
    ops = {o.name: (o.method, o.url_template, o.display_name) for o in c.api_operation.list_by_api(rg, svc, "echo")}
    assert ops == {"echo-it": ("POST", "/echo", "Echo"), "get-items-id": ("GET", "/items/{id}", "get-items-id")}
    # re-import without /items: the unmatched operation is deleted, the matched one kept
    smaller = {**SPEC, "paths": {"/echo": SPEC["paths"]["/echo"]}}
    poller = c.api.begin_create_or_update(rg, svc, "echo", body(spec=smaller), if_match=etag, polling=poll())
    assert poller.result().path == "echo"
    assert [o.name for o in c.api_operation.list_by_api(rg, svc, "echo")] == ["echo-it"]
    assert c.api.get(rg, svc, "echo", cls=lambda _r, _b, h: h["ETag"]) != etag


def test_list_paging_and_filter(emu: ApimEmulator) -> None:
    c, rg, svc = emu.client(), emu.RESOURCE_GROUP, emu.SERVICE
    pollers = [c.api.begin_create_or_update(rg, svc, f"api-{i:03d}", ApiCreateOrUpdateParameter(
        path=f"p/{i}", display_name=f"API {i}", protocols=["https"]), polling=poll()) for i in range(120)]
    for p in pollers:
        p.result()
    names = [a.name for a in c.api.list_by_service(rg, svc)]
    assert len(names) == 120 == len(set(names))
    first_page = raw(emu, "GET", "apis").json()
    assert len(first_page["value"]) == 100 and "$skip=100" in first_page["nextLink"]
    assert [a.name for a in c.api.list_by_service(rg, svc, filter="name eq 'api-007'")] == ["api-007"]
    assert len(list(c.api.list_by_service(rg, svc, filter="startswith(name,'api-11')"))) == 10
    assert len(list(c.api.list_by_service(rg, svc, top=5))) == 120  # paged through nextLink


def test_etags_if_match_and_delete(emu: ApimEmulator) -> None:
    c, rg, svc = emu.client(), emu.RESOURCE_GROUP, emu.SERVICE
    create(emu)
    with pytest.raises(HttpResponseError) as info:
        c.api.begin_delete(rg, svc, "echo", if_match='"stale"', polling=poll()).result()
    assert info.value.status_code == 412
    etag = c.api.get(rg, svc, "echo", cls=lambda _r, _b, h: h["ETag"])
    c.api.begin_delete(rg, svc, "echo", if_match=etag, delete_revisions=True, polling=poll()).result()
    with pytest.raises(ResourceNotFoundError):
        c.api.get(rg, svc, "echo")


def test_path_is_unique_in_the_service(emu: ApimEmulator) -> None:
    create(emu, "one")
    with pytest.raises(HttpResponseError) as info:
        create(emu, "two")
    assert info.value.status_code == 400 and "same Path 'echo'" in str(info.value)


def test_write_during_a_running_operation_is_a_conflict() -> None:
    with ApimEmulator(latency=lro_only(1.0)) as emu:
        c, rg, svc = emu.client(), emu.RESOURCE_GROUP, emu.SERVICE
        c.api.begin_create_or_update(rg, svc, "echo", body(), polling=False)
        create_again = raw(emu, "PUT", "apis/echo", {"properties": {"path": "echo"}})
        assert create_again.status_code == 409
        assert create_again.json()["error"]["code"] == "PessimisticConcurrencyConflict"


def _until_written(c: Any, rg: str, svc: str, name: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            c.named_value.get(rg, svc, name)
            return
        except ResourceNotFoundError:
            time.sleep(0.02)
    raise AssertionError(f"named value {name} was never written")


def test_named_value_polling_bug_and_its_workaround(emu: ApimEmulator) -> None:
    c, rg, svc = emu.client(), emu.RESOURCE_GROUP, emu.SERVICE
    contract = NamedValueCreateContract(display_name="token", value="s3cret", secret=True, tags=["a"])
    with pytest.raises(HttpResponseError, match="No status found in body"):
        c.named_value.begin_create_or_update(rg, svc, "token", contract).result()  # SDK 5.0.0, as against Azure
    _until_written(c, rg, svc, "token")  # a second write while the first runs would be refused (409)
    nv = c.named_value.begin_create_or_update(rg, svc, "token", contract, polling=poll()).result()
    assert nv.secret is True and nv.value is None
    assert all(item.value is None for item in c.named_value.list_by_service(rg, svc))
    assert c.named_value.list_value(rg, svc, "token").value == "s3cret"
    kv = "https://vault.vault.azure.net/secrets/t"
    ref = c.named_value.begin_create_or_update(rg, svc, "kv", NamedValueCreateContract(
        display_name="kv", secret=True, key_vault=KeyVaultContractCreateProperties(secret_identifier=kv)),
        polling=poll()).result()
    assert ref.key_vault.secret_identifier == kv and ref.key_vault.last_status.code == "Success"


def test_policies_are_checked_and_reserialised(emu: ApimEmulator) -> None:
    c, rg, svc = emu.client(), emu.RESOURCE_GROUP, emu.SERVICE
    create(emu)
    xml = ("<policies>\n  <inbound>\n    <base />\n    <set-header name=\"Authorization\">"
           "<value>Bearer {{token}}</value></set-header>\n  </inbound>\n</policies>")
    with pytest.raises(HttpResponseError) as info:
        c.api_policy.create_or_update(rg, svc, "echo", "policy", PolicyContract(value=xml, format="rawxml"))
    assert info.value.status_code == 400 and "Cannot find a property 'token'" in str(info.value)
    c.named_value.begin_create_or_update(rg, svc, "token", NamedValueCreateContract(
        display_name="token", value="v", secret=True), polling=poll()).result()
    c.api_policy.create_or_update(rg, svc, "echo", "policy", PolicyContract(value=xml, format="rawxml"))
    stored = c.api_policy.get(rg, svc, "echo", "policy", format="rawxml").value
    assert "\r\n\t" in stored and "{{token}}" in stored
    with pytest.raises(HttpResponseError) as info:
        c.api_policy.create_or_update(rg, svc, "echo", "policy", PolicyContract(value="<policies><in>",
                                                                                format="rawxml"))
    assert info.value.status_code == 400 and "line 1" in str(info.value)
    etag = c.api_policy.get_entity_tag(rg, svc, "echo", "policy")
    assert etag is True
    c.api_policy.delete(rg, svc, "echo", "policy", if_match="*")
    with pytest.raises(ResourceNotFoundError):
        c.api_policy.get(rg, svc, "echo", "policy")
    c.api_policy.create_or_update(rg, svc, "echo", "policy", PolicyContract(value=xml, format="rawxml"))
    with pytest.raises(HttpResponseError, match="in use by a policy"):
        c.named_value.delete(rg, svc, "token", if_match="*")


def test_tags_products_revisions_and_releases(emu: ApimEmulator) -> None:
    c, rg, svc = emu.client(), emu.RESOURCE_GROUP, emu.SERVICE
    create(emu)
    c.tag.create_or_update(rg, svc, "ml", TagCreateUpdateParameters(display_name="Machine learning"))
    c.tag.assign_to_api(rg, svc, "echo", "ml")
    # ApiManagementListApisByTags.json: ids are "/tags/{tagId}" and "/apis/{apiId}"; "name" is the display name
    assert [(t.tag.id, t.tag.name, t.api.id, t.api.name) for t in c.api.list_by_tags(rg, svc)] == [
        ("/tags/ml", "Machine learning", "/apis/echo", c.api.get(rg, svc, "echo").display_name)]
    c.product_api.create_or_update(rg, svc, "starter", "echo")
    assert [a.name for a in c.product_api.list_by_product(rg, svc, "starter")] == ["echo"]
    rev = c.api.begin_create_or_update(rg, svc, "echo;rev=2", ApiCreateOrUpdateParameter(
        source_api_id=emu.arm_id("apis", "echo"), format="openapi+json", value=json.dumps(SPEC), path="echo",
        api_revision_description="second"), polling=poll()).result()
    assert rev.api_revision == "2" and not rev.is_current
    assert c.api.get(rg, svc, "echo").api_revision == "1"
    c.api_release.create_or_update(rg, svc, "echo", "r2", ApiReleaseContract(
        api_id=emu.arm_id("apis", "echo") + ";rev=2", notes="go"))
    current = c.api.get(rg, svc, "echo")
    assert current.api_revision == "2" and current.api_revision_description == "second"
    # the listing returns every revision, as Azure does; isCurrent eq true (Api_ListByService $filter) the current
    assert sorted(a.name for a in c.api.list_by_service(rg, svc)) == ["echo", "echo;rev=1"]
    assert [a.name for a in c.api.list_by_service(rg, svc, filter="isCurrent eq true")] == ["echo"]


def test_a_new_revision_cannot_change_name_or_description(emu: ApimEmulator) -> None:
    """"Can't change property Name for non-current revision" (azure-powershell#9270; Description: apiops#285):
    also when the imported spec's info.title says otherwise, since APIM takes the name from the spec."""
    c, rg, svc = emu.client(), emu.RESOURCE_GROUP, emu.SERVICE
    create(emu)
    for change in ({"display_name": "Renamed"}, {"value": json.dumps({**SPEC, "info": {**SPEC["info"],
                                                                                      "title": "Other"}})}):
        with pytest.raises(HttpResponseError, match="non-current revision"):
            c.api.begin_create_or_update(rg, svc, "echo;rev=2", ApiCreateOrUpdateParameter(**{
                "source_api_id": emu.arm_id("apis", "echo"), "format": "openapi+json", "value": json.dumps(SPEC),
                "path": "echo", **change}), polling=poll()).result()


def test_limits_azure_enforces(emu: ApimEmulator) -> None:
    """definitions.json: apiRevisionDescription maxLength 256; TagIdParameter 1-80, no *#&+:<>?; tag displayName
    1-160; NamedValueEntityBaseParameters.tags maxItems 32."""
    c, rg, svc = emu.client(), emu.RESOURCE_GROUP, emu.SERVICE
    with pytest.raises(HttpResponseError, match="apiRevisionDescription"):
        c.api.begin_create_or_update(rg, svc, "long", ApiCreateOrUpdateParameter(
            path="long", display_name="Long", api_revision_description="x" * 257), polling=poll()).result()
    with pytest.raises(HttpResponseError, match="Tag identifier"):
        c.tag.create_or_update(rg, svc, "x" * 81, TagCreateUpdateParameters(display_name="x"))
    with pytest.raises(HttpResponseError, match="displayName"):
        c.tag.create_or_update(rg, svc, "ok", TagCreateUpdateParameters(display_name="y" * 161))
    with pytest.raises(HttpResponseError, match="32 tags"):
        c.named_value.begin_create_or_update(rg, svc, "nv", NamedValueCreateContract(
            display_name="nv", value="v", tags=[f"t{i}" for i in range(33)]), polling=poll()).result()


def test_throttling_headers_and_sdk_retry() -> None:
    with ApimEmulator(latency=lro_only(0.0), throttle=Throttle(enabled=True, writes=(2, 5)), time_scale=1) as emu:
        statuses = [raw(emu, "PUT", f"tags/t{i}", {"properties": {"displayName": "t"}}) for i in range(4)]
        assert [r.status_code for r in statuses][:2] == [201, 201]
        throttled = [r for r in statuses if r.status_code == 429]
        assert throttled, "the write bucket of 2 is exhausted"
        assert throttled[0].json()["error"]["code"] == "SubscriptionRequestsThrottled"
        assert int(throttled[0].headers["Retry-After"]) >= 1 and int(throttled[0].headers["retry-after-ms"]) > 0
        # the 2024 token-bucket model's counters (Learn, "Understand how Azure Resource Manager throttles
        # requests"; the global counter is 15 times the subscription bucket)
        assert statuses[0].headers["x-ms-ratelimit-remaining-subscription-writes"] == "1"
        assert statuses[0].headers["x-ms-ratelimit-remaining-subscription-global-writes"] == str(15 * 2 - 2 + 1)
        c = emu.client(retry_total=5)
        c.tag.create_or_update(emu.RESOURCE_GROUP, emu.SERVICE, "later", TagCreateUpdateParameters(display_name="x"))
        assert emu.stats()["throttled"] >= len(throttled)


def test_fault_injection_and_stats(emu: ApimEmulator) -> None:
    emu.faults.add(FaultRule(method="GET", path="/apis$", status=503, count=1))
    c0 = emu.client(retry_total=0)
    with pytest.raises(HttpResponseError) as info:
        list(c0.api.list_by_service(emu.RESOURCE_GROUP, emu.SERVICE))
    assert info.value.status_code == 503
    emu.faults.add(FaultRule(method="GET", path="/tags$", drop=True, count=1))
    with pytest.raises(Exception, match=r"(?i)connection|aborted|closed|reset"):
        raw(emu, "GET", "tags")
    emu.faults.add(FaultRule(method="PUT", path="/apis/echo$", lro_fail=True, count=1))
    with pytest.raises(HttpResponseError):
        create(emu)
    assert raw(emu, "GET", "apis/echo").status_code == 404, "a failed create leaves no API"
    stats = requests.get(emu.url + "/_emulator/stats", verify=str(emu.ca_file)).json()
    assert stats["errors"] >= 1 and stats["writes"] >= 1 and stats["apis"] == 0
    requests.post(emu.url + "/_emulator/reset", verify=str(emu.ca_file))
    assert emu.stats()["writes"] == 0
    requests.post(emu.url + "/_emulator/faults", json={"method": "GET", "path": "/tags$", "status": 500},
                  verify=str(emu.ca_file))
    assert raw(emu, "GET", "tags").status_code == 500


def test_bearer_token_required(emu: ApimEmulator) -> None:
    resp = requests.get(emu.url + emu.arm_id("apis") + "?api-version=2024-05-01", verify=str(emu.ca_file))
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "AuthenticationFailed"


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "apim.json"
    with ApimEmulator(state_file=state, latency=lro_only(0.02)) as emu:
        create(emu, service_url="https://kept.example.com")
    with ApimEmulator(state_file=state) as again:
        assert again.client().api.get(again.RESOURCE_GROUP, again.SERVICE, "echo").service_url == \
            "https://kept.example.com"


NON_XML_ENCODED = Path(__file__).resolve().parents[1] / "data" / "ApiManagementCreateApiPolicyNonXmlEncoded.json"


def test_policy_formats_xml_round_trips_and_rawxml_does_not(emu: ApimEmulator) -> None:
    """PolicyContentFormat (definitions.json): ``rawxml`` is not XML-encoded. The official example's rawxml body
    (ApiManagementCreateApiPolicyNonXmlEncoded.json, an operation policy there; the same at API scope) is stored
    encoded (``h =&gt; ...`` in its response); a rawxml GET gives expressions back decoded, which is not XML when
    an attribute holds a quoted string (Azure/apiops#488). ``xml`` both ways gives back what was sent."""
    import xml.etree.ElementTree as ET

    c, rg, svc = emu.client(), emu.RESOURCE_GROUP, emu.SERVICE
    create(emu)
    example = json.loads(NON_XML_ENCODED.read_text(encoding="utf-8"))
    sent = example["parameters"]["parameters"]["properties"]
    c.api_policy.create_or_update(rg, svc, "echo", "policy", PolicyContract(value=sent["value"], format="rawxml"))
    stored = c.api_policy.get(rg, svc, "echo", "policy", format="xml").value
    assert 'h.Ke=="Via"' in stored and ET.fromstring(stored) is not None
    encoded = ('<policies><inbound><choose><when condition="@(context.Variables.ContainsKey(&quot;t&quot;))">'
               '<set-variable name="a" value="@((string)context.Variables[&quot;t&quot;])" /></when></choose>'
               '</inbound></policies>')
    c.api_policy.create_or_update(rg, svc, "echo", "policy", PolicyContract(value=encoded, format="xml"))
    as_xml = c.api_policy.get(rg, svc, "echo", "policy", format="xml").value
    assert ET.canonicalize(as_xml, strip_text=True) == ET.canonicalize(encoded, strip_text=True)
    as_raw = c.api_policy.get(rg, svc, "echo", "policy", format="rawxml").value
    assert 'ContainsKey("t")' in as_raw
    with pytest.raises(ET.ParseError):
        ET.fromstring(as_raw)
    # the encoded form sent as rawxml is taken literally: its entities are encoded once more
    c.api_policy.create_or_update(rg, svc, "echo", "policy", PolicyContract(value=encoded, format="rawxml"))
    assert "&amp;quot;" in c.api_policy.get(rg, svc, "echo", "policy", format="xml").value


def test_a_consumption_service_reports_its_tier_and_refuses_llm_token_limit() -> None:
    """sku.name as in ApiManagementServiceGetService.json; llm-token-limit is not offered on Consumption (Learn,
    "Policy availability") and is refused with the message seen for a sibling policy (azure-docs#57081)."""
    with ApimEmulator(latency=lro_only(0.05), sku="Consumption") as emu:
        c, rg, svc = emu.client(), emu.RESOURCE_GROUP, emu.SERVICE
        assert c.api_management_service.get(rg, svc).sku.name == "Consumption"
        create(emu)
        xml = ('<policies><inbound><base /><llm-token-limit counter-key="@(context.Subscription.Id)" '
               'tokens-per-minute="10" estimate-prompt-tokens="false" /></inbound></policies>')
        with pytest.raises(HttpResponseError) as info:
            c.api_policy.create_or_update(rg, svc, "echo", "policy", PolicyContract(value=xml, format="xml"))
        assert info.value.status_code == 400 and "Policy is not allowed in 'Consumption' sku" in str(info.value)
