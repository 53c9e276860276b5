"""The sync lock: one run at a time writes to a service (per set of workspaces).

The lock is one named value, ``apimsync-lock-<hash>``, whose value says who holds it until when. It is taken and
given back by compare-and-swap: read it with its ETag, write it with ``If-Match: <that ETag>``. Azure applies a
write with a stale ETag nowhere and answers 412 (``If-Match`` on NamedValue_CreateOrUpdate, apimnamedvalues.json,
2024-05-01; Azure/apiops src/common/Http.cs retries such 412s), and refuses a second write while one runs on the
same entity (409 PessimisticConcurrencyConflict; ``NamedValues.write_plain`` reports both as "another write came
first"). So of several runs that read the same free lock, exactly one writes
it; the others find the new ETag, and the holder in it, when they try again, and stop. The lock also counts how
often it was taken (its generation): a run reads it before it plans and takes the lock only at that generation,
so a run that planned while another wrote never applies its outdated plan.

The one write that cannot be conditional is the lock's creation (APIM offers no If-None-Match): a run that finds
no lock creates it free, then takes it like any other run. A late creation could replace a lock taken meanwhile,
so a run that took the lock reads it once more, after a pause, before it proceeds, and the holder's renewals are
compare-and-swaps too: a lock replaced under its holder is noticed (:meth:`SyncLock.lost`), never overwritten.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from apimsync.errors import LockError, TargetError

log = logging.getLogger(__name__)
MAX_TTL = 86_400  # seconds: no lock lasts longer (lock_ttl_seconds is bounded to it)


class PlainValues(Protocol):
    """Where the locks live: plain named values of one service, read and written with their ETags
    (:class:`apimsync.resources.named_values.NamedValues`)."""

    def read_plain(self, name: str) -> tuple[str | None, str] | None: ...

    def write_plain(self, name: str, value: str, *, if_match: str | None) -> bool: ...


class SyncLock:
    """Sync locks in one APIM service, each a named value taken and released by compare-and-swap."""

    ROUNDS = 16  # reads of the lock while other runs create or change it

    def __init__(self, store: PlainValues, service: str, pause: float = 0.3) -> None:
        self.store = store
        self.service = service  # its name, for messages
        self.pause = pause  # seconds between reads of a held lock, and before the confirming read
        self._renewals: dict[str, tuple[threading.Event, threading.Thread]] = {}
        self._lost: set[str] = set()

    def state(self, name: str) -> Holder:
        """Lock ``name`` as it is now (free when it does not exist): read before a run plans. Its ``generation``
        (how many times it was taken) is given to :meth:`acquire`, so a run whose plan another run's writes may
        have outdated never applies it; its ``checked`` says when a run last read every policy."""
        current = self.store.read_plain(name)
        return Holder.parse(current[0]) if current is not None else Holder(None, None)

    def record_check(self, name: str, when: datetime) -> None:
        """Note in lock ``name`` that a run read every policy at ``when`` (compare-and-swap, whoever holds it; a
        lock that does not exist yet is left to the next run that takes it; a failure is only logged: the next run
        checks again)."""
        try:
            for _ in range(3):
                current = self.store.read_plain(name)
                if current is None:  # never created here: a creation cannot be conditional (see the module's text)
                    return
                if self.store.write_plain(name, Holder.parse(current[0]).but(checked=when).text(),
                                          if_match=current[1]):
                    return
        except TargetError as exc:
            log.warning("recording the drift check: %s", exc)

    def acquire(self, name: str, ttl_seconds: int, *, force: bool = False, generation: int | None = None) -> str:
        """Take lock ``name`` for ``ttl_seconds``; returns the ticket (our owner id) to keep and release.

        LockError when another run holds it (``force`` takes it all the same), and when it was taken since
        ``generation`` was read (another run wrote while this one planned: its plan may be outdated). No run
        waits for a lock: what it planned while another run wrote is not worth applying."""
        owner = uuid.uuid4().hex[:12]
        for _ in range(self.ROUNDS):  # creations and lost races: another run wrote between our read and write
            current = self.store.read_plain(name)
            if current is None:  # no lock yet: create it free (unconditional: no If-None-Match), then take it
                if not self.store.write_plain(name, Holder(None, None).text(), if_match=None):
                    time.sleep(self.pause * random.uniform(0.5, 1.5))  # another run is creating it
                continue
            text, etag = current
            holder = Holder.parse(text)
            if holder.live() and not force:
                raise LockError(f"another apimsync run holds the lock on {self.service} (owner {holder.owner}, "
                                f"until {holder.shown_expiry}); wait, or break it with --force-lock")
            if generation is not None and holder.generation != generation:
                raise LockError(f"another apimsync run wrote to {self.service} while this run was planning (the "
                                "lock changed hands since); nothing was written: run again")
            mine = holder.but(owner=owner, expires=_now() + timedelta(seconds=ttl_seconds), ttl=ttl_seconds,
                              generation=holder.generation + 1)
            if not self.store.write_plain(name, mine.text(), if_match=etag):
                time.sleep(self.pause * random.uniform(0.1, 1.0))  # another run wrote first: read again
                continue
            time.sleep(self.pause)  # a creation that raced ours lands within this pause
            confirm = self.store.read_plain(name)
            if confirm is not None and Holder.parse(confirm[0]).owner == owner:
                return owner
        raise LockError(f"could not take the lock on {self.service}: other runs kept changing it; try again")

    def keep(self, ticket: str, name: str, ttl_seconds: int) -> None:
        """Renew our hold every third of its TTL until :meth:`release`, by compare-and-swap: a run longer than
        the TTL keeps its lock, and a lock someone replaced is reported (:meth:`lost`), not taken back."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl_seconds / 3):
                try:
                    current = self.store.read_plain(name)
                    if current is None or Holder.parse(current[0]).owner != ticket:
                        self._lost.add(ticket)
                        log.error("the sync lock on %s was taken from this run (broken with --force-lock?); no "
                                  "further write starts", self.service)
                        return
                    held = Holder.parse(current[0])
                    mine = held.but(owner=ticket, expires=_now() + timedelta(seconds=ttl_seconds), ttl=ttl_seconds)
                    if not self.store.write_plain(name, mine.text(), if_match=current[1]):
                        log.warning("renewing the sync lock: it changed meanwhile; checking again")
                except TargetError as exc:
                    log.warning("renewing the sync lock: %s", exc)

        thread = threading.Thread(target=renew, name="apimsync-lock-renewal", daemon=True)
        self._renewals[ticket] = (stop, thread)
        thread.start()

    def lost(self, ticket: str) -> bool:
        """Whether a renewal found the lock held by someone else (it was broken or replaced)."""
        return ticket in self._lost

    def release(self, name: str, ticket: str, checked: datetime | None = None) -> None:
        """Stop renewing (a renewal in flight finishes first) and free the lock if we still hold it, noting a drift
        check made at ``checked``; a failure is only logged (the hold expires by itself)."""
        stop, thread = self._renewals.pop(ticket, (None, None))
        if stop is not None and thread is not None:
            stop.set()
            thread.join()
        try:
            for _ in range(3):
                current = self.store.read_plain(name)
                held = Holder.parse(current[0]) if current is not None else None
                if current is None or held is None or held.owner != ticket:
                    return  # not ours (any more): leave it as it is
                free = held.but(owner=None, expires=None, ttl=0, checked=checked or held.checked)
                if self.store.write_plain(name, free.text(), if_match=current[1]):
                    return
        except TargetError as exc:  # it expires by itself; never fail a finished sync over it
            log.warning("releasing the sync lock: %s", exc)


class Holder:
    """Who holds a lock until when, read from its value. Nothing in it is trusted: an unreadable value is a free
    lock, the TTL and generation are bounded, and no time in it can raise, so no text in APIM can crash a run or
    block ``--force-lock``."""

    def __init__(self, owner: str | None, expires: datetime | None, ttl: float = 0.0, generation: int = 0,
                 shown: str = "", checked: datetime | None = None) -> None:
        self.owner = owner
        self.expires = expires
        self.ttl = ttl
        self.generation = generation
        self.shown_expiry = shown or (expires.isoformat() if expires else "")
        self.checked = checked  # when a run last read every policy (the drift check)

    @classmethod
    def parse(cls, text: str | None) -> Holder:
        try:
            data: Any = json.loads(text or "")
            owner, expires, ttl = data.get("owner"), data.get("expires"), data.get("ttl")
            number = data.get("generation")
            generation = number if isinstance(number, int) and not isinstance(number, bool) \
                and 0 <= number < 2**53 else 0
            seconds = float(ttl) if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) else 0.0
            checked = _time(data.get("checked"))
            if not owner:
                return cls(None, None, 0.0, generation, checked=checked)
            return cls(str(owner)[:64], _time(expires), min(max(seconds, 0.0), MAX_TTL), generation, str(expires)[:40],
                       checked)
        except (ValueError, TypeError, AttributeError, OverflowError, RecursionError):
            return cls(None, None)

    def but(self, **changes: Any) -> Holder:
        """This holder with some fields changed (the drift check's time is kept unless given)."""
        fields = {"owner": self.owner, "expires": self.expires, "ttl": self.ttl, "generation": self.generation,
                  "checked": self.checked, **changes}
        return Holder(fields["owner"], fields["expires"], fields["ttl"], fields["generation"],
                      checked=fields["checked"])

    def live(self) -> bool:
        """Held and not expired, with a grace of a tenth of the TTL (at most a minute) for clocks that differ. Any
        hold, a forged one with an expiry in the year 9999 included, is broken by ``--force-lock``."""
        if not self.owner or self.expires is None:
            return False
        try:
            grace = timedelta(seconds=min(60.0, 0.1 * self.ttl))
            return self.expires + grace > _now()
        except OverflowError:
            return True

    def text(self) -> str:
        return json.dumps({"owner": self.owner, "expires": self.expires.isoformat() if self.expires else None,
                           "ttl": self.ttl, "generation": self.generation,
                           "checked": self.checked.isoformat() if self.checked else None})


def _time(value: Any) -> datetime | None:
    """An aware time from ISO text, else None (a time without zone, or not a time, means nothing here)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        return None
    return when if when.tzinfo is not None else None


def _now() -> datetime:
    return datetime.now(timezone.utc)
