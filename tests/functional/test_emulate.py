"""`apimsync emulate`: an offline sandbox a user points apimsync at; it stops cleanly and leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError("emulate did not print " + marker + ":\n" + "".join(lines))


def port_is_closed(url: str) -> bool:
    host, port = re.search(r"//([\d.]+):(\d+)", url).groups()  # type: ignore[union-attr]
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) != 0


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_emulate_prints_a_working_config_and_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    ca = tmp_path / "ca.pem"
    state = tmp_path / "apim-state.json"
    proc = subprocess.Popen([sys.executable, "-m", "apimsync", "emulate", "--ca-out", str(ca), "--state", str(state),
                             "--endpoints", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        printed = read_until(proc, "export APIMSYNC_DEMO_TOKEN")
        dbx_url = re.search(r"Databricks emulator: (\S+)", printed).group(1)  # type: ignore[union-attr]
        apim_url = re.search(r"APIM emulator:\s+(\S+)", printed).group(1)  # type: ignore[union-attr]
        assert ca.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        config = yaml.safe_load(printed.split("# apimsync.yaml for the sandbox:", 1)[1].split("# environment:")[0])
        assert config["apim"]["base_url"] == apim_url and config["apim"]["ca_bundle"] == str(ca.resolve())
        env = dict(re.findall(r"export (\w+)=(\S+)", printed))
        config_file = tmp_path / "apimsync.yaml"
        config_file.write_text(yaml.safe_dump(config))
        # a user points apimsync at the sandbox with exactly what it printed
        sync = subprocess.run([sys.executable, "-m", "apimsync", "-o", "json", "sync", "--config", str(config_file)],
                              capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
        assert sync.returncode == 0, sync.stderr
        assert '"ok": true' in sync.stdout
    finally:
        proc.send_signal(stop)
        code = proc.wait(timeout=20)
    assert code == 0
    assert port_is_closed(dbx_url) and port_is_closed(apim_url)
    assert "dbx-syn-0000" in state.read_text(), "the emulated APIM kept its state in the file"
