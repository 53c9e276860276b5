"""The emulated service's state, typed at the top, and its JSON persistence (``apimsync emulate --state FILE``).

Records inside the collections stay JSON objects shaped like ARM's properties, so what is stored is what is served.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MASTER = "master"  # the built-in all-access subscription


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _products() -> dict[str, dict[str, Any]]:
    return {p: {"displayName": p.title(), "description": f"{p.title()} product", "subscriptionRequired": True,
                "state": "published"} for p in ("starter", "unlimited")}


def _subscriptions() -> dict[str, dict[str, Any]]:
    return {MASTER: {"displayName": "Built-in all-access subscription", "scope": "/apis", "state": "active",
                     "primaryKey": uuid.uuid4().hex, "secondaryKey": uuid.uuid4().hex, "createdDate": now()}}


@dataclass
class State:
    """Everything the service holds. ``apis``: id → {current, revisions: {n: {props, etag, operations, policy,
    created, updated}}, releases}; ``named_values``, ``tags``, ``products``, ``subscriptions``: id → properties;
    ``api_tags`` / ``product_apis``: links (tag or product id → API ids)."""

    apis: dict[str, dict[str, Any]] = field(default_factory=dict)
    named_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_tags: dict[str, list[str]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=_products)
    product_apis: dict[str, list[str]] = field(default_factory=lambda: {"starter": [], "unlimited": []})
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=_subscriptions)
    etag_counter: int = 1

    @classmethod
    def load(cls, path: Path) -> State:
        """The state saved in ``path`` (unknown keys from other versions are ignored); a file that is not such a
        state raises ValueError naming it."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ValueError(f"{path}: not a state file written by apimsync emulate ({type(exc).__name__})") from None
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a state file written by apimsync emulate (not an object)")
        for key, value in data.items():
            if (key in fields and not isinstance(value, int if key == "etag_counter" else dict)) \
                    or (key == "etag_counter" and isinstance(value, bool)):
                raise ValueError(f"{path}: not a state file written by apimsync emulate ({key})")
        return cls(**{k: v for k, v in data.items() if k in fields})

    def save(self, path: Path) -> None:
        """Write atomically, readable by its owner only: the state holds secret named values and keys."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.unlink(missing_ok=True)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(dataclasses.asdict(self)))
        tmp.replace(path)
