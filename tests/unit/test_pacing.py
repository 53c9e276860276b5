"""The throttle gate's pacing (apimsync/target.py), with a stand-in for the next pipeline stage: pure timing logic.

ARM's remaining counts (x-ms-ratelimit-remaining-subscription-{kind}; Learn, "Understand how Azure Resource Manager
throttles requests") drive it; no count, no pacing.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import apimsync.pacing as target


class Next:
    def __init__(self, answers: list[dict[str, str]]) -> None:
        self.answers = answers

    def send(self, request: Any) -> Any:
        headers = self.answers.pop(0) if self.answers else {}
        return SimpleNamespace(http_response=SimpleNamespace(status_code=200, headers=headers))


def _request(method: str = "PUT") -> Any:
    return SimpleNamespace(http_request=SimpleNamespace(method=method))


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(target.time, "sleep", slept.append)
    return slept


def test_a_low_count_paces_and_a_missing_count_stops_pacing(sleeps: list[float]) -> None:
    gate = target.gate_policy(reserve=8)
    gate.next = Next([{"x-ms-ratelimit-remaining-subscription-writes": "2"}])
    gate.send(_request())  # learns: 2 writes left
    gate.send(_request())  # 8 wanted, 2 left: waits for 6 tokens at 10/s
    assert sleeps and 0.4 < sleeps[0] <= 0.6
    assert gate.calls["paced"] == 1
    sleeps.clear()
    for _ in range(50):  # the answers carry no count any more: no guessing, no growing sleeps
        gate.send(_request())
    assert len(sleeps) <= 1 and sum(sleeps) < 1.0


def test_a_comfortable_count_never_waits(sleeps: list[float]) -> None:
    gate = target.gate_policy(reserve=8)
    gate.next = Next([{"x-ms-ratelimit-remaining-subscription-writes": "150"}] * 20)
    for _ in range(20):
        gate.send(_request())
    assert sleeps == [] and gate.calls["writes"] == 20 and "paced" not in gate.calls


def test_the_bucket_eta_comes_from_the_last_count(sleeps: list[float]) -> None:
    gate = target.gate_policy(reserve=8)
    assert gate.seconds_for("writes", 100) is None, "no count seen: no estimate"
    gate.next = Next([{"x-ms-ratelimit-remaining-subscription-writes": "20"}])
    gate.send(_request())
    eta = gate.seconds_for("writes", 120)  # 100 tokens missing at the documented 10 per second
    assert eta is not None and 9.5 < eta <= 10.0
    assert gate.seconds_for("writes", 10) == 0.0


def test_progress_bars_show_the_bucket_eta(capsys: pytest.CaptureFixture[str]) -> None:
    from apimsync.progress import Bars

    bars = Bars(bucket_eta=lambda writes: writes / 10)
    bars("plan", 3, 10)
    bars("apply", 1, 4)  # 3 APIs to go: 6 writes at 10/s
    bars("apply", 4, 6)  # the apply phase learns its total as the plan is made
    bars.close()
    err = capsys.readouterr().err
    assert "plan" in err and "3/10" in err
    assert "ARM write bucket: ~1s to go" in err and "4/6" in err
