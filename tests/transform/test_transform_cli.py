"""`apimsync transform` and `apimsync lint`: outputs, exit codes, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from apimsync.cli import main
from apimsync.emulators.databricks import DEFAULT_FIXTURES

SEED = DEFAULT_FIXTURES / "openapi" / "agents_main-dbdemos_rag_chatbot-dbdemos_rag_demo.json"  # the real corpus spec


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_transform_to_stdout_file_and_from_stdin(tmp_path: Path) -> None:
    code, out, _ = run("transform", str(SEED))
    assert code == 0 and json.loads(out)["openapi"] == "3.0.3"
    target = tmp_path / "out.json"
    code, out, _ = run("transform", str(SEED), "-o", str(target), "--server-url", "https://apim.example.com/x")
    assert code == 0 and out == ""
    assert json.loads(target.read_text())["servers"] == [{"url": "https://apim.example.com/x"}]
    code, out, _ = run("transform", "-", stdin=SEED.read_text())
    assert code == 0 and "prefixItems" not in out


def test_lint_exit_codes_and_json(tmp_path: Path) -> None:
    code, out, _ = run("lint", str(SEED))
    assert code == 0 and "0 error(s)" in out
    code, out, _ = run("lint", str(SEED), "--pipeline", "none", "-o", "json")
    report = json.loads(out)
    assert code == 1 and report["errors"] >= 2
    assert {f["rule"] for f in report["findings"]} >= {"prefix-items", "openapi-version"}


@pytest.mark.parametrize(("content", "problem"), [
    (b"{not json", "not JSON"),
    (b"\xef\xbb\xbf{}", "byte order mark"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"swagger": "2.0", "paths": {}}', "Swagger 2.0"),
    (b'{"openapi": "3.0.3", "paths": {}}', "no paths"),
])
def test_bad_input_is_one_line_exit_2(tmp_path: Path, content: bytes, problem: str) -> None:
    spec = tmp_path / "spec.json"
    spec.write_bytes(content)
    for command in ("transform", "lint"):
        code, out, err = run(command, str(spec))
        assert code == 2
        assert err.startswith(f"Error: {spec}: ") and problem in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err


def test_missing_file_and_bad_pipeline(tmp_path: Path) -> None:
    code, _, err = run("transform", str(tmp_path / "nope.json"))
    assert code == 2 and "nope.json: cannot read" in err
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("steps:\n  - frobnicate: {}\n")
    code, _, err = run("lint", str(SEED), "--pipeline", str(pipeline))
    assert code == 2 and "unknown step 'frobnicate'" in err and str(pipeline) in err


def test_real_process() -> None:
    done = subprocess.run([sys.executable, "-m", "apimsync", "lint", str(SEED), "-o", "json"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["errors"] == 0


def test_transform_says_when_the_result_would_still_be_refused(tmp_path: Path) -> None:
    """Before, a spec APIM would refuse (here an external $ref) was written with exit 0 and not a word."""
    spec = json.loads(SEED.read_text())
    spec["paths"]["/extra"] = {"post": {"requestBody": {"content": {"application/json": {"schema": {
        "$ref": "other.json#/Thing"}}}}, "responses": {"200": {"description": "ok"}}}}
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(spec))
    target = tmp_path / "out.json"
    code, _, err = run("transform", str(broken), "-o", str(target))
    assert code == 1 and "external-ref" in err and "APIM would refuse" in err
    assert target.exists(), "the result is written all the same, to look at"
