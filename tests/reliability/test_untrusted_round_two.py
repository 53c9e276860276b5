"""Untrusted input, round two (issue 22): policy expressions, verify's key, the workspace's paths, the plan file,
careless settings and the subscription key, each tried through the CLI or the engine on the emulators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from azure.mgmt.apimanagement.models import ApiCreateOrUpdateParameter

from apimsync.arm import location_poller
from apimsync.checks import Target, run_checks
from apimsync.emulators._server import EmulatorServer, Request, Response
from apimsync.emulators.sandbox import Sandbox

SPEC = {"openapi": "3.1.0", "info": {"title": "x", "version": "1"}, "paths": {
    "/served-models/m-1/invocations": {"post": {"requestBody": {"content": {"application/json": {"schema": {
        "type": "object", "properties": {"messages": {"type": "array", "items": {"type": "object", "properties": {
            "role": {"type": "string"}, "content": {"type": "string"}}}}}}}}},
        "responses": {"200": {"description": "Successful operation"}}}}}}


CHURN = {"dataframe_records": [{"age": 1, "tenure_months": 0.5, "plan": "text", "extras": {}}]}


def _item(name: str = "hostile", entity: str = "m-1", **fields: Any) -> dict[str, Any]:
    return {"name": name, "id": "0123456789abcdef0123456789abcdef", "task": "llm/v1/chat",
            "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            "config": {"served_entities": [{"name": entity, "external_model": {"provider": "openai", "name": "g"}}],
                       "config_version": 1}, **fields}


def _cli(box: Sandbox, config: Path | None, *args: str, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **box.env(), **(env or {})}
    extra = ["--config", str(config)] if config is not None else []
    return subprocess.run([sys.executable, "-m", "apimsync", *args, *extra], capture_output=True, text=True,
                          env=full, timeout=timeout)


def _write_config(box: Sandbox, path: Path, **sections: Any) -> Path:
    path.write_text(yaml.safe_dump(box.config(**sections)), encoding="utf-8")
    return path


def _policy(box: Sandbox, api_id: str) -> ET.Element:
    policy = box.apim.client().api_policy.get(box.apim.RESOURCE_GROUP, box.apim.SERVICE, api_id, "policy",
                                              format="xml")
    return ET.fromstring(policy.value)


# -- 1. a served-model name never becomes a policy expression ---------------------------------------------------

@pytest.mark.parametrize("entity", ["@(context.Subscription.Key)", "@{return context.Subscription.Key;}",
                                    "m{{databricks-token-emulator}}"])
def test_a_served_model_name_never_becomes_code_in_the_policy(sandbox: Sandbox, entity: str) -> None:
    hostile = {**SPEC, "paths": {f"/served-models/{entity}/invocations": SPEC["paths"][
        "/served-models/m-1/invocations"]}}
    sandbox.databricks.put_endpoint(_item(entity=entity), hostile)
    engine = sandbox.engine(sandbox.settings(policy={"llm": {"emit_metrics": True}}))
    report = engine.sync()
    assert report.ok, report
    def code(api_id: str) -> set[str]:
        """Every attribute value or text of the policy that APIM would run or resolve."""
        root = _policy(sandbox, api_id)
        values = [v for el in root.iter() for v in el.attrib.values()] + [el.text or "" for el in root.iter()]
        return {v.strip() for v in values if v.strip().startswith("@") or "{{" in v}

    model = [d.get("value") for d in _policy(sandbox, "dbx-hostile").iter("dimension") if d.get("name") == "model"]
    assert model and not str(model[0]).startswith("@") and "{" not in str(model[0])
    assert code("dbx-hostile") == code("dbx-openai-chat"), "only the template's own expressions and references"


# -- 2. verify never follows a redirect, and sends its key only over https -------------------------------------

@pytest.fixture
def redirecting() -> Iterator[tuple[str, list[Request]]]:
    """A gateway stand-in that redirects every call to a second server, which records what reaches it."""
    seen: list[Request] = []

    def elsewhere(request: Request) -> Response:
        seen.append(request)
        return Response.json(200, {"predictions": [1]})

    with EmulatorServer(elsewhere) as other:
        target = other.url

        def redirect(request: Request) -> Response:
            return Response(307, b"", {"Location": f"{target}/steal{request.path}"})

        with EmulatorServer(redirect) as gateway:
            yield gateway.url, seen


def test_verify_never_follows_a_redirect_with_the_key(redirecting: tuple[str, list[Request]]) -> None:
    url, seen = redirecting
    spec = {"paths": {"/invocations": {"post": {"requestBody": {"content": {"application/json": {
        "example": {"inputs": [1]}}}}}}}}
    report = run_checks([Target("e", "w", "dbx-e", "serving/e", spec)], gateway_url=url, key="secret-key",
                        ca_bundle=None)
    (check,) = report.checks
    assert check.diagnosis == "redirect" and check.status == 307 and not check.ok
    assert "/steal/" in check.detail
    assert seen == [], "nothing, and no key, reached the redirect's target"


@pytest.mark.parametrize(("url", "words"), [
    ("http://gateway.example.net", "not https"),
    ("https://user:pw@gateway.example.net", "carries credentials"),
    ("https://gateway.example.net/?x=1", "query or fragment"),
    ("https://gateway.example.net/#frag", "query or fragment"),
])
def test_verify_refuses_a_gateway_url_its_key_must_not_go_to(sandbox: Sandbox, tmp_path: Path, url: str,
                                                             words: str) -> None:
    config = _write_config(sandbox, tmp_path / "apimsync.yaml")
    result = _cli(sandbox, config, "verify", "--gateway-url", url)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("schema", "words"), [
    ({"type": "object", "required": ["a"], "properties": {"a": {"type": "array", "minItems": "abc"}}}, "minItems"),
    ({"type": "object", "required": 5, "properties": {"a": {"type": "string"}}}, "required is int"),
    ({"type": "object", "required": ["a"], "properties": {"a": {"type": "array", "minItems": 10**7}}}, "minItems"),
    ({"type": "object", "required": ["a", "b", "c", "d"], "properties": {k: {"$ref": "#/components/schemas/L1"}
                                                                           for k in "abcd"}}, "more than"),
])
def test_verify_turns_a_crafted_schema_into_a_finding(sandbox: Sandbox, schema: dict[str, Any],
                                                      words: str) -> None:
    """A schema verify cannot use fails that API's check with a reason; the other APIs are checked as usual."""
    assert sandbox.engine().sync().ok
    fan_out = {f"L{i}": {"type": "object", "required": list("abcdefgh"), "properties": {
        k: {"$ref": f"#/components/schemas/L{i + 1}"} for k in "abcdefgh"}} for i in range(1, 8)}
    crafted = {"paths": {"/invocations": {"post": {"requestBody": {"content": {"application/json": {
        "schema": schema}}}}}}, "components": {"schemas": {**fan_out, "L8": {"type": "string"}}}}
    good = {"paths": {"/invocations": {"post": {"requestBody": {"content": {"application/json": {
        "example": CHURN}}}}}}}
    report = run_checks([Target("churn-classifier", "emulator", "dbx-churn-classifier", "serving/churn-classifier",
                                crafted),
                         Target("churn-classifier", "emulator", "dbx-churn-classifier", "serving/churn-classifier",
                                good)],
                        gateway_url=sandbox.apim.gateway_url, key=sandbox.apim.subscription_key,
                        ca_bundle=str(sandbox.apim.ca_file))
    bad, fine = report.checks
    assert bad.diagnosis == "schema" and words in bad.detail, bad
    assert fine.ok, fine


# -- 3. the workspace's spec does not choose what APIM forwards ----------------------------------------------

def test_only_the_invocation_routes_apimsync_knows_are_published(sandbox: Sandbox) -> None:
    op = SPEC["paths"]["/served-models/m-1/invocations"]["post"]
    hostile = {**SPEC, "paths": {
        "/served-models/m-1/invocations": {"post": {**op, "operationId": "openai-chat-completions"}},
        "/../../api/2.0/serving-endpoints": {"get": {"responses": {"200": {"description": "x"}}}},
        "/admin/{rest}": {"post": {**op, "operationId": "openai-sneaky"}},
        "/served-models/not-listed/invocations": {"post": op},
        "/invocations": {"get": {"responses": {"200": {"description": "x"}}}, "post": op}}}
    sandbox.databricks.put_endpoint(_item(), hostile)
    report = sandbox.engine().sync()
    assert report.ok
    client, rg, svc = sandbox.apim.client(), sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    operations = {(o.method, o.url_template, o.name) for o in client.api_operation.list_by_api(rg, svc,
                                                                                                 "dbx-hostile")}
    assert operations == {("POST", "/invocations", "invoke"),
                          ("POST", "/chat/completions", "openai-chat-completions")}, operations
    (change,) = [c for c in report.plan.changes if c.api_id == "dbx-hostile"]
    assert any("not published" in note for note in change.desired.notes)  # type: ignore[union-attr]
    headers = {"Ocp-Apim-Subscription-Key": sandbox.apim.subscription_key}
    for path in ("admin/x", "../../api/2.0/serving-endpoints", "served-models/not-listed/invocations"):
        answer = requests.post(f"{sandbox.apim.gateway_url}/serving/hostile/{path}", json={}, headers=headers,
                               verify=str(sandbox.apim.ca_file), timeout=30)
        assert answer.status_code == 404, path


# -- 4. an edited plan file is refused --------------------------------------------------------------------------

def test_a_plan_file_edited_after_review_is_refused_with_no_write(sandbox: Sandbox, tmp_path: Path) -> None:
    config = _write_config(sandbox, tmp_path / "apimsync.yaml")
    plan_file = tmp_path / "plan.json"
    assert _cli(sandbox, config, "plan", "--out", str(plan_file)).returncode in (0, 3)
    data = json.loads(plan_file.read_text(encoding="utf-8"))
    data["changes"] = data["changes"][1:]  # a change removed, the checksum kept
    plan_file.write_text(json.dumps(data), encoding="utf-8")
    result = _cli(sandbox, config, "sync", "--plan", str(plan_file))
    assert result.returncode == 2 and "does not match its checksum" in result.stderr, result.stderr
    assert sandbox.apim.stats()["writes"] == 0 and sandbox.apim.stats()["apis"] == 0
    assert "fingerprint" not in plan_file.read_text(encoding="utf-8"), "no fingerprint of a secret in a plan file"


def test_a_deeply_nested_plan_file_is_one_line(sandbox: Sandbox, tmp_path: Path) -> None:
    config = _write_config(sandbox, tmp_path / "apimsync.yaml")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text("[" * 200_000 + "]" * 200_000, encoding="utf-8")
    result = _cli(sandbox, config, "sync", "--plan", str(plan_file))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- 6. databricks_secret ---------------------------------------------------------------------------------------

def test_a_databricks_secret_fills_the_named_value_the_policy_reads(sandbox: Sandbox,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import __main__

    class Secrets:
        def get(self, scope: str, key: str) -> str:
            assert (scope, key) == ("apim", "token")
            return sandbox.env()["APIMSYNC_DEMO_TOKEN"]

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    monkeypatch.setattr(__main__, "dbutils", type("D", (), {"secrets": Secrets()})(), raising=False)
    settings = sandbox.settings(policy={"named_value": {"databricks_secret": "apim/token"}})
    assert sandbox.engine(settings).sync().ok
    names = {nv.name for nv in sandbox.apim.client().named_value.list_by_service(sandbox.apim.RESOURCE_GROUP,
                                                                                 sandbox.apim.SERVICE)}
    assert "databricks-token-emulator" in names and "token" not in names
    assert sandbox.sample_call()["status"] == 200


# -- 8. output a person reads ------------------------------------------------------------------------------------

def test_bidi_and_zero_width_characters_reach_no_terminal(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.databricks.put_endpoint(_item("evil\u202egpj.exe\u200b\u2066"), SPEC)
    config = _write_config(sandbox, tmp_path / "apimsync.yaml")
    result = _cli(sandbox, config, "plan")
    out = result.stdout + result.stderr
    assert "\\u202e" in out
    assert not any(ch in out for ch in "\u202e\u200b\u2066\u2069")


def test_an_environment_name_with_an_escape_sequence_is_shown_escaped(sandbox: Sandbox, tmp_path: Path) -> None:
    config = _write_config(sandbox, tmp_path / "apimsync.yaml")
    result = _cli(sandbox, config, "plan", env={"APIMSYNC_ENV": "prod\x1b[2J\x1b[31m"})
    assert result.returncode == 2 and "\x1b" not in result.stderr and "\\x1b" in result.stderr


def test_a_bad_state_file_is_one_line(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    for text in ("not json", "[" * 100_000, '{"apis": 5}'):
        state.write_text(text, encoding="utf-8")
        result = subprocess.run([sys.executable, "-m", "apimsync", "emulate", "--state", str(state)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "not a state file" in result.stderr


# -- 9. careless settings are refused ----------------------------------------------------------------------------

@pytest.mark.parametrize(("sections", "words"), [
    ({"apis": {"backend_hosts": ["*"]}}, "apis.backend_hosts"),
    ({"apis": {"backend_hosts": ["*.com"]}}, "apis.backend_hosts"),
    ({"naming": {"path": "../{endpoint}"}}, "naming.path"),
    ({"policy": {"llm": {"tokens_per_minute": 1e29}}}, "policy.llm.tokens_per_minute"),
    ({"policy": {"llm": {"emit_metrics": "no"}}}, "policy.llm.emit_metrics"),
    ({"lock_ttl_seconds": 99999999999999}, "lock_ttl_seconds"),
])
def test_careless_settings_are_refused(sandbox: Sandbox, tmp_path: Path, sections: dict[str, Any],
                                       words: str) -> None:
    config = _write_config(sandbox, tmp_path / "apimsync.yaml", **sections)
    result = _cli(sandbox, config, "plan")
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_secret_fingerprint_in_apim_is_keyed_by_its_target(sandbox: Sandbox) -> None:
    """The named value's fingerprint tag is an HMAC keyed with its resource id: not sha256 of the token."""
    import hashlib

    assert sandbox.engine().sync().ok
    nv = sandbox.apim.client().named_value.get(sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE,
                                               "databricks-token-emulator")
    (tag,) = [t for t in nv.tags if t.startswith("apimsync-fp-")]
    token = sandbox.env()["APIMSYNC_DEMO_TOKEN"]
    assert tag != "apimsync-fp-" + hashlib.sha256(token.encode()).hexdigest()[:16]
    assert not sandbox.engine().plan().has_changes, "the keyed fingerprint is stable: a second run writes nothing"


# -- 10. the subscription key stays in APIM --------------------------------------------------------------------

def test_the_callers_subscription_key_never_reaches_databricks(sandbox: Sandbox) -> None:
    assert sandbox.engine().sync().ok
    key = sandbox.apim.subscription_key
    url = f"{sandbox.apim.gateway_url}/serving/churn-classifier/invocations"
    body = CHURN
    sandbox.databricks.data_plane.received.clear()
    for params, headers in (({}, {"Ocp-Apim-Subscription-Key": key}), ({"subscription-key": key}, {})):
        answer = requests.post(url, json=body, params=params, headers=headers, verify=str(sandbox.apim.ca_file),
                               timeout=30)
        assert answer.status_code == 200, answer.text
    received = list(sandbox.databricks.data_plane.received)
    assert len(received) == 2
    for request in received:
        assert "ocp-apim-subscription-key" not in request.headers
        assert "subscription-key" not in request.query
        assert key not in json.dumps([request.headers, request.query])


def test_the_emulated_gateway_forwards_the_key_when_no_policy_removes_it(sandbox: Sandbox) -> None:
    """What makes the test above able to fail: APIM forwards the caller's key unless a policy deletes it."""
    assert sandbox.engine().sync().ok
    client, rg, svc = sandbox.apim.client(), sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
    client.api_policy.delete(rg, svc, "dbx-churn-classifier", "policy", if_match="*")
    key = sandbox.apim.subscription_key
    sandbox.databricks.data_plane.received.clear()
    requests.post(f"{sandbox.apim.gateway_url}/serving/churn-classifier/invocations", params={"subscription-key": key},
                  json={"inputs": [1]}, headers={"Ocp-Apim-Subscription-Key": key}, verify=str(sandbox.apim.ca_file),
                  timeout=30)
    (request,) = sandbox.databricks.data_plane.received
    assert request.headers.get("ocp-apim-subscription-key") == key and request.query.get("subscription-key") == key


def test_the_gateway_passes_a_backends_redirect_through_and_never_follows_it(sandbox: Sandbox) -> None:
    seen: list[Request] = []
    lock = threading.Lock()

    def elsewhere(request: Request) -> Response:
        with lock:
            seen.append(request)
        return Response.json(200, {})

    with EmulatorServer(elsewhere) as other, EmulatorServer(
            lambda request: Response(302, b"", {"Location": f"{other.url}/x"})) as backend:
        client, rg, svc = sandbox.apim.client(), sandbox.apim.RESOURCE_GROUP, sandbox.apim.SERVICE
        client.api.begin_create_or_update(rg, svc, "redirecting", ApiCreateOrUpdateParameter(
            path="redirecting", display_name="r", service_url=backend.url, protocols=["https"],
            subscription_required=False, format="openapi+json", value=json.dumps({
                "openapi": "3.0.3", "info": {"title": "r", "version": "1"},
                "paths": {"/x": {"post": {"operationId": "x", "responses": {"200": {"description": "ok"}}}}}})),
            polling=location_poller(0.02)).result()
        answer = requests.post(f"{sandbox.apim.gateway_url}/redirecting/x", json={}, allow_redirects=False,
                               verify=str(sandbox.apim.ca_file), timeout=30)
    assert answer.status_code == 302 and seen == []
