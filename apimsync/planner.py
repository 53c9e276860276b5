"""Planning: compare desired and actual APIs and decide, per API, create / update / no-op / delete.

Pure: no I/O. :class:`Planner` decides as the desired APIs arrive (a create or update that needs no other endpoint
is decided at once, so it can be applied while other specs are still fetched), then the whole :class:`Plan`.
Safety lives here too: deletes happen only for APIs apimsync owns, only with prune on, never for protected ids,
never when the source came back empty, and never beyond the configured share of owned APIs unless forced.
"""

from __future__ import annotations

import fnmatch
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

from apimsync.changes import (
    API,
    API_SETTINGS,
    DELETE,
    POLICY,
    Action,
    Change,
    Failure,
    NamedValueChange,
    Plan,
    Resource,
    Skip,
    Write,
)
from apimsync.model import ActualApi, DesiredApi
from apimsync.resources import apis, links, policies


def _matches_any(name: str, globs: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in globs)


def _update_reasons(desired: DesiredApi, actual: ActualApi) -> tuple[list[str], list[Write]]:
    """(reasons, writes) for an API that exists and is owned: each resource's own comparison."""
    reasons, spec_changed = apis.reasons(desired, actual)
    writes = [API if spec_changed else API_SETTINGS] if reasons else []
    policy = policies.reasons(desired, actual)
    reasons += policy
    writes += [POLICY] if policy else []
    products, tags = links.missing(desired, actual)
    reasons += [f"not in product {p}" for p in products] + [f"missing tag {t}" for t in tags]
    writes += [Write(Resource.PRODUCT, p) for p in products] + [Write(Resource.TAG, t) for t in tags]
    return reasons, writes


def decide(d: DesiredApi, existing: ActualApi | None) -> Change:
    """The change of one desired API whose conflicts are settled: create it, or update what differs."""
    if existing is None:
        writes = (API, POLICY, *(Write(Resource.PRODUCT, p) for p in d.products),
                  *(Write(Resource.TAG, t) for t in d.tags))
        return Change(d.api_id, Action.CREATE, ("new endpoint",), d.workspace, d.endpoint, writes, desired=d)
    reasons, writes_list = _update_reasons(d, existing)
    action = Action.UPDATE if writes_list else Action.NOOP
    return Change(d.api_id, action, tuple(reasons), d.workspace, d.endpoint, tuple(writes_list), desired=d,
                  actual=existing)


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
        changes.append(decide(d, existing))

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


def drop_collisions(desired: Sequence[DesiredApi]) -> tuple[list[DesiredApi], list[Failure]]:
    """Two endpoints mapping to one api id or one path: both fail, before anything is written."""
    by_key: dict[tuple[str, str], list[DesiredApi]] = defaultdict(list)
    for d in desired:
        by_key[("api id", d.api_id)].append(d)
        by_key[("path", d.settings.path.lower())].append(d)
    bad: dict[str, Failure] = {}
    for (what, value), group in by_key.items():
        if len(group) > 1:
            names = ", ".join(f"{d.workspace}/{d.endpoint}" for d in group)
            for d in group:
                bad.setdefault(d.api_id + d.endpoint, Failure(
                    d.workspace, d.endpoint, "naming", f"{what} '{value}' is produced by several endpoints: {names}",
                    d.api_id))
    keep = [d for d in desired if d.api_id + d.endpoint not in bad]
    return keep, list(bad.values())


class Planner:
    """A plan decided as the desired APIs arrive, from any thread: :meth:`offer` each, then :meth:`complete`.

    ``listed`` is every API in the service as listed (without policies); ``claims`` the (api id, lower-case path)
    the naming gives each chosen endpoint (None where it cannot). An offered API whose decision needs no other
    endpoint is decided at once: not one whose api id or path another endpoint also claims (both fail), nor one
    whose path an existing API holds (a conflict, or a delete that must come first), nor one whose id an API
    that is not ours, or another environment's, holds (a conflict). The complete plan decides those, and decides
    the early ones the same way.
    """

    def __init__(self, target: str, listed: Sequence[ActualApi], claims: Iterable[tuple[str, str] | None], *,
                 environment: str = "", early: bool = True) -> None:
        self.target = target
        self.early = early  # decide early at all (only when someone applies early: a plan alone need not wait)
        self.environment = environment
        self._claims: dict[tuple[str, str], int] = defaultdict(int)
        for claim in claims:
            if claim is not None:
                self._claims[("id", claim[0])] += 1
                self._claims[("path", claim[1])] += 1
        self._paths: dict[str, set[str]] = defaultdict(set)
        for a in listed:
            self._paths[a.settings.path.lower()].add(a.api_id)
        self._listed = {a.api_id: a for a in listed}
        self._offered: list[DesiredApi] = []
        self._lock = threading.Lock()

    def offer(self, d: DesiredApi, actual: Callable[[], Sequence[ActualApi]]) -> Change | None:
        """Take ``d`` into the plan; its create or update when that can be decided now, else None. ``actual``
        gives the service's APIs with their policies (asked for only when ``d``'s API exists)."""
        with self._lock:
            self._offered.append(d)
        if not self.early or not self._decidable(d):
            return None
        existing = next((a for a in actual() if a.api_id == d.api_id), None) if d.api_id in self._listed else None
        change = decide(d, existing)
        return change if change.action in (Action.CREATE, Action.UPDATE) else None

    def _decidable(self, d: DesiredApi) -> bool:
        path = d.settings.path.lower()
        if self._claims[("id", d.api_id)] != 1 or self._claims[("path", path)] != 1:
            return False
        if self._paths.get(path, {d.api_id}) != {d.api_id}:  # another API holds the path (maybe beside this one)
            return False
        existing = self._listed.get(d.api_id)
        return existing is None or (existing.marker is not None and existing.marker.environment
                                    in (self.environment, ""))

    def complete(self, actual: Sequence[ActualApi], *, workspaces: Iterable[str], skipped: Sequence[Skip] = (),
                 failures: Sequence[Failure] = (), named_values: Sequence[NamedValueChange] = (),
                 prune: bool = False, max_delete_fraction: float = 0.3, protect: Sequence[str] = (),
                 force: bool = False, endpoint: str | None = None, empty_workspaces: Iterable[str] = ()) -> Plan:
        """The plan over everything offered (see :func:`make_plan`)."""
        desired, collisions = drop_collisions(self._in_order())
        return make_plan(self.target, desired, actual, workspaces=workspaces, skipped=skipped,
                         failures=[*failures, *collisions], named_values=named_values, prune=prune,
                         max_delete_fraction=max_delete_fraction, protect=protect, force=force, endpoint=endpoint,
                         environment=self.environment, empty_workspaces=empty_workspaces)

    def offered(self) -> list[DesiredApi]:
        """The desired APIs offered so far that no other endpoint collides with."""
        return drop_collisions(self._in_order())[0]

    def _in_order(self) -> list[DesiredApi]:
        """What was offered, in one order whatever the threads' (a plan's checksum must not depend on timing)."""
        with self._lock:
            return sorted(self._offered, key=lambda d: (d.workspace, d.endpoint, d.api_id))
