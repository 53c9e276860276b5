"""Contract conformance: every official example the client's calls correspond to, replayed against the APIM emulator.

The examples in tests/data are copied from azure-rest-api-specs (Microsoft.ApiManagement, 2024-05-01; the copies in
shared/contracts/apim-2024-05-01/examples). Each is replayed as given (its method, URL, headers and body; only the
subscription, resource group and service are the emulator's), after the state its response shows has been created.
The answer must have a status the REST definition lists for the operation, and a body shaped as Azure's:

- a resource (``id``, ``type``, ``name``, ``properties``) has the id format of its type, ``name`` equal to the id's
  last segment, every property that all examples of that type show, only properties some example of that type
  shows, each with a JSON type an example gives it;
- any other body (list secrets, list value, apisByTags items) has exactly the example's keys at every level.

A response shape that differs from Azure's fails here. Where the examples are silent (revision listing, the
non-current revision rule, the lock), tests/emulators/test_apim_contract.py cites the source it follows.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from apimsync.emulators.apim import ApimEmulator
from apimsync.emulators.latency import lro_only

DATA = Path(__file__).resolve().parents[1] / "data"
FREE_FORM = ("tags",)  # keys of the user's own choosing: only their type is contract
SPEC = {"openapi": "3.0.1", "info": {"title": "Swagger Petstore", "version": "1.0.0"},
        "servers": [{"url": "https://petstore.swagger.io/v1"}],
        "paths": {"/pets": {"get": {"operationId": "listPets", "responses": {"200": {"description": "ok"}}}}}}


def _example(name: str) -> dict[str, Any]:
    return dict(json.loads((DATA / f"ApiManagement{name}.json").read_text(encoding="utf-8")))


# example -> (method, path under the service, statuses the REST definition lists for the operation)
OPERATIONS: dict[str, tuple[str, str, set[int]]] = {
    "ServiceGetService": ("GET", "", {200}),
    "GetSubscription": ("GET", "/subscriptions/{sid}", {200}),
    "SubscriptionListSecrets": ("POST", "/subscriptions/{sid}/listSecrets", {200}),
    "ListApis": ("GET", "/apis", {200}),
    "GetApiContract": ("GET", "/apis/{apiId}", {200}),
    "CreateApiUsingOai3Import": ("PUT", "/apis/{apiId}", {200, 201, 202}),  # x-ms-long-running-operation
    "DeleteApi": ("DELETE", "/apis/{apiId}", {202, 204}),
    "ListApiRevisions": ("GET", "/apis/{apiId}/revisions", {200}),
    "CreateApiRelease": ("PUT", "/apis/{apiId}/releases/{releaseId}", {200, 201}),
    "GetApiPolicy": ("GET", "/apis/{apiId}/policies/{policyId}", {200}),
    "CreateApiPolicy": ("PUT", "/apis/{apiId}/policies/{policyId}", {200, 201}),
    "ListNamedValues": ("GET", "/namedValues", {200}),
    "GetNamedValue": ("GET", "/namedValues/{namedValueId}", {200}),
    "CreateNamedValue": ("PUT", "/namedValues/{namedValueId}", {200, 201, 202}),  # long-running
    "CreateNamedValueWithKeyVault": ("PUT", "/namedValues/{namedValueId}", {200, 201, 202}),
    "DeleteNamedValue": ("DELETE", "/namedValues/{namedValueId}", {200, 204}),
    "NamedValueListValue": ("POST", "/namedValues/{namedValueId}/listValue", {200}),
    "CreateTag": ("PUT", "/tags/{tagId}", {200, 201}),
    "CreateApiTag": ("PUT", "/apis/{apiId}/tags/{tagId}", {200, 201}),
    "CreateProductApi": ("PUT", "/products/{productId}/apis/{apiId}", {200, 201}),
    "ListApisByTags": ("GET", "/apisByTags", {200}),
}

# the client's calls (apimsync/arm.py, target.py, resources/) and the example each corresponds to: the suite must
# cover them all
CLIENT_CALLS = {
    "api.begin_create_or_update": "CreateApiUsingOai3Import", "api.begin_delete": "DeleteApi",
    "api.get": "GetApiContract", "api.list_by_service": "ListApis", "api.list_by_tags": "ListApisByTags",
    "api_management_service.get": "ServiceGetService", "api_policy.create_or_update": "CreateApiPolicy",
    "api_policy.get": "GetApiPolicy", "api_release.create_or_update": "CreateApiRelease",
    "api_revision.list_by_service": "ListApiRevisions", "named_value.begin_create_or_update": "CreateNamedValue",
    "named_value.delete": "DeleteNamedValue", "named_value.get": "GetNamedValue",
    "named_value.list_by_service": "ListNamedValues", "product_api.create_or_update": "CreateProductApi",
    "subscription.list_secrets": "SubscriptionListSecrets", "tag.assign_to_api": "CreateApiTag",
    "tag.create_or_update": "CreateTag",
    # no official example in 2024-05-01: product_api.list_by_product, tag.get (covered in test_apim_contract.py)
}


def _resources(body: Any) -> Iterator[dict[str, Any]]:
    """The ARM resources in a body: itself, or the items of a list (apisByTags items hold two)."""
    if isinstance(body, dict) and isinstance(body.get("value"), list):
        for item in body["value"]:
            yield from _resources(item)
    elif isinstance(body, dict) and "type" in body and "id" in body:
        yield body


def _catalogue() -> dict[str, dict[str, Any]]:
    """Per resource type, over every example: the properties all show, those any shows, the types each takes."""
    seen: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for file in DATA.glob("ApiManagement*.json"):
        for response in json.loads(file.read_text(encoding="utf-8"))["responses"].values():
            for resource in _resources((response or {}).get("body")):
                seen[resource["type"]].append(resource.get("properties") or {})
    out = {}
    for kind, bodies in seen.items():
        types: dict[str, set[str]] = defaultdict(set)
        for props in bodies:
            for key, value in props.items():
                types[key].add(_json_type(value))
        out[kind] = {"always": set.intersection(*(set(p) for p in bodies)), "any": set(types), "types": types}
    return out


def _json_type(value: Any) -> str:
    return ("null" if value is None else "boolean" if isinstance(value, bool) else "number"
            if isinstance(value, (int, float)) else "string" if isinstance(value, str) else "array"
            if isinstance(value, list) else "object")


# properties the REST definition declares that no example happens to show (definitions.json, 2024-05-01:
# ApiEntityBaseContract.subscriptionRequired)
DEFINED = {"Microsoft.ApiManagement/service/apis": {"subscriptionRequired"}}
CATALOGUE = _catalogue()
for _kind, _keys in DEFINED.items():
    CATALOGUE[_kind]["any"] |= _keys
    for _key in _keys:
        CATALOGUE[_kind]["types"][_key] |= {"boolean"}
ID = re.compile(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ApiManagement/service/[^/]+"
                r"((?:/[^/]+/[^/]+)+)$")


def assert_resource(got: dict[str, Any], where: str) -> None:
    kind = got.get("type")
    assert kind in CATALOGUE, f"{where}: type {kind!r} is not one any example shows"
    assert set(got) <= {"id", "type", "name", "properties"} and {"id", "type", "name"} <= set(got), where
    match = ID.match(str(got["id"]))
    assert match, f"{where}: id {got['id']!r} is not an ARM id of the service"
    collections = match.group(1).strip("/").split("/")[0::2]
    assert kind.split("/")[2:] == collections, f"{where}: id {got['id']} does not fit type {kind}"
    assert got["name"] == got["id"].rsplit("/", 1)[-1], f"{where}: name is not the id's last segment"
    props, rules = got.get("properties") or {}, CATALOGUE[kind]
    assert rules["always"] <= set(props), f"{where}: missing {sorted(rules['always'] - set(props))}"
    assert set(props) <= rules["any"], f"{where}: properties no example shows: {sorted(set(props) - rules['any'])}"
    for key, value in props.items():
        assert _json_type(value) in rules["types"][key] | {"null"}, f"{where}.{key}: {_json_type(value)}"


def assert_same_shape(got: Any, expected: Any, where: str) -> None:
    """Same keys at every level, same JSON types (the first item of each list stands for all)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict), f"{where}: expected an object"
        if where.rsplit(".", 1)[-1] in FREE_FORM:
            return
        assert set(got) == set(expected), f"{where}: keys {sorted(got)} != {sorted(expected)}"
        for key in expected:
            assert_same_shape(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list), f"{where}: expected a list"
        if expected and got:
            assert_same_shape(got[0], expected[0], f"{where}[0]")
    elif expected is not None:
        assert _json_type(got) == _json_type(expected), f"{where}: {_json_type(got)} != {_json_type(expected)}"


# -- replay ---------------------------------------------------------------------------------------------------------

class Replay:
    def __init__(self, emu: ApimEmulator) -> None:
        self.emu = emu
        self.base = emu.url + emu.arm_id("").rstrip("/")

    def send(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             **query: str) -> requests.Response:
        return requests.request(method, self.base + path, json=body, params={"api-version": "2024-05-01", **query},
                                headers={"Authorization": "Bearer t", **(headers or {})},
                                verify=str(self.emu.ca_file), timeout=30)

    def settle(self, answer: requests.Response) -> requests.Response:
        """Follow a long-running operation's Location until it ends, as the SDK's poller does."""
        location = answer.headers.get("Location")
        while location:
            answer = requests.get(location, headers={"Authorization": "Bearer t"}, verify=str(self.emu.ca_file),
                                  timeout=30)
            if answer.status_code != 202:
                break
        return answer

    def api(self, api_id: str, path: str | None = None, **props: Any) -> None:
        body = {"properties": {"format": "openapi+json", "value": json.dumps(SPEC), "path": path or api_id,
                               "protocols": ["https"], **props}}
        assert self.settle(self.send("PUT", f"/apis/{api_id}", body)).status_code in (200, 201)

    def named_value(self, nv_id: str, props: dict[str, Any]) -> None:
        keep = {k: v for k, v in props.items() if k in ("displayName", "value", "secret", "tags", "keyVault")}
        if "keyVault" in keep:
            keep["keyVault"] = {k: v for k, v in keep["keyVault"].items()
                                if k in ("secretIdentifier", "identityClientId")}
        else:
            keep.setdefault("value", "v")
        assert self.settle(self.send("PUT", f"/namedValues/{nv_id}", {"properties": keep})).status_code in (200, 201)


def _seed(replay: Replay, name: str, example: dict[str, Any]) -> None:
    """Create what the example's request needs and its response shows."""
    params = example["parameters"]
    body = (example["responses"].get("200") or example["responses"].get("201") or {}).get("body")
    if name in ("GetApiContract", "DeleteApi", "ListApiRevisions", "CreateApiRelease", "GetApiPolicy",
                "CreateApiPolicy", "CreateApiTag", "CreateProductApi"):
        replay.api(params["apiId"])
    if name == "ListApis":  # two of its APIs share a path through a version set, which the emulator lacks
        for item in body["value"]:
            replay.api(item["name"], f"{item['properties']['path'] or 'root'}-{item['name']}")
    if name == "GetApiPolicy":
        replay.send("PUT", f"/apis/{params['apiId']}/policies/policy", {"properties": {
            "format": "rawxml", "value": "<policies><inbound /><backend><forward-request /></backend></policies>"}})
    if name == "CreateApiTag":
        replay.send("PUT", f"/tags/{params['tagId']}", {"properties": {"displayName": "tag1"}})
    if name == "ListApisByTags":
        replay.send("PUT", "/tags/apitag123", {"properties": {"displayName": "awesomeTag"}})
        replay.api("echo-api", "echo")
        replay.send("PUT", "/apis/echo-api/tags/apitag123")
    if name in ("GetNamedValue", "NamedValueListValue", "DeleteNamedValue"):
        props = (body or {}).get("properties") or {"displayName": "prop3name", "value": "propValue"}
        replay.named_value(params["namedValueId"], {**props, "displayName": props.get("displayName") or "nv"})
    if name == "ListNamedValues":
        for item in body["value"]:
            replay.named_value(item["name"], item["properties"])


def _request(name: str, example: dict[str, Any]) -> tuple[str, str, Any, dict[str, str]]:
    method, template, _ = OPERATIONS[name]
    params = dict(example["parameters"])
    if "sid" in params:
        params["sid"] = "master"  # the emulator's one subscription (the built-in all-access one)
    if "productId" in params:
        params["productId"] = "starter"  # products are not created by apimsync: one of the service's own
    path = re.sub(r"\{(\w+)\}", lambda m: str(params[m.group(1)]), template)
    body = params.get("parameters")
    if name == "CreateApiUsingOai3Import":  # an openapi-link would be fetched from the internet: inline the same
        body = {"properties": {**body["properties"], "format": "openapi+json", "value": json.dumps(SPEC)}}
    headers = {"If-Match": params["If-Match"]} if "If-Match" in params else {}
    return method, path, body, headers


@pytest.fixture(scope="module")
def emulator() -> Iterator[ApimEmulator]:
    with ApimEmulator(latency=lro_only(0.01)) as emu:
        yield emu


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_the_emulator_answers_each_official_example_as_azure_does(emulator: ApimEmulator, name: str) -> None:
    replay = Replay(emulator)
    example = _example(name)
    _seed(replay, name, example)
    method, path, body, headers = _request(name, example)
    answer = replay.send(method, path, body, headers)
    statuses = OPERATIONS[name][2]
    assert answer.status_code in statuses, f"{name}: {answer.status_code} {answer.text[:300]}"
    if answer.status_code in (202, 204) or method == "DELETE":
        return
    got = answer.json()
    expected = (example["responses"].get(str(answer.status_code)) or example["responses"].get("200")
                or example["responses"].get("201"))["body"]
    if "value" in expected and isinstance(expected["value"], list):  # a page: value, count, nextLink ("" or absent)
        assert {"value"} <= set(got) <= {"value", "count", "nextLink"}, f"{name}: {sorted(got)}"
        assert got["value"], f"{name}: the seeded items are not listed"
        if "count" in expected:
            assert got.get("count") == len(got["value"]) or "nextLink" in got, f"{name}: count"
        for i, item in enumerate(got["value"]):
            if "id" in expected["value"][0]:
                assert_resource(item, f"{name}[{i}]")
            else:
                assert_same_shape(item, expected["value"][0], f"{name}[{i}]")
    elif "id" in expected and "location" not in expected:  # a proxy resource; the tracked service: by shape
        assert_resource(got, name)
    else:
        assert_same_shape(got, expected, name)


def test_the_suite_covers_every_call_the_client_makes() -> None:
    package = Path(__file__).resolve().parents[2] / "apimsync"
    source = "".join(p.read_text(encoding="utf-8") for p in [package / "arm.py", package / "target.py",
                                                              *(package / "resources").glob("*.py")])
    made = set(re.findall(r"client\.([a-z_]+\.[a-z_]+)\(", source))
    assert {"api.begin_create_or_update", "api_policy.create_or_update", "named_value.get"} <= made  # found them
    uncovered = made - set(CLIENT_CALLS) - {"product_api.list_by_product", "tag.get"}
    assert not uncovered, f"client calls without an official example replayed here: {sorted(uncovered)}"
    assert set(CLIENT_CALLS.values()) <= set(OPERATIONS)
