"""The throttle gate: one azure-core pipeline policy shared by every worker of a run. It counts ARM calls, holds
every request while ARM says to back off (a 429's ``Retry-After``), and paces requests from the remaining-token
counts ARM reports before the bucket runs dry.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any


def retry_after_seconds(headers: Any) -> float | None:
    """The delay a throttled or busy response asks for (ms headers first, as azure-core reads them)."""
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return float(value) / scale
            except ValueError:
                continue
    return None


# ARM's 2024 token buckets per subscription, refill per second (Learn, "Understand how Azure Resource Manager
# throttles requests"): the prior for pacing, corrected from the remaining counts ARM reports
REFILL_PER_SECOND = {"reads": 25.0, "writes": 10.0, "deletes": 10.0}


def _kind(method: str) -> str:
    return "reads" if method in ("GET", "HEAD") else "deletes" if method == "DELETE" else "writes"


def gate_policy(reserve: int = 8, pacing: bool = True) -> Any:
    from azure.core.pipeline.policies import HTTPPolicy

    class ThrottleGate(HTTPPolicy):
        """Shared by all workers: counts calls, holds every request while ARM says to back off (429), and paces
        requests before the bucket runs dry.

        Pacing: ARM reports the tokens left after each call (``x-ms-ratelimit-remaining-subscription-{kind}``).
        When fewer than ``reserve`` (the number of workers) would be left, a request waits for the refill of the
        missing tokens; the refill rate starts at ARM's documented one and follows what the counts show."""

        def __init__(self) -> None:
            super().__init__()
            self._lock = threading.Lock()
            self._until = 0.0
            self.calls: Counter[str] = Counter()
            self.reserve = reserve
            self.pacing = pacing
            self._remaining: dict[str, tuple[float, float]] = {}  # kind -> (count, when), minus requests sent since
            self._sample: dict[str, tuple[float, int, int]] = {}  # kind -> (time, count, calls sent then)
            self._rate = dict(REFILL_PER_SECOND)

        def send(self, request: Any) -> Any:
            wait = self._until - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            kind = _kind(request.http_request.method.upper())
            if self.pacing:
                self._pace(kind)
            with self._lock:
                self.calls[kind] += 1
            response = self.next.send(request)
            headers = response.http_response.headers
            if response.http_response.status_code == 429:
                delay = retry_after_seconds(headers) or 1.0
                with self._lock:
                    self.calls["throttled"] += 1
                    self._until = max(self._until, time.monotonic() + delay)
                    self._remaining.pop(kind, None)  # the gate holds everyone now; pace afresh from the next count
            else:
                self._observe(kind, headers.get(f"x-ms-ratelimit-remaining-subscription-{kind}"))
            return response

        def seconds_for(self, kind: str, calls: int) -> float | None:
            """How long the bucket needs to grant ``calls`` more, from the last count ARM reported (None: no
            count, an unthrottled service or none seen yet)."""
            with self._lock:
                known = self._remaining.get(kind)
                if known is None:
                    return None
                count, since = known
                left = count + (time.monotonic() - since) * self._rate[kind]
                return max(0.0, calls - left) / self._rate[kind]

        def _pace(self, kind: str) -> None:
            with self._lock:
                known = self._remaining.get(kind)
                if known is None:
                    return
                count, since = known
                now = time.monotonic()
                left = count + (now - since) * self._rate[kind]  # what has refilled since the count
                self._remaining[kind] = (left - 1, now)  # this request's token
                missing = self.reserve - left
                delay = missing / self._rate[kind] if missing > 0 else 0.0
                if delay > 0:
                    self.calls["paced"] += 1
            if delay > 0:
                time.sleep(min(delay, 30.0))

        def _observe(self, kind: str, header: Any) -> None:
            try:
                count = int(header)
            except (TypeError, ValueError):
                with self._lock:
                    self._remaining.pop(kind, None)  # no count: no pacing on a guess
                return
            now = time.monotonic()
            with self._lock:
                sent = self.calls[kind]
                before = self._sample.get(kind)
                # only near the bottom of the bucket: a full bucket refills nothing and would read as a slow one
                if before is not None and now - before[0] >= 0.5 and max(count, before[1]) < 4 * self.reserve:
                    # refill = tokens gained back plus tokens spent, over the time between the two counts
                    gained = (count - before[1] + (sent - before[2])) / (now - before[0])
                    prior = REFILL_PER_SECOND[kind]
                    estimate = min(max(gained, 0.1 * prior), 100 * prior)
                    self._rate[kind] = 0.7 * self._rate[kind] + 0.3 * estimate
                if before is None or now - before[0] >= 0.5:
                    self._sample[kind] = (now, count, sent)
                self._remaining[kind] = (float(count), now)

    return ThrottleGate()
