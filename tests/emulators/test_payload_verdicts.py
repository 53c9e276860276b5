"""The emulated data plane accepts exactly what MLflow accepts, and verify sends what MLflow accepts.

tests/data/payloads/verdicts.json is what MLflow's own code (mlflow-skinny 3.18.0: the scoring server's JSON
parsing, ChatCompletionRequest, ChatAgentRequest, ResponsesAgentRequest) says of each body in corpus.json; it is
written by tests/data/payloads/mlflow_verdicts.py where MLflow is installed, and read here without MLflow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from apimsync.emulators.dataplane import check_payload
from apimsync.kinds import TASKS

HERE = Path(__file__).resolve().parents[1] / "data" / "payloads"
CORPUS = json.loads((HERE / "corpus.json").read_text(encoding="utf-8"))["payloads"]
VERDICTS = json.loads((HERE / "verdicts.json").read_text(encoding="utf-8"))["verdicts"]


def test_every_corpus_entry_has_mlflows_verdict() -> None:
    assert {e["id"] for e in CORPUS} == set(VERDICTS)


@pytest.mark.parametrize("entry", CORPUS, ids=[e["id"] for e in CORPUS])
def test_the_data_plane_gives_mlflows_verdict(entry: dict[str, Any]) -> None:
    problem = check_payload(entry["task"], {}, entry["body"])
    assert (problem is None) is VERDICTS[entry["id"]]["accepted"], problem or VERDICTS[entry["id"]]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_verify_sends_for_each_task_a_body_mlflow_accepts(task: str) -> None:
    (entry,) = [e for e in CORPUS if e["id"] == f"verify:{task}"]
    assert entry["body"] == TASKS[task].request, "verify changed its body: add it to corpus.json and rerun the script"
    assert VERDICTS[entry["id"]]["accepted"]
