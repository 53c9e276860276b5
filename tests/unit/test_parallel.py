"""apimsync.parallel.gather: the one thread pool (order kept, errors per item, progress as items finish)."""

from __future__ import annotations

import threading
import time

from apimsync.parallel import gather, split


def test_results_keep_the_items_order_and_errors_stay_with_their_item() -> None:
    def work(n: int) -> int:
        time.sleep(0.01 * (5 - n))  # finish in reverse order
        if n == 3:
            raise ValueError("three")
        return n * 10

    seen: list[tuple[str, int, int]] = []
    out = gather([1, 2, 3, 4], work, 4, lambda phase, done, total: seen.append((phase, done, total)), "x")
    assert [item for item, _ in out] == [1, 2, 3, 4]
    assert [r for _, r in out if not isinstance(r, Exception)] == [10, 20, 40]
    assert isinstance(out[2][1], ValueError) and str(out[2][1]) == "three"
    assert [s[1] for s in seen] == [1, 2, 3, 4] and {s[0] for s in seen} == {"x"} and {s[2] for s in seen} == {4}


def test_never_more_threads_than_workers() -> None:
    running, peak, lock = [0], [0], threading.Lock()

    def work(_: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1

    gather(list(range(20)), work, 3)
    assert peak[0] == 3
    assert gather([], work, 3) == []


def test_the_plan_stage_splits_its_threads() -> None:
    assert split(8) == (4, 4) and split(5) == (3, 2) and split(1) == (1, 1)
