"""A plan: what happens to each API and named value, and why. Inert data that prints as terraform-style text,
serialises to JSON (with a checksum) and renders as HTML; :mod:`apimsync.planner` makes it, apply takes only a
plan.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from apimsync import html
from apimsync.model import ActualApi, DesiredApi
from apimsync.secrets import Secret
from apimsync.text import printable

FORMAT_VERSION = 1


class Action(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    NOOP = "no-op"
    DELETE = "delete"


SYMBOL = {Action.CREATE: "+", Action.UPDATE: "~", Action.NOOP: " ", Action.DELETE: "-"}


class Resource(str, Enum):
    """What an ARM write changes, in the order an API's writes are applied."""

    API = "api"  # the API with its spec
    API_SETTINGS = "api-settings"  # the API without its spec
    POLICY = "policy"
    PRODUCT = "product"  # a product link
    TAG = "tag"  # a tag link
    DELETE = "delete"  # the API, with its revisions


@dataclass(frozen=True)
class Write:
    """One ARM write a change takes: to ``resource``; a link's ``target`` names the product or tag."""

    resource: Resource
    target: str = ""

    def __str__(self) -> str:
        return f"{self.resource.value}:{self.target}" if self.target else self.resource.value


API, API_SETTINGS, POLICY, DELETE = (Write(Resource.API), Write(Resource.API_SETTINGS), Write(Resource.POLICY),
                                     Write(Resource.DELETE))


@dataclass(frozen=True)
class Change:
    """What happens to one API, why, and which ARM writes that takes."""

    api_id: str
    action: Action
    reasons: tuple[str, ...]
    workspace: str | None = None
    endpoint: str | None = None
    writes: tuple[Write, ...] = ()
    desired: DesiredApi | None = field(default=None, compare=False, repr=False)
    actual: ActualApi | None = field(default=None, compare=False, repr=False)

    @property
    def notes(self) -> tuple[str, ...]:
        return self.desired.notes if self.desired is not None else ()

    def to_dict(self) -> dict[str, Any]:
        return {"api_id": self.api_id, "action": self.action.value, "reasons": list(self.reasons),
                "workspace": self.workspace, "endpoint": self.endpoint, "writes": [str(w) for w in self.writes],
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Skip:
    """An endpoint left alone this run (not READY, no schema); its existing API is kept as it is."""

    workspace: str
    endpoint: str
    reason: str
    api_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"workspace": self.workspace, "endpoint": self.endpoint, "reason": self.reason, "api_id": self.api_id}


@dataclass(frozen=True)
class Failure:
    """An endpoint that cannot be published this run; its existing API, if any, is kept as it is."""

    workspace: str
    endpoint: str
    stage: str  # fetch | transform | lint | naming | policy | conflict | apply
    message: str
    api_id: str | None = None
    findings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"workspace": self.workspace, "endpoint": self.endpoint, "stage": self.stage,
                "message": self.message, "api_id": self.api_id, "findings": list(self.findings)}


@dataclass(frozen=True)
class NamedValueChange:
    """The named value the policy reads its token from. The secret is carried for apply, never rendered."""

    name: str
    action: Action
    reasons: tuple[str, ...]
    source: str  # env | key_vault | databricks_secret
    secret_value: Secret | None = field(default=None, compare=False, repr=False)
    key_vault_id: str | None = None
    identity_client_id: str | None = None
    fingerprint: str | None = field(default=None, compare=False, repr=False)  # keyed: see Secret.fingerprint

    def to_dict(self) -> dict[str, Any]:
        # neither the value nor its fingerprint: a plan file travels (reviews, CI artifacts), and a fingerprint
        # would let its reader confirm a guessed token; a rotation shows as the update and its reason
        return {"name": self.name, "action": self.action.value, "reasons": list(self.reasons),
                "source": self.source, "key_vault_id": self.key_vault_id}


CHECKSUM_EXCLUDES = ("format_version", "created_at", "checksum", "drift_check")


def checksum_of(plan: dict[str, Any]) -> str:
    """sha256 over a plan's content as written by ``plan --out`` (all but its format, time and checksum): what
    ``sync --plan`` recomputes over a reviewed file, so an edit to the file is noticed, not applied."""
    content = json.dumps({k: v for k, v in plan.items() if k not in CHECKSUM_EXCLUDES}, sort_keys=True,
                         separators=(",", ":"))
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Plan:
    target: str
    environment: str | None = None
    changes: tuple[Change, ...] = ()
    named_values: tuple[NamedValueChange, ...] = ()
    skipped: tuple[Skip, ...] = ()
    failures: tuple[Failure, ...] = ()
    withheld: tuple[str, ...] = ()  # safety guards that kept deletes out of the plan
    drift_check: str = ""  # whether this plan read every policy, or trusted the markers (not in the checksum)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action is action)

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NOOP for c in self.changes) or any(
            n.action is not Action.NOOP for n in self.named_values)

    @property
    def summary(self) -> str:
        return (f"Plan: {self.count(Action.CREATE)} to create, {self.count(Action.UPDATE)} to update, "
                f"{self.count(Action.DELETE)} to delete, {self.count(Action.NOOP)} unchanged"
                + (f", {len(self.skipped)} skipped" if self.skipped else "")
                + (f", {len(self.failures)} failed" if self.failures else "") + ".")

    def to_dict(self) -> dict[str, Any]:
        data = {"format_version": FORMAT_VERSION, "target": self.target, "environment": self.environment,
                "created_at": self.created_at, **self._content()}
        return {**data, "checksum": checksum_of(data)}

    def _content(self) -> dict[str, Any]:
        return {
            "summary": self.summary, "has_changes": self.has_changes,
            "changes": [c.to_dict() for c in self.changes],
            "named_values": [n.to_dict() for n in self.named_values],
            "skipped": [s.to_dict() for s in self.skipped],
            "failures": [f.to_dict() for f in self.failures],
            "withheld": list(self.withheld), "drift_check": self.drift_check,
        }

    @property
    def checksum(self) -> str:
        """sha256 over the plan's content (all but when it was made): ``sync --plan`` applies a reviewed plan
        only when planning again gives the same checksum, as octodns and Terraform do."""
        return checksum_of(self.to_dict())

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def __str__(self) -> str:
        lines = [f"apimsync plan for {self.target}" + (f" (environment {self.environment})"
                                                        if self.environment else ""), ""]
        for nv in self.named_values:
            lines.append(f"  {SYMBOL[nv.action]} named value {nv.name} ({nv.source})"
                         + (f": {'; '.join(nv.reasons)}" if nv.reasons else ""))
        for c in sorted(self.changes, key=lambda c: (c.action is Action.NOOP, c.api_id)):
            where = f" <- {c.workspace}/{c.endpoint}" if c.endpoint else ""
            lines.append(f"  {SYMBOL[c.action]} {c.api_id}{where} ({c.action.value})"
                         + (f": {'; '.join(c.reasons)}" if c.reasons else "")
                         + (f" [{'; '.join(c.notes)}]" if c.notes else ""))
        for s in self.skipped:
            lines.append(f"  ! skipped {s.workspace}/{s.endpoint}: {s.reason}")
        for f in self.failures:
            lines.append(f"  x failed {f.workspace}/{f.endpoint} [{f.stage}]: {f.message}")
            lines.extend(f"      {finding}" for finding in f.findings[:10])
        for w in self.withheld:
            lines.append(f"  ! {w}")
        if self.drift_check:
            lines += ["", f"Drift check: {self.drift_check}."]
        lines += ["", self.summary]
        return "\n".join(printable(line) for line in lines)

    def _repr_html_(self) -> str:
        rows = [(c.action.value, c.api_id, f"{c.workspace}/{c.endpoint}" if c.endpoint else "",
                 "; ".join((*c.reasons, *(f"[{n}]" for n in c.notes))))
                for c in self.changes]
        rows += [("skipped", s.api_id or "", f"{s.workspace}/{s.endpoint}", s.reason) for s in self.skipped]
        rows += [("failed", f.api_id or "", f"{f.workspace}/{f.endpoint}", f"[{f.stage}] {f.message}")
                 for f in self.failures]
        rows += [(n.action.value, f"named value {n.name}", n.source, "; ".join(n.reasons)) for n in self.named_values]
        notes = [*self.withheld, self.summary]
        return html.table(f"apimsync plan — {self.target}", ("action", "api", "endpoint", "reasons"), rows, notes)
