"""Bounds on what apimsync reads (issue 13 §7-8): files, YAML, templates, specs and the linter's cost."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apimsync.config import load_settings
from apimsync.errors import ConfigError, PipelineError, SpecError
from apimsync.files import MAX_SPEC_BYTES
from apimsync.model import Marker
from apimsync.naming import render_name
from apimsync.spec import load_spec
from apimsync.transform import load_pipeline
from apimsync.transform.lint import lint
from apimsync.transform.refs import cyclic as _cyclic

BASE = "apim: {subscription_id: s, resource_group: r, service: svc}\n"


def test_yaml_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    bomb = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    path = tmp_path / "apimsync.yaml"
    path.write_text(BASE + "l0: &l0 [x]\n" + bomb, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"apimsync\.yaml: not valid YAML \(line \d+: aliases .* not allowed"):
        load_settings(path, env={})


@pytest.mark.parametrize("template", ["{endpoint!r:>99999999999}", "{endpoint:>9}", "{endpoint.upper}",
                                      "{endpoint[0]}"])
def test_naming_templates_take_plain_placeholders_only(tmp_path: Path, template: str) -> None:
    path = tmp_path / "apimsync.yaml"
    path.write_text(BASE + f"naming: {{api_id: '{template}'}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"naming\.api_id: .*only plain placeholders|unknown placeholder"):
        load_settings(path, env={})
    assert render_name("x-{endpoint}-{workspace}", endpoint="e", workspace="w") == "x-e-w"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_pipeline_naming_an_endless_device_is_refused(device: str) -> None:
    with pytest.raises(PipelineError, match="not a regular file"):
        load_pipeline(device)


def test_an_oversize_spec_is_refused_before_parsing() -> None:
    with pytest.raises(SpecError, match="refused before parsing"):
        load_spec(b" " * (MAX_SPEC_BYTES + 1), origin="big")


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.sets(st.sampled_from("abcdefgh")), max_size=8))
@settings(max_examples=300, deadline=None)
def test_the_linear_cycle_finder_agrees_with_the_emulated_import(raw: dict[str, set[str]]) -> None:
    """The emulator's import rule (a search from every schema: the definition, at quadratic cost) is the oracle."""
    from apimsync.emulators.apim_import import _recursive_schemas

    graph = {name: {t for t in targets if t in raw} for name, targets in raw.items()}
    schemas = {name: {"properties": {t: {"$ref": f"#/components/schemas/{t}"} for t in targets}}
               for name, targets in graph.items()}
    assert _cyclic(graph) == set(_recursive_schemas(schemas))


def test_a_long_ref_chain_lints_and_its_loop_is_found() -> None:
    n = 10_000  # 39 s before (a search from every schema); linear now, so this test stays fast
    schemas: dict[str, object] = {f"A{i}": {"$ref": f"#/components/schemas/A{i + 1}"} for i in range(n)}
    schemas[f"A{n}"] = {"$ref": "#/components/schemas/A0"}
    doc = {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "components": {"schemas": schemas},
           "paths": {"/a": {"post": {"operationId": "a", "responses": {"200": {"description": "ok"}}}}}}
    assert sum(f.rule == "recursion" for f in lint(doc)) == n + 1


@given(st.text(), st.text())
def test_no_name_can_forge_a_marker_field(workspace: str, endpoint: str) -> None:
    marker = Marker(workspace, endpoint, "0" * 12, "1" * 12)
    assert Marker.parse(str(marker)) == marker
