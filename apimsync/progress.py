"""Progress bars for long runs on a terminal (tqdm), one per phase (``plan``: fetch and transform, ``apply``).

A large sync runs at the pace of ARM's write bucket, which the rate of its first seconds (spent from a full bucket)
overstates: the apply bar shows the bucket's own estimate beside tqdm's, from the throttle gate's remaining-token
counts, when ARM reports them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

WRITES_PER_API = 2  # an API with its spec, and its policy


class Bars:
    """A :data:`apimsync.parallel.Progress` drawing one tqdm bar per phase on stderr; :meth:`close` when done."""

    def __init__(self, bucket_eta: Callable[[int], float | None] | None = None) -> None:
        self.bucket_eta = bucket_eta  # seconds ARM's write bucket needs for this many more writes, if known
        self._bars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, phase: str, done: int, total: int) -> None:
        from tqdm import tqdm

        with self._lock:
            bar = self._bars.get(phase)
            if bar is None:
                bar = self._bars[phase] = tqdm(total=total, desc=f"{phase:>5}", unit="api", file=sys.stderr,
                                               position=len(self._bars), dynamic_ncols=True, leave=True)
            bar.total = max(total, done)  # the apply phase learns its total as the plan is made
            bar.n = done
            eta = self.bucket_eta(WRITES_PER_API * (total - done)) if self.bucket_eta and phase == "apply" else None
            if eta is not None:
                bar.set_postfix_str(f"ARM write bucket: ~{eta:.0f}s to go", refresh=False)
            bar.refresh()

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            self._bars.clear()
