"""The sync lock: one run at a time writes to a service (per set of workspaces), with the operations APIM offers.

The protocol and its guarantee are in :meth:`TicketLock.acquire`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from apimsync.errors import LockError, TargetError

if TYPE_CHECKING:
    from apimsync.target import ApimTarget

log = logging.getLogger(__name__)


class TicketLock:
    """Tickets (named values ``<name>-<owner>``) in one APIM service."""

    ROUNDS = 8  # lists of the tickets before giving up

    def __init__(self, apim: ApimTarget, pause: float = 0.3) -> None:
        self.apim = apim
        self.pause = pause  # seconds between lists
        self._renewals: dict[str, tuple[threading.Event, threading.Thread]] = {}

    # -- the sync lock ---------------------------------------------------------------------------

    def acquire(self, name: str, ttl_seconds: int, *, force: bool = False) -> str:
        """Take the sync lock ``name``; returns the ticket to release.

        Protocol (APIM has no conditional create for named values, no If-None-Match): each run creates its own
        *ticket*, a named value ``<name>-<owner>`` holding its owner and expiry, then lists the tickets of the lock.
        It proceeds only when its own ticket is the only live one. Otherwise the run with the larger owner id
        withdraws its ticket and tries again later, while the smaller one keeps its ticket and lists again; after
        ``ROUNDS`` lists the run gives up with LockError. Expired tickets are deleted and ignored.

        Guarantee: two runs never both proceed while their tickets live. If A proceeds, its list did not show B's
        ticket, so B created it after that list; B's own list then shows A's ticket (kept until A releases) and B
        waits. This relies on ARM answering a list with every write it has completed (read-after-write), and on
        the ticket living as long as the holder works (the holder renews it: :meth:`keep`; a clock ahead of the
        holder's by more than the grace, a tenth of the TTL and at most a minute, can still remove a live ticket).
        Contention ends because only the larger owner withdraws."""
        owner = uuid.uuid4().hex[:12]
        ticket = f"{name}-{owner}"
        expires = (datetime.now(timezone.utc) + timedelta(seconds=ttl_seconds)).isoformat()
        try:
            self._put_ticket(ticket, owner, expires, ttl_seconds)
            others: list[dict[str, Any]] = []
            for round_ in range(self.ROUNDS):
                others = [t for t in self._tickets(name) if t["ticket"] != ticket]
                if force:
                    for other in others:
                        self._delete_ticket(other["ticket"])
                    others = []
                if not others:
                    return ticket
                if round_ == self.ROUNDS - 1:
                    break
                if owner > min(str(t["owner"]) for t in others):  # the larger owner withdraws
                    self._delete_ticket(ticket)
                    time.sleep(self.pause * random.uniform(1.0, 2.0))
                    self._put_ticket(ticket, owner, expires, ttl_seconds)
                else:
                    time.sleep(self.pause)
        except BaseException:
            self._delete_ticket(ticket)
            raise
        self._delete_ticket(ticket)
        holder = min(others, key=lambda t: str(t["expires"]))
        raise LockError(f"another apimsync run holds the lock on {self.apim.svc} (owner {holder['owner']}, until "
                        f"{holder['expires']}); wait, or break it with --force-lock")

    def keep(self, ticket: str, ttl_seconds: int) -> None:
        """Renew ``ticket`` every third of its TTL until :meth:`release`: a run longer than the TTL keeps its lock.
        A renewal that fails is logged and tried again a third of the TTL later (two failures in a row leave a
        third of the TTL)."""
        owner = ticket.rsplit("-", 1)[-1]
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(ttl_seconds / 3):
                expires = (datetime.now(timezone.utc) + timedelta(seconds=ttl_seconds)).isoformat()
                try:
                    self._put_ticket(ticket, owner, expires, ttl_seconds)
                except TargetError as exc:
                    log.warning("renewing the sync lock: %s", exc)

        thread = threading.Thread(target=renew, name="apimsync-lock-renewal", daemon=True)
        self._renewals[ticket] = (stop, thread)
        thread.start()

    def release(self, name: str, ticket: str) -> None:
        """Stop renewing our ticket (a renewal in flight finishes first, so none re-creates it) and delete it; a
        failure is only logged (the ticket expires by itself)."""
        stop, thread = self._renewals.pop(ticket, (None, None))
        if stop is not None and thread is not None:
            stop.set()
            thread.join()
        try:
            self._delete_ticket(ticket, quiet=False)
        except TargetError as exc:  # it expires by itself; never fail a finished sync over it
            log.warning("%s", exc)

    def _put_ticket(self, ticket: str, owner: str, expires: str, ttl_seconds: int) -> None:
        from azure.mgmt.apimanagement.models import NamedValueCreateContract

        body = NamedValueCreateContract(display_name=ticket, secret=False, value=json.dumps(
            {"owner": owner, "expires": expires, "ttl": ttl_seconds}))
        self.apim._call("taking the sync lock", lambda: self.apim.client.named_value.begin_create_or_update(
            self.apim.rg, self.apim.svc, ticket, body, polling=self.apim._poller()).result())

    def _tickets(self, name: str) -> list[dict[str, Any]]:
        """The live tickets of lock ``name`` (expired or unreadable ones are deleted on the way)."""
        now = datetime.now(timezone.utc)
        listed = self.apim._call("reading the sync lock", lambda: list(self.apim.client.named_value.list_by_service(
            self.apim.rg, self.apim.svc, filter=f"startswith(displayName,'{name}-')")))
        live = []
        for nv in listed:
            try:
                held = json.loads(nv.value or "")
                expires = _parse_time(held.get("expires"))
                grace = min(60.0, 0.1 * float(held.get("ttl") or 0))
            except (ValueError, AttributeError, TypeError):
                expires = None
            if expires is None or expires.tzinfo is None or expires + timedelta(seconds=grace) <= now:
                self._delete_ticket(str(nv.name))
                continue
            live.append({"ticket": str(nv.name), "owner": str(held.get("owner")), "expires": held.get("expires")})
        return live

    def _delete_ticket(self, ticket: str, *, quiet: bool = True) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        def run() -> None:
            try:
                self.apim.client.named_value.delete(self.apim.rg, self.apim.svc, ticket, if_match="*")
            except ResourceNotFoundError:
                pass

        try:
            self.apim._call("releasing the sync lock", run)
        except TargetError:
            if not quiet:
                raise


def _parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None
