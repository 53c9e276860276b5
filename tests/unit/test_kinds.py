"""The endpoint kinds table (apimsync.kinds) and the settings (apimsync.settings): the README's tables generated from
them."""

from __future__ import annotations

import jsonschema
import pytest

from apimsync.endpoints import Endpoint
from apimsync.kinds import KINDS, TASKS, kind_of, task_of
from apimsync.readme import README, TABLES, rendered


def test_the_readme_tables_are_generated_from_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    for name in TABLES:
        assert f"<!-- generated: {name} -->" in text
    assert rendered(text) == text, "the README's generated tables are stale: run python -m apimsync.readme"


def _endpoint(**fields: object) -> Endpoint:
    return Endpoint(workspace="w", name="e", host="https://adb-1.2.azuredatabricks.net", ready=True,
                    **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fields", "kind"), [
    ({}, "custom model"),
    ({"endpoint_type": "EXTERNAL_MODEL", "task": "llm/v1/chat"}, "external model"),
    ({"task": "agent/v1/responses"}, "agent"),
    ({"endpoint_type": "FOUNDATION_MODEL_API", "task": "llm/v1/chat"}, "pay-per-token"),
    ({"task": "agent/v2/chat", "route_optimized": True}, "route-optimized"),  # route optimization wins
    ({"endpoint_type": "FOUNDATION_MODEL_API", "route_optimized": True}, "route-optimized"),
])
def test_each_endpoint_has_the_kind_that_recognises_it_last(fields: dict[str, object], kind: str) -> None:
    found = _endpoint(**fields).kind
    assert found.name.startswith(kind) and found is kind_of(_endpoint(**fields))


def test_only_route_optimized_endpoints_need_oauth_and_only_pay_per_token_ones_wait_to_be_asked_for() -> None:
    assert [k.name for k in KINDS if k.oauth_only] == ["route-optimized"]
    assert [k.name.split(" (")[0] for k in KINDS if not k.selected_by_default] == ["pay-per-token foundation model"]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_what_verify_sends_fits_the_spec_synthesized_for_the_task(name: str) -> None:
    task = TASKS[name]
    request_schema = task.spec("e")["paths"]["/invocations"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    jsonschema.validate(task.request, request_schema)
    assert task.body_field in task.request and task.body_field in request_schema["required"]
    with pytest.raises(jsonschema.ValidationError):  # without its body field a request is refused
        jsonschema.validate({k: v for k, v in task.request.items() if k != task.body_field}, request_schema)


def test_openai_routes_have_the_operation_id_the_gateway_rewrites() -> None:
    routes = {t.name: (t.openai_route, t.openai_operation_id) for t in TASKS.values() if t.openai_route}
    assert routes == {"llm/v1/chat": ("/chat/completions", "openai-chat-completions"),
                      "llm/v1/completions": ("/completions", "openai-completions"),
                      "llm/v1/embeddings": ("/embeddings", "openai-embeddings")}
    assert task_of(None) is None and task_of("custom/unknown") is None


def test_every_setting_describes_itself_and_the_loader_holds_it_to_its_bounds(tmp_path: object) -> None:
    import dataclasses
    from typing import get_type_hints

    from apimsync.binding import INTERNAL, dataclass_of
    from apimsync.config import settings_from_mapping
    from apimsync.errors import ConfigError
    from apimsync.settings import Settings

    def undocumented(cls: type, prefix: str) -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            inner = dataclass_of(get_type_hints(cls)[f.name])
            if f.name not in INTERNAL and not f.metadata.get("doc"):
                out.append(prefix + f.name)
            if inner is not None:
                out += undocumented(inner, f"{prefix}{f.name}.")
        return out

    assert undocumented(Settings, "") == []
    apim = {"subscription_id": "s", "resource_group": "r", "service": "x"}
    for key, value, message in [("concurrency", 0, "concurrency: expected 1 to 64, got 0"),
                                ("update_strategy", "yolo", "update_strategy: expected one of 'in-place', 'revision'"),
                                ("prune", {"max_delete_fraction": 1.5}, "prune.max_delete_fraction: expected 0 to 1")]:
        with pytest.raises(ConfigError, match=message):
            settings_from_mapping({"apim": apim, key: value})


def test_the_notebook_functions_are_never_shadowed_by_a_module() -> None:
    """``import apimsync`` then ``apimsync.verify(...)``: a submodule named like a function of ``__all__`` replaces
    the function once something imports it ('module' object is not callable)."""
    import importlib
    import inspect
    import pkgutil

    import apimsync

    modules = {m.name for m in pkgutil.iter_modules(apimsync.__path__)}
    functions = [name for name in apimsync.__all__ if inspect.isfunction(getattr(apimsync, name))]
    assert {"plan", "sync", "verify"} <= set(functions)
    assert not modules & set(functions)
    for name in apimsync.__all__:  # everything __all__ names exists
        assert getattr(importlib.import_module("apimsync"), name) is not None
