"""Applying a plan, or a plan in the making: named values before the policies that read them, creates and updates
with bounded concurrency (streamed while the plan is still being made), deletes last.

Each API's own steps run in order (the API and its spec, then its policy, then product and tag links). Updates and
deletes re-read the API first: it must still carry apimsync's marker as planned, and the write is guarded by its
ETag (If-Match), so a concurrent edit fails that one API instead of being overwritten. One API's failure never
stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from apimsync.changes import API, API_SETTINGS, POLICY, Action, Change, NamedValueChange, Plan, Resource
from apimsync.errors import ApimsyncError, LockError, TargetError
from apimsync.parallel import Progress, gather
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


class Applier:
    """Applies changes on a pool of ``concurrency`` threads, as they come (:meth:`submit`, while the rest of the
    plan is still being made) or all at once (:meth:`finish`, with the plan).

    Before an API is written, the named values its policy reads are written (each once; an API whose named value
    could not be written is not attempted), and before the run's first write ``before_first_write`` runs (taking
    the lock; what it returns is kept in :attr:`ticket`). After :meth:`close`, nothing more is started. Deletes are
    never streamed: they wait for the complete plan in :meth:`finish`. ARM's throttle gate (:mod:`apimsync.pacing`),
    not the pool, sets the pace: a pool larger than ARM's write rate times an API's time in flight lets the bucket
    be the limit."""

    def __init__(self, apim: ApimTarget, *, concurrency: int = 8, update_strategy: str = "in-place",
                 progress: Progress | None = None, before_first_write: Callable[[], str] | None = None) -> None:
        self.apim = apim
        self.concurrency = max(1, concurrency)
        self.update_strategy = update_strategy
        self.progress = progress
        self._before = before_first_write
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._started = False
        self._named: dict[str, Outcome] = {}  # name -> the outcome of writing it (NOOPs are not written)
        self._named_lock = threading.Lock()
        self._tags: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._streamed: dict[str, Future[Outcome]] = {}
        self.error: Exception | None = None  # what kept the first write from happening (the lock)
        self.ticket: str | None = None  # what before_first_write returned (the lock's ticket)
        self._closed = False
        self._tag_lock = threading.Lock()
        self._done = self._total = 0  # changes applied, changes known (streamed ones are known as they come)

    def submit(self, change: Change, named_values: Iterable[NamedValueChange]) -> None:
        """Start a create or update now (in the pool); its outcome is collected by :meth:`finish`."""
        assert change.action in (Action.CREATE, Action.UPDATE), "only creates and updates are streamed"
        with self._lock:
            if self._closed:  # the run was interrupted: nothing new starts
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="apply")
            future = self._pool.submit(self._apply, change, tuple(named_values))
            self._streamed[change.api_id] = future
            self._total += 1
        future.add_done_callback(lambda _f: self._tick())

    def close(self) -> None:
        """Start nothing more (an interrupted run); :meth:`finish` still waits for what was started."""
        with self._lock:
            self._closed = True

    def finish(self, plan: Plan) -> tuple[list[Outcome], list[Outcome]]:
        """Apply what of ``plan`` was not streamed (creates and updates, then deletes: a delete that frees a path
        another API wants first), wait for everything, and return (named value outcomes, API outcomes)."""
        try:
            by_name = {nv.name: nv for nv in plan.named_values}
            todo = [c for c in plan.changes if c.action is not Action.NOOP and c.api_id not in self._streamed]
            wanted_paths = {c.desired.settings.path for c in plan.changes if c.desired is not None
                            and c.action in (Action.CREATE, Action.UPDATE)}
            deletes = [c for c in todo if c.action is Action.DELETE]
            deletes_first = [c for c in deletes if c.actual and c.actual.settings.path in wanted_paths]
            deletes_last = [c for c in deletes if c not in deletes_first]
            upserts = [c for c in todo if c.action in (Action.CREATE, Action.UPDATE)]
            with self._lock:
                self._total += len(todo)
                streamed = list(self._streamed.values())
            outcomes = [future.result() for future in streamed]
            for changes in (deletes_first, upserts, deletes_last):  # each wave completes before the next starts
                for _change, outcome in gather(changes, lambda c: self._apply(c, _needs(c, by_name)),
                                               self.concurrency, lambda *_: self._tick()):
                    assert isinstance(outcome, Outcome)  # _apply turns every error into a failed Outcome
                    outcomes.append(outcome)
            for nv in plan.named_values:  # a named value no API needed this run (a rotated token) is written too
                if nv.action is not Action.NOOP and self.error is None:
                    self._named_value(nv)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        for outcome in outcomes:
            level = logging.INFO if outcome.ok else logging.WARNING
            log.log(level, "%s %s: %s", outcome.action.value, outcome.api_id, "ok" if outcome.ok else outcome.error)
        return sorted(self._named.values(), key=lambda o: o.api_id), outcomes

    def _tick(self) -> None:
        """One more change applied: ``progress("apply", done, known so far)``."""
        with self._lock:
            self._done += 1
            done, total = self._done, self._total
        if self.progress:
            self.progress("apply", done, total)

    def _first_write(self) -> None:
        with self._start_lock:  # its own lock: submit and the counters go on while the lock is being taken
            if self.error is not None:
                raise self.error
            if not self._started:
                try:
                    if self._before is not None:
                        self.ticket = self._before()
                except Exception as exc:  # the lock: nothing is written, the engine raises it after finish
                    self.error = exc
                    raise
                self._started = True
            if self.ticket is not None and self.apim.lock.lost(self.ticket):
                raise LockError("the sync lock was taken from this run (broken with --force-lock?); not started")

    def _named_value(self, nv: NamedValueChange) -> Outcome:
        with self._named_lock:  # each once; an API waits for the one its policy reads
            if nv.name not in self._named:
                self._first_write()
                self._named[nv.name] = _apply_named_value(self.apim, nv)
            return self._named[nv.name]

    def _apply(self, change: Change, named_values: tuple[NamedValueChange, ...]) -> Outcome:
        try:
            self._first_write()
        except Exception as exc:  # the lock (the engine re-raises it): nothing of this change was written
            return Outcome(change.api_id, change.action, False, 0.0, f"not attempted: {exc}")
        for nv in named_values:  # before the API: an API must never be live without the policy it is planned with
            if nv.action is not Action.NOOP and not self._named_value(nv).ok:
                return Outcome(change.api_id, change.action, False, 0.0,
                               f"not attempted: named value {nv.name} could not be written")
        with self._tag_lock:  # a tag exists before any API links to it (few tags: one at a time is fine)
            for tag in sorted({w.target for w in change.writes if w.resource is Resource.TAG} - self._tags):
                try:
                    self.apim.links.ensure_tag(tag)
                    self._tags.add(tag)
                except TargetError as exc:
                    log.warning("%s", exc)
        return _apply_change(self.apim, change, self.update_strategy)


def _needs(change: Change, named_values: Mapping[str, NamedValueChange]) -> tuple[NamedValueChange, ...]:
    """The named values a change's policy write reads (of those apimsync keeps)."""
    if change.desired is None or POLICY not in change.writes:
        return ()
    return tuple(named_values[r] for r in change.desired.named_value_refs if r in named_values)


def _apply_named_value(apim: ApimTarget, nv: NamedValueChange) -> Outcome:
    started = time.monotonic()
    try:
        apim.named_values.put(nv)
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
    current = apim.apis.get(change.api_id)
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
    apim.apis.delete(change.api_id, etag)


def _upsert(apim: ApimTarget, change: Change, update_strategy: str, done: list[str]) -> None:
    """A create: the API, then its policy (the import undone if the policy fails). An update: the policy before
    the API, so the API's marker, which records the policy's hash, is written only once the policy is in place."""
    desired = change.desired
    assert desired is not None
    if change.action is Action.CREATE:
        apim.apis.put(desired, with_spec=True)
        done.append("api")
        _put_policy(apim, change, done)
    else:
        api_write = API in change.writes or API_SETTINGS in change.writes
        etag = _recheck(apim, change) if api_write else None
        with_spec = API in change.writes
        by_revision = with_spec and update_strategy == "revision" and change.actual is not None
        if POLICY in change.writes and not by_revision:  # a new revision gets the policy before its release
            _put_policy(apim, change, done)
        if by_revision:
            _release_revision(apim, change, done)
        elif api_write:
            apim.apis.put(desired, with_spec=with_spec, if_match=etag)
            done.append("api" if with_spec else "api-settings")
    for write in change.writes:
        if write.resource is Resource.PRODUCT:
            apim.links.link_product(write.target, desired.api_id)
            done.append(str(write))
        elif write.resource is Resource.TAG:
            apim.links.assign_tag(write.target, desired.api_id)
            done.append(str(write))


def _put_policy(apim: ApimTarget, change: Change, done: list[str]) -> None:
    desired = change.desired
    assert desired is not None
    if POLICY not in change.writes:
        return
    try:
        apim.policies.put(desired.api_id, desired.policy_xml)
    except ApimsyncError as exc:
        if change.action is Action.CREATE:  # a new API is never left live without its policy: undo the import
            try:
                apim.apis.delete(desired.api_id, "*")
                done.remove("api")
            except ApimsyncError as undo:
                raise ApimsyncError(f"{exc}; removing the API again failed too ({undo}): it is live without "
                                    "its policy") from exc
            raise ApimsyncError(f"{exc}; the new API was removed again (never live without its policy)") from exc
        raise
    done.append("policy")


REVISIONS_KEPT = 1  # non-current revisions kept after a release: the one before it, for a rollback in the portal


def _release_revision(apim: ApimTarget, change: Change, done: list[str]) -> None:
    """Import the new spec into a new revision, give it the policy, release it, then set the API's name and
    description (a non-current revision cannot change them), and delete revisions beyond the retention."""
    desired, actual = change.desired, change.actual
    assert desired is not None and actual is not None
    existing = apim.revisions.list(desired.api_id)
    revision = max([int(actual.revision), *(n for n, _ in existing)]) + 1
    apim.apis.put(desired, with_spec=True, revision_of=actual, revision=revision)
    apim.policies.put(f"{desired.api_id};rev={revision}", desired.policy_xml)
    apim.revisions.release(desired.api_id, revision)
    done += ["api-revision", "policy", "release"]
    s, a = desired.settings, actual.settings
    if (s.display_name, s.description) != (a.display_name, a.description):
        apim.apis.put(desired, with_spec=False)
        done.append("api-settings")
    old = sorted((n for n, current in existing if not current and n != revision), reverse=True)
    for number in [int(actual.revision), *old][REVISIONS_KEPT:]:
        apim.revisions.delete(desired.api_id, number)
        done.append(f"delete-revision:{number}")
