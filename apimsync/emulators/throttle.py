"""ARM's per-subscription token buckets (Learn, "Understand how Azure Resource Manager throttles requests"), with
emulated time."""

from __future__ import annotations

import math
import threading
import time


class TokenBucket:
    """``capacity`` tokens refilled at ``rate`` per emulated second; time runs ``time_scale`` times faster."""

    def __init__(self, capacity: float, rate: float, time_scale: float = 1.0) -> None:
        self.capacity = capacity
        self.rate = rate * time_scale  # tokens per real second
        self._tokens = capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self) -> tuple[bool, int, float]:
        """Take one token: (granted, tokens remaining, real seconds until one is available)."""
        with self._lock:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return True, int(self._tokens), 0.0
            return False, 0, (1 - self._tokens) / self.rate if self.rate > 0 else math.inf

    def remaining(self) -> int:
        with self._lock:
            self._refill()
            return int(self._tokens)
