"""The Databricks emulator through databricks-sdk's WorkspaceClient: the serving-endpoints contract and its errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.core import Config
from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, Unauthenticated
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from apimsync.emulators._server import FaultRule
from apimsync.emulators.databricks import DEFAULT_FIXTURES, DatabricksEmulator
from apimsync.emulators.synthetic import big_spec, synthetic_endpoints


@pytest.fixture
def emu() -> Iterator[DatabricksEmulator]:
    with DatabricksEmulator() as emulator:
        yield emulator


def client(emu: DatabricksEmulator, token: str | None = None) -> WorkspaceClient:
    return WorkspaceClient(config=Config(host=emu.url, token=token or emu.token, auth_type="pat",
                                         retry_timeout_seconds=5))


def test_list_get_and_fields_the_sdk_drops(emu: DatabricksEmulator) -> None:
    w = client(emu)
    names = [e.name for e in w.serving_endpoints.list()]
    assert len(names) == 12 and "churn-classifier" in names
    raw = w.api_client.do("GET", "/api/2.0/serving-endpoints")["endpoints"]
    assert any(e.get("endpoint_type") == "FOUNDATION_MODEL_API" for e in raw)  # type: ignore[union-attr]
    ranker = w.serving_endpoints.get("ranker-route-optimized")
    assert ranker.route_optimized
    assert ranker.endpoint_url.endswith("/serving-endpoints/ranker-route-optimized/invocations")
    assert ranker.config.traffic_config.routes[0].traffic_percentage == 100
    two = w.serving_endpoints.get("recommender-ab")
    assert sum(r.traffic_percentage for r in two.config.traffic_config.routes) == 100


def test_openapi_for_every_fixture_with_a_spec(emu: DatabricksEmulator) -> None:
    w = client(emu)
    ready = [p.stem for p in (DEFAULT_FIXTURES / "openapi").glob("*.json") if p.stem != "fraud-scorer"]
    for name in ready:
        spec = json.loads(w.serving_endpoints.get_open_api(name).contents.read())
        validate(spec, cls=OpenAPIV31SpecValidator)
        assert spec["openapi"] == "3.1.0" and spec["servers"][0]["url"].endswith(f"/serving-endpoints/{name}")


def test_errors_use_the_databricks_envelope(emu: DatabricksEmulator) -> None:
    w = client(emu)
    with pytest.raises(NotFound, match=r"Endpoint with name 'nope' does not exist\."):
        w.serving_endpoints.get("nope")
    with pytest.raises(PermissionDenied):
        client(emu, token="dapi-wrong").serving_endpoints.list()
    import requests

    anonymous = requests.get(emu.url + "/api/2.0/serving-endpoints", timeout=5)
    assert anonymous.status_code == 401 and anonymous.json()["error_code"] == "UNAUTHENTICATED"
    # host metadata: the fields databricks-sdk's oauth.HostMetadata reads (oidc_endpoint, workspace_id, cloud)
    meta = requests.get(emu.url + "/.well-known/databricks-config", timeout=5).json()
    assert meta == {"oidc_endpoint": emu.url + "/oidc", "workspace_id": emu.workspace_id, "cloud": "azure"}
    for name, status in (("fraud-scorer", 400), ("legacy-no-signature", 404)):
        with pytest.raises(DatabricksError) as info:
            w.serving_endpoints.get_open_api(name)
        assert not isinstance(info.value, Unauthenticated)
        assert emu.stats()["errors"] >= 1 and status in (400, 404)


def test_throttling_is_retried_and_plain_text_503_is_not(emu: DatabricksEmulator) -> None:
    w = client(emu)
    emu.faults.add(FaultRule(path="/serving-endpoints$", status=429, retry_after=0, count=2))
    assert len(list(w.serving_endpoints.list())) == 12
    emu.faults.add(FaultRule(path="/serving-endpoints$", status=503, retry_after=0, body="proxy says no", count=1))
    with pytest.raises(DatabricksError):
        list(w.serving_endpoints.list())
    emu.faults.add(FaultRule(path="/serving-endpoints$", drop=True, count=1))
    assert len(list(w.serving_endpoints.list())) == 12, "a dropped connection is retried by the SDK"


def test_hooks_change_what_is_served(emu: DatabricksEmulator) -> None:
    w = client(emu)
    emu.remove_endpoint("openai-chat")
    assert "openai-chat" not in [e.name for e in w.serving_endpoints.list()]
    items, specs = synthetic_endpoints(1)
    emu.put_endpoint(items[0], specs[items[0]["name"]])
    assert json.loads(w.serving_endpoints.get_open_api("syn-0000").contents.read()) == specs["syn-0000"]
    emu.set_spec("syn-0000", "not json at all")
    assert w.serving_endpoints.get_open_api("syn-0000").contents.read() == b"not json at all"
    assert emu.stats()["by_route"]["openapi"] == 2


def test_synthetic_endpoints_are_deterministic_and_valid() -> None:
    a, specs_a = synthetic_endpoints(25, seed=3)
    b, specs_b = synthetic_endpoints(25, seed=3)
    assert a == b and specs_a == specs_b
    assert len({e["name"] for e in a}) == 25
    for spec in list(specs_a.values())[:10]:
        validate(spec, cls=OpenAPIV31SpecValidator)
    assert 1.0e6 < len(json.dumps(big_spec(1500))) < 2.5e6


# what apimsync reads of a list item (apimsync/source.py Endpoint.from_api); the rest of an item is not read
CLIENT_READS = ("name", "state", "config", "task", "endpoint_type", "id", "route_optimized", "endpoint_url",
                "data_plane_info")
KIND_FIXTURES = {"custom model (Unity Catalog)": "churn-classifier", "agent (Agent Bricks)": "mas-7f3c9e21-endpoint",
                 "pay-per-token foundation model": "databricks-meta-llama-3-3-70b-instruct"}


@pytest.mark.parametrize("kind", sorted(KIND_FIXTURES))
def test_the_list_carries_what_a_real_list_carries(emu: DatabricksEmulator, kind: str) -> None:
    """Each field apimsync reads is in the emulator's list item exactly when a real workspace's list has it
    (tests/data/databricks/real-list-shapes.json: route_optimized on custom and agent items, never endpoint_url,
    data_plane_info or config_version; no id on pay-per-token items), with the SDK's dataclass reading it too."""
    from pathlib import Path

    from databricks.sdk.service.serving import ServingEndpoint

    real = json.loads((Path(__file__).parents[1] / "data" / "databricks" / "real-list-shapes.json").read_text(
        encoding="utf-8"))["kinds"][kind]
    raw = client(emu).api_client.do("GET", "/api/2.0/serving-endpoints")["endpoints"]
    (item,) = [e for e in raw if e["name"] == KIND_FIXTURES[kind]]  # type: ignore[index]
    for key in CLIENT_READS:
        what = "invents" if key in item else "drops"
        assert (key in item) == (key in real["keys"]), f"{kind}: the emulator {what} '{key}'"
    assert "config_version" not in (item.get("config") or {})
    assert sorted(item["config"]) == real["config"]
    if "route_optimized" in real:
        assert item["route_optimized"] is real["route_optimized"]
    for entity in item["config"].get("served_entities", []):
        assert set(entity) <= set(real["served_entity"]) | {"external_model"}, entity
    assert ServingEndpoint.from_dict(item).name == item["name"]
