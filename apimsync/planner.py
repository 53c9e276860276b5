"""Planning: compare desired and actual APIs and decide, per API, create / update / no-op / delete.

Pure: no I/O. A :class:`Plan` is inert data that prints as terraform-style text, serialises to JSON and renders
as HTML; apply takes only a plan. Safety lives here too: deletes happen only for APIs apimsync owns, only with
prune on, never for protected ids, never when the source came back empty, and never beyond the configured
share of owned APIs unless forced.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterable, Sequence
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


@dataclass(frozen=True)
class Write:
    """One ARM write a change takes: the API (``api`` with its spec, ``api-settings`` without), its ``policy``, a
    ``product`` or ``tag`` link (``target`` names it), or its ``delete``."""

    kind: str
    target: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


API, API_SETTINGS, POLICY, DELETE = Write("api"), Write("api-settings"), Write("policy"), Write("delete")


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


CHECKSUM_EXCLUDES = ("format_version", "created_at", "checksum")


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
            "withheld": list(self.withheld),
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


def _matches_any(name: str, globs: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def _update_reasons(desired: DesiredApi, actual: ActualApi) -> tuple[list[str], list[Write]]:
    """(reasons, writes) for an API that exists and is owned."""
    reasons: list[str] = []
    writes: list[Write] = []
    marker = actual.marker
    want = desired.marker
    spec_changed = marker is None or marker.spec != want.spec
    if spec_changed:
        reasons.append("spec changed")
    differing = desired.settings.differences(actual.settings)
    if marker is not None and marker.settings != want.settings:
        reasons.append("settings changed" + (f": {', '.join(differing)}" if differing else ""))
    elif differing:
        reasons.append(f"drift: {', '.join(differing)} edited outside apimsync")
    if marker is not None and (marker.workspace, marker.endpoint) != (want.workspace, want.endpoint):
        reasons.append(f"source moved to {want.workspace}/{want.endpoint}")
    if marker is not None and marker.environment != want.environment:
        reasons.append(f"adopted by environment {want.environment}")
    if not reasons and marker is not None and want.source and marker.source != want.source:
        # the spec is the same, but what determines it moved (or a marker from before fingerprints): record it
        # once, so the next run need not fetch the spec again
        reasons.append("spec source recorded")
    if reasons:
        writes.append(API if spec_changed else API_SETTINGS)
    if actual.policy_xml is None:
        reasons.append("policy missing")
        writes.append(POLICY)
    elif actual.policy_xml != desired.policy_xml and actual.policy_form != desired.policy_form:
        reasons.append("policy differs from the template (changed, or edited outside apimsync)")
        writes.append(POLICY)
    for product in desired.products:
        if product not in actual.products:
            reasons.append(f"not in product {product}")
            writes.append(Write("product", product))
    for tag in desired.tags:
        if tag not in actual.tags:
            reasons.append(f"missing tag {tag}")
            writes.append(Write("tag", tag))
    return reasons, writes


def make_plan(
    target: str,
    desired: Sequence[DesiredApi],
    actual: Sequence[ActualApi],
    *,
    workspaces: Iterable[str],
    skipped: Sequence[Skip] = (),
    failures: Sequence[Failure] = (),
    named_values: Sequence[NamedValueChange] = (),
    prune: bool = False,
    max_delete_fraction: float = 0.3,
    protect: Sequence[str] = (),
    force: bool = False,
    endpoint: str | None = None,
    environment: str = "",
    empty_workspaces: Iterable[str] = (),
) -> Plan:
    """Decide every API's change. ``actual`` is every API in the service; only owned ones can change.

    ``skipped`` and ``failures`` name endpoints that exist in Databricks but cannot be published now: their APIs
    are held as they are. ``empty_workspaces`` returned no endpoints at all for the selection: their APIs are never
    deleted (an auth or listing problem must not empty APIM), even with ``force``.
    """
    actual_by_id = {a.api_id: a for a in actual}
    workspace_set = set(workspaces)
    failures_out = list(failures)
    changes: list[Change] = []
    withheld: list[str] = []
    desired_ids: set[str] = set()
    desired_paths: dict[str, str] = {}

    for d in sorted(desired, key=lambda d: d.api_id):
        existing = actual_by_id.get(d.api_id)
        path_owner = next((a for a in actual if a.settings.path == d.settings.path and a.api_id != d.api_id), None)
        if existing is not None and not existing.owned:
            failures_out.append(Failure(d.workspace, d.endpoint, "conflict", api_id=d.api_id,
                                        message=f"API '{d.api_id}' exists in APIM and is not managed by apimsync"))
            continue
        other_env = existing.marker.environment if existing is not None and existing.marker else ""
        if other_env and other_env != environment:  # (an API without an environment is adopted, below)
            failures_out.append(Failure(d.workspace, d.endpoint, "conflict", api_id=d.api_id,
                                        message=f"API '{d.api_id}' belongs to environment '{other_env}'; give "
                                                "this environment its own naming"))
            continue
        if path_owner is not None and not _will_be_deleted(path_owner, desired, prune, protect):
            failures_out.append(Failure(
                d.workspace, d.endpoint, "conflict", api_id=d.api_id,
                message=f"path '{d.settings.path}' is already used by API '{path_owner.api_id}'"))
            continue
        desired_ids.add(d.api_id)
        desired_paths[d.settings.path] = d.api_id
        if existing is None:
            writes = (API, POLICY, *(Write("product", p) for p in d.products), *(Write("tag", t) for t in d.tags))
            changes.append(Change(d.api_id, Action.CREATE, ("new endpoint",), d.workspace, d.endpoint, writes,
                                  desired=d))
            continue
        reasons, writes_list = _update_reasons(d, existing)
        action = Action.UPDATE if writes_list else Action.NOOP
        changes.append(Change(d.api_id, action, tuple(reasons), d.workspace, d.endpoint, tuple(writes_list),
                              desired=d, actual=existing))

    held = {(s.workspace, s.endpoint) for s in skipped} | {(f.workspace, f.endpoint) for f in failures_out}
    owned = [a for a in actual if a.owned and a.marker and a.marker.workspace in workspace_set
             and a.marker.environment == environment]  # another environment's APIs are not ours
    for a in owned:
        marker = a.marker
        assert marker is not None
        if a.api_id in desired_ids:
            continue
        if (marker.workspace, marker.endpoint) in held:
            changes.append(Change(a.api_id, Action.NOOP, ("endpoint held: see skipped/failed",),
                                  marker.workspace, marker.endpoint, actual=a))
            continue
        candidates_reason = "endpoint gone"
        if not prune:
            changes.append(Change(a.api_id, Action.NOOP, (f"{candidates_reason}; kept (prune is off)",),
                                  marker.workspace, marker.endpoint, actual=a))
            continue
        if _matches_any(a.api_id, protect):
            changes.append(Change(a.api_id, Action.NOOP, (f"{candidates_reason}; kept (protected)",),
                                  marker.workspace, marker.endpoint, actual=a))
            continue
        changes.append(Change(a.api_id, Action.DELETE, (candidates_reason,), marker.workspace, marker.endpoint,
                              (DELETE,), actual=a))

    empty = set(empty_workspaces)
    from_empty = [c for c in changes if c.action is Action.DELETE and c.workspace in empty]
    if from_empty:
        names = ", ".join(sorted({str(c.workspace) for c in from_empty}))
        withheld.append(f"deletes withheld: Databricks returned no endpoints for workspace {names} while its "
                        f"{len(from_empty)} owned APIs exist (an auth or listing problem must never empty APIM)")
        changes = [_withhold(c) if c in from_empty else c for c in changes]
    deletes = [c for c in changes if c.action is Action.DELETE]
    if deletes and not force and len(deletes) > max_delete_fraction * len(owned):
        withheld.append(f"deletes withheld: {len(deletes)} of {len(owned)} owned APIs would be deleted, more than "
                        f"prune.max_delete_fraction={max_delete_fraction:g}; re-run with --force to allow")
        changes = [_withhold(c) if c.action is Action.DELETE else c for c in changes]

    if endpoint is not None:  # one endpoint's plan (import): its changes only
        changes = [c for c in changes if c.endpoint == endpoint]
    return Plan(target=target, environment=environment or None, changes=tuple(changes),
                named_values=tuple(named_values), skipped=tuple(skipped),
                failures=tuple(failures_out), withheld=tuple(withheld))


def _withhold(change: Change) -> Change:
    return Change(change.api_id, Action.NOOP, (*change.reasons, "delete withheld"), change.workspace,
                  change.endpoint, actual=change.actual)


def _will_be_deleted(api: ActualApi, desired: Sequence[DesiredApi], prune: bool, protect: Sequence[str]) -> bool:
    """Whether an API whose path a desired API wants will make way for it in this plan."""
    return (api.owned and prune and not _matches_any(api.api_id, protect)
            and all(d.api_id != api.api_id for d in desired))
