"""The emulators are an extra (`apimsync[emulate]`): a sync job installs neither trustme nor jsonschema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from apimsync.emulators.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
EMULATOR_ONLY = ("trustme", "jsonschema")
# the CLI in a process where the emulators' dependencies cannot be imported, as after `pip install apimsync`
WITHOUT_EXTRAS = (f"import sys; sys.modules.update(dict.fromkeys({EMULATOR_ONLY!r})); sys.argv[0] = 'apimsync'; "
                  "from apimsync.cli import main; main()")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})}, cwd=ROOT)


def test_the_core_dependencies_leave_the_emulators_out() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = " ".join(project["dependencies"])
    assert not any(name in core for name in EMULATOR_ONLY)
    emulate = " ".join(project["optional-dependencies"]["emulate"])
    assert all(name in emulate for name in EMULATOR_ONLY)
    assert "apimsync[emulate]" in project["optional-dependencies"]["test"]


def test_sync_and_verify_work_without_the_extra_and_demo_says_how_to_get_it(sandbox: Sandbox,
                                                                             tmp_path: Path) -> None:
    config = tmp_path / "apimsync.yaml"
    config.write_text(sandbox.config_yaml(), encoding="utf-8")
    synced = _cli("sync", "--config", str(config), env=sandbox.env())
    assert synced.returncode == 0, synced.stdout[-2000:] + synced.stderr[-2000:]
    checked = _cli("verify", "--config", str(config), env=sandbox.env())
    assert checked.returncode == 0 and "Verified 8 of 8" in checked.stdout, checked.stdout + checked.stderr
    demo = _cli("demo")
    assert demo.returncode == 2
    assert demo.stderr.strip() == 'Error: the emulators need trustme, jsonschema: pip install "apimsync[emulate]"'
