"""Applying a plan: named values first, then creates and updates with bounded concurrency, deletes last.

Each API's own steps run in order (the API and its spec, then its policy, then product and tag links). Updates and
deletes re-read the API first: it must still carry apimsync's marker as planned, and the write is guarded by its
ETag (If-Match), so a concurrent edit fails that one API instead of being overwritten. One API's failure never
stops the others.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from apimsync.errors import ApimsyncError, TargetError
from apimsync.parallel import Progress, gather
from apimsync.planner import API, API_SETTINGS, POLICY, Action, Change, NamedValueChange, Plan
from apimsync.target import ApimTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What applying one change did."""

    api_id: str
    action: Action
    ok: bool
    seconds: float
    error: str | None = None
    writes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"api_id": self.api_id, "action": self.action.value, "ok": self.ok,
                "seconds": round(self.seconds, 3), "error": self.error, "writes": list(self.writes)}


def apply_plan(plan: Plan, apim: ApimTarget, *, concurrency: int = 8, update_strategy: str = "in-place",
               progress: Progress | None = None) -> tuple[list[Outcome], list[Outcome]]:
    """Carry out a plan. Returns (named value outcomes, API outcomes)."""
    nv_outcomes = [_apply_named_value(apim, nv) for nv in plan.named_values if nv.action is not Action.NOOP]
    if any(not o.ok for o in nv_outcomes):
        # the policies reference the named value: without it APIM rejects every policy write
        blocked = [Outcome(c.api_id, c.action, False, 0.0, "not attempted: the named value could not be written")
                   for c in plan.changes if c.action is not Action.NOOP]
        return nv_outcomes, blocked

    todo = [c for c in plan.changes if c.action is not Action.NOOP]
    wanted_paths = {c.desired.settings.path for c in todo if c.desired is not None}
    deletes = [c for c in todo if c.action is Action.DELETE]
    deletes_first = [c for c in deletes if c.actual and c.actual.settings.path in wanted_paths]
    deletes_last = [c for c in deletes if c not in deletes_first]
    upserts = [c for c in todo if c.action in (Action.CREATE, Action.UPDATE)]

    tags = sorted({w.target for c in upserts for w in c.writes if w.kind == "tag"})
    for tag in tags:
        try:
            apim.ensure_tag(tag)
        except TargetError as exc:
            log.warning("%s", exc)

    total = len(todo)
    outcomes: list[Outcome] = []

    def counted(phase: str, done: int, _total: int) -> None:
        if progress:
            progress(phase, len(outcomes) + done, total)

    for changes in (deletes_first, upserts, deletes_last):  # each wave completes before the next starts
        for _change, outcome in gather(changes, lambda c: _apply_change(apim, c, update_strategy), concurrency,
                                       counted, "apply"):
            assert isinstance(outcome, Outcome)  # _apply_change turns every error into a failed Outcome
            level = logging.INFO if outcome.ok else logging.WARNING
            log.log(level, "%s %s: %s", outcome.action.value, outcome.api_id, "ok" if outcome.ok else outcome.error)
            outcomes.append(outcome)
    return nv_outcomes, outcomes


def _apply_named_value(apim: ApimTarget, nv: NamedValueChange) -> Outcome:
    started = time.monotonic()
    try:
        apim.put_named_value(nv)
    except ApimsyncError as exc:
        return Outcome(f"named value {nv.name}", nv.action, False, time.monotonic() - started, str(exc))
    return Outcome(f"named value {nv.name}", nv.action, True, time.monotonic() - started, writes=("named-value",))


def _apply_change(apim: ApimTarget, change: Change, update_strategy: str) -> Outcome:
    started = time.monotonic()
    done: list[str] = []
    try:
        if change.action is Action.DELETE:
            _delete(apim, change)
            done.append("delete")
        else:
            _upsert(apim, change, update_strategy, done)
    except ApimsyncError as exc:
        return Outcome(change.api_id, change.action, False, time.monotonic() - started, str(exc), tuple(done))
    except Exception as exc:  # a bug or an unexpected SDK error must not stop the other APIs
        log.debug("unexpected error applying %s", change.api_id, exc_info=True)
        return Outcome(change.api_id, change.action, False, time.monotonic() - started,
                       f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", tuple(done))
    return Outcome(change.api_id, change.action, True, time.monotonic() - started, writes=tuple(done))


def _recheck(apim: ApimTarget, change: Change) -> str:
    """Re-read an API before changing it: it must still be ours and as planned. Returns its ETag."""
    current = apim.get_api(change.api_id)
    if current is None:
        raise TargetError(f"API {change.api_id} disappeared since the plan; re-run to converge")
    api, etag = current
    planned = change.actual.marker if change.actual else None
    if api.marker is None:
        raise TargetError(f"API {change.api_id} no longer carries apimsync's marker; left untouched")
    if planned is not None and api.marker != planned:
        raise TargetError(f"API {change.api_id} changed since the plan (another sync?); re-run to converge")
    return etag


def _delete(apim: ApimTarget, change: Change) -> None:
    etag = _recheck(apim, change)
    apim.delete_api(change.api_id, etag)


def _upsert(apim: ApimTarget, change: Change, update_strategy: str, done: list[str]) -> None:
    desired = change.desired
    assert desired is not None
    if change.action is Action.CREATE:
        apim.put_api(desired, with_spec=True)
        done.append("api")
    elif API in change.writes or API_SETTINGS in change.writes:
        etag = _recheck(apim, change)
        with_spec = API in change.writes
        if with_spec and update_strategy == "revision" and change.actual is not None:
            _release_revision(apim, change, done)
        else:
            apim.put_api(desired, with_spec=with_spec, if_match=etag)
            done.append("api" if with_spec else "api-settings")
    if POLICY in change.writes and "policy" not in done:
        apim.put_policy(desired.api_id, desired.policy_xml)
        done.append("policy")
    for write in change.writes:
        if write.kind == "product":
            apim.link_product(write.target, desired.api_id)
            done.append(str(write))
        elif write.kind == "tag":
            apim.assign_tag(write.target, desired.api_id)
            done.append(str(write))


REVISIONS_KEPT = 1  # non-current revisions kept after a release: the one before it, for a rollback in the portal


def _release_revision(apim: ApimTarget, change: Change, done: list[str]) -> None:
    """Import the new spec into a new revision, give it the policy, release it, then set the API's name and
    description (a non-current revision cannot change them), and delete revisions beyond the retention."""
    desired, actual = change.desired, change.actual
    assert desired is not None and actual is not None
    existing = apim.revisions(desired.api_id)
    revision = max([int(actual.revision), *(n for n, _ in existing)]) + 1
    apim.put_api(desired, with_spec=True, revision_of=actual, revision=revision)
    apim.put_policy(f"{desired.api_id};rev={revision}", desired.policy_xml)
    apim.release(desired.api_id, revision)
    done += ["api-revision", "policy", "release"]
    s, a = desired.settings, actual.settings
    if (s.display_name, s.description) != (a.display_name, a.description):
        apim.put_api(desired, with_spec=False)
        done.append("api-settings")
    old = sorted((n for n, current in existing if not current and n != revision), reverse=True)
    for number in [int(actual.revision), *old][REVISIONS_KEPT:]:
        apim.delete_revision(desired.api_id, number)
        done.append(f"delete-revision:{number}")
