"""The product's linter and the emulated APIM import give one verdict on every spec of the corpus.

tests/data/specs/<rule>.json each break one import rule (``x-apimsync-corpus.rule``; ``none`` breaks none). The
linter (apimsync/transform/rules.py, the product's one home for APIM's rules) must report an error exactly when
the emulator's import (apimsync/emulators/apim_import.py, kept independent: it stands in for Azure) rejects the
spec, and the error must carry the rule the file is named after. A third case: after the default pipeline, a
spec the pipeline can repair is accepted by both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apimsync.emulators.apim_import import ImportRejected, import_spec
from apimsync.transform import TransformContext, lint, load_pipeline

CORPUS = sorted((Path(__file__).resolve().parents[1] / "data" / "specs").glob("*.json"))
# what the shipped pipeline repairs (the others stay broken: a bad component key, a missing or external $ref, no
# path parameter, a version APIM does not read)
REPAIRED = {"none", "prefix-items", "const", "json-schema-2020", "type-array", "exclusive-bound", "schema-examples",
            "type-mismatch", "ref-siblings", "info-summary", "webhooks", "recursion"}


def _rejected(spec: dict[str, object]) -> bool:
    try:
        import_spec(json.dumps(spec), "openapi+json")
    except ImportRejected:
        return True
    return False


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_lint_errors_exactly_when_the_emulated_import_rejects(path: Path) -> None:
    spec = json.loads(path.read_text(encoding="utf-8"))
    rule = spec["x-apimsync-corpus"]["rule"]
    errors = {f.rule for f in lint(spec) if f.severity == "error"}
    assert bool(errors) == _rejected(spec), f"{rule}: lint {sorted(errors)}, emulator rejects: {_rejected(spec)}"
    assert (rule in errors) if rule != "none" else not errors, f"{rule}: lint found {sorted(errors)}"


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_after_the_pipeline_both_agree_and_repairs_are_accepted(path: Path) -> None:
    spec = json.loads(path.read_text(encoding="utf-8"))
    rule = spec["x-apimsync-corpus"]["rule"]
    ctx = TransformContext(endpoint="e", server_url="https://adb-1.2.azuredatabricks.net/serving-endpoints/e",
                           variables={"workspace": "w", "api_id": "e"})
    out = load_pipeline().run(spec, ctx)
    errors = {f.rule for f in lint(out) if f.severity == "error"}
    assert bool(errors) == _rejected(out), f"{rule}: lint {sorted(errors)} after the pipeline"
    assert (not errors) is (rule in REPAIRED), f"{rule}: after the pipeline, lint says {sorted(errors)}"
