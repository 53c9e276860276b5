"""The connection to one APIM service through Azure Resource Manager (azure-mgmt-apimanagement): the client, and
how every call is made. The resources apimsync reads and writes are in :mod:`apimsync.resources`.

Two SDK quirks are handled here and nowhere else:
- 5.0.0's default long-running-operation poller follows ``Azure-AsyncOperation`` and fails on APIM's
  operation-result body (``BadResponse: No status found in body``, Azure/azure-sdk-for-python#40909); we poll the
  ``Location`` header instead, as APIOps does (Azure/apiops ``src/common/Http.cs``).
- ARM throttles per subscription: one gate (``apimsync/pacing.py``) paces every worker and holds them all on a 429.
  409 PessimisticConcurrencyConflict (an operation on the entity still running) is retried with back-off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from apimsync.credentials import make_credential
from apimsync.errors import TargetError
from apimsync.pacing import gate_policy
from apimsync.settings import ApimSettings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.apimanagement import ApiManagementClient

log = logging.getLogger(__name__)
T = TypeVar("T")
# 409 PessimisticConcurrencyConflict: another operation on the entity is running; an import of a large spec holds
# its API for minutes (340-670 KB: over 7.5 minutes, Azure/apiops-cli#251), so a write waits that long, backing off
CONFLICT_WAIT_S = 900.0
CONFLICT_MAX_DELAY_S = 60.0


def location_poller(interval: float) -> Any:
    """An LRO poller that follows ``Location`` only: the workaround for SDK 5.0.0's failure on APIM's
    ``Azure-AsyncOperation`` results. It waits one interval before its first poll: azure-core
    polls at once, and an import or a named value answered 202 is never done at once (a poll saved per
    operation, out of ARM's read bucket)."""
    from azure.core.polling.base_polling import LocationPolling, StatusCheckPolling
    from azure.mgmt.core.polling.arm_polling import ARMPolling, BodyContentPolling

    class WaitFirst(ARMPolling):
        def _poll(self) -> None:
            if not self.finished():
                self._delay()
            super()._poll()

    return WaitFirst(interval, lro_algorithms=[LocationPolling(), BodyContentPolling(), StatusCheckPolling()],
                     lro_options={"final-state-via": "location"})




def describe_error(exc: Exception) -> str:
    """One line from an SDK error: status, ARM code, message and details (no request bodies, no headers)."""
    from azure.core.exceptions import HttpResponseError

    if isinstance(exc, HttpResponseError):
        parts = [str(exc.status_code)] if exc.status_code else []
        err = getattr(exc, "error", None)
        if err is not None and getattr(err, "code", None):
            parts.append(str(err.code))
            parts.append(str(err.message or "").strip())
            parts += [str(d.message) for d in (getattr(err, "details", None) or [])[:5] if getattr(d, "message", None)]
        else:
            parts.append(str(exc.message or exc.reason or "").splitlines()[0])
        return ": ".join(p for p in parts if p)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class Arm:
    """One APIM service, reached through the real SDK client: :meth:`call` makes every call."""

    def __init__(self, settings: ApimSettings, *, credential: TokenCredential | None = None,
                 client: ApiManagementClient | None = None, retry_total: int = 10, concurrency: int = 8) -> None:
        self.settings = settings
        self.rg = settings.resource_group
        self.svc = settings.service
        self._credential = credential
        self._retry_total = retry_total
        self._concurrency = concurrency
        self._gate = gate_policy(reserve=max(2, concurrency))
        if client is not None:
            self.__dict__["client"] = client

    @property
    def service_id(self) -> str:
        return (f"/subscriptions/{self.settings.subscription_id}/resourceGroups/{self.rg}"
                f"/providers/Microsoft.ApiManagement/service/{self.svc}")

    @property
    def calls(self) -> dict[str, int]:
        return dict(self._gate.calls)

    def write_eta(self, writes: int) -> float | None:
        """Seconds ARM's write bucket needs for ``writes`` more writes, when ARM reports its counts."""
        seconds = self._gate.seconds_for("writes", writes)
        return None if seconds is None else float(seconds)

    @cached_property
    def client(self) -> ApiManagementClient:
        import requests
        from azure.core.pipeline.transport import RequestsTransport
        from azure.mgmt.apimanagement import ApiManagementClient

        from apimsync.sessions import read_environment_once

        credential = self._credential or make_credential(self.settings.credential)
        # one kept-alive connection per worker: requests' default pool of 10 would re-handshake TLS under load
        session = read_environment_once(requests.Session())
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(10, 2 * self._concurrency))
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        transport = RequestsTransport(session=session, session_owner=True,
                                      connection_verify=self.settings.ca_bundle or True)
        return ApiManagementClient(
            credential, self.settings.subscription_id, base_url=self.settings.base_url.rstrip("/"), transport=transport,
            polling_interval=self.settings.polling_interval, retry_total=self._retry_total,
            per_retry_policies=[self._gate], user_agent="apimsync",
        )

    def poller(self) -> Any:
        return location_poller(self.settings.polling_interval)

    def with_etag(self, operation: Callable[..., Any], *args: str) -> tuple[Any, str | None]:
        """A GET returning (entity, its ETag header)."""
        result: Any = operation(self.rg, self.svc, *args, cls=lambda _r, body, headers: (body, headers.get("ETag")))
        return result[0], result[1]

    def call(self, what: str, func: Callable[[], T]) -> T:
        """Run one SDK call; 409 PessimisticConcurrencyConflict (an operation on the entity still running) is
        retried with back-off for up to ``CONFLICT_WAIT_S``, everything else the SDK's own retry policy already
        handled becomes a TargetError. The other APIs go on meanwhile: each waits on its own worker."""
        from azure.core.exceptions import AzureError, HttpResponseError

        deadline = time.monotonic() + CONFLICT_WAIT_S
        attempt = 0
        while True:
            try:
                return func()
            except HttpResponseError as exc:
                code = getattr(getattr(exc, "error", None), "code", None)
                delay = min(CONFLICT_MAX_DELAY_S, max(self.settings.polling_interval, 0.05) * 2**attempt)
                if exc.status_code == 409 and code == "PessimisticConcurrencyConflict" \
                        and time.monotonic() + delay < deadline:
                    log.info("%s: another operation on it is still running; trying again in %.1f s", what, delay)
                    time.sleep(delay)
                    attempt += 1
                    continue
                raise TargetError(f"{what}: {describe_error(exc)}") from exc
            except AzureError as exc:
                raise TargetError(f"{what}: {describe_error(exc)}") from exc


class ArmResource:
    """What a resource module's class (:mod:`apimsync.resources`) reads and writes through: one service's client."""

    def __init__(self, arm: Arm) -> None:
        self.arm = arm
        self.rg, self.svc = arm.rg, arm.svc

    @property
    def client(self) -> ApiManagementClient:
        return self.arm.client

    def call(self, what: str, func: Callable[[], T]) -> T:
        return self.arm.call(what, func)

    def poller(self) -> Any:
        return self.arm.poller()
