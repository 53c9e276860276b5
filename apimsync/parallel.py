"""How apimsync runs work on threads: :func:`gather` (after databrickslabs/blueprint's ``Threads.gather``) for
every stage's items, and three threads or pools beside it, each for one reason.

The work is I/O: HTTP calls to Databricks and to ARM. Each stage (fetch the specs, read the policies, apply,
verify) runs its items with :func:`gather` on at most ``workers`` threads, the ``concurrency`` setting. During
``plan`` the APIM reads run beside the Databricks fetches, so the setting is split between them (:func:`split`):
the fetches get ``concurrency - concurrency // 2`` threads, the policy reads ``concurrency // 2`` (at least one
each). Beside ``gather``:

- one coordinating thread (``Engine._plan``) reads APIM's side while the specs are fetched;
- the applier's pool (``apimsync.apply.Applier``, ``apply_concurrency`` threads) starts the creates and updates
  the planner decides early, while the plan is still being made, then the rest of the plan;
- one daemon thread renews the service-wide lock while a sync holds it (``apimsync.lock``).

Shared between threads: the SDK clients (one ``requests`` session each, safe for concurrent requests; one pooled
connection per worker), the throttle gate of :mod:`apimsync.pacing` (its counters are behind a lock) and the
planner (behind its lock). Nothing else is shared: each item's function builds its own values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[str, int, int], None]


def gather(items: Sequence[T], fn: Callable[[T], R], workers: int, progress: Progress | None = None,
           phase: str = "") -> list[tuple[T, R | Exception]]:
    """``fn`` over ``items`` on at most ``workers`` threads; (item, result or the exception it raised), in the
    items' order. ``progress(phase, done, total)`` is called as items finish."""
    if not items:
        return []
    results: list[R | Exception | None] = [None] * len(items)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        try:
            for done, future in enumerate(as_completed(futures), 1):
                error = future.exception()
                results[futures[future]] = error if isinstance(error, Exception) else future.result()
                if isinstance(error, BaseException) and not isinstance(error, Exception):
                    raise error  # KeyboardInterrupt, SystemExit: not an item's failure
                if progress:
                    progress(phase, done, len(items))
        except BaseException:
            for future in futures:  # an interrupted stage starts nothing more; running items finish
                future.cancel()
            raise
    return [(item, result) for item, result in zip(items, results, strict=True)]  # type: ignore[misc]


def split(workers: int) -> tuple[int, int]:
    """(fetch workers, APIM read workers) for the plan stage, which runs both at once."""
    side = max(1, workers // 2)
    return max(1, workers - side), side
