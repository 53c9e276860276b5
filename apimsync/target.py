"""The APIM edge: every call apimsync makes to Azure Resource Manager, through azure-mgmt-apimanagement.

Two SDK quirks are handled here and nowhere else:
- 5.0.0's default long-running-operation poller follows ``Azure-AsyncOperation`` and fails on APIM's
  operation-result body (research/apim.md §3); we poll the ``Location`` header instead.
- ARM throttles per subscription. On a 429 every worker waits for the ``Retry-After`` the service gave
  (a shared gate), so concurrent workers do not burn the write budget retrying into an empty bucket.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from apimsync.config import ApimSettings
from apimsync.credentials import make_credential
from apimsync.errors import LockError, TargetError
from apimsync.model import ActualApi, DesiredApi, NamedValueState, api_from_arm

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.apimanagement import ApiManagementClient

    from apimsync.planner import NamedValueChange

log = logging.getLogger(__name__)
T = TypeVar("T")
CONFLICT_RETRIES = 4


def retry_after_seconds(headers: Any) -> float | None:
    """The delay a throttled or busy response asks for (ms headers first, as azure-core reads them)."""
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return float(value) / scale
            except ValueError:
                continue
    return None


# ARM's 2024 token buckets per subscription, refill per second (Learn, "Understand how Azure Resource Manager
# throttles requests"): the prior for pacing, corrected from the remaining counts ARM reports
REFILL_PER_SECOND = {"reads": 25.0, "writes": 10.0, "deletes": 10.0}


def _kind(method: str) -> str:
    return "reads" if method in ("GET", "HEAD") else "deletes" if method == "DELETE" else "writes"


def _gate_policy(reserve: int = 8, pacing: bool = True) -> Any:
    from azure.core.pipeline.policies import HTTPPolicy

    class ThrottleGate(HTTPPolicy):
        """Shared by all workers: counts calls, holds every request while ARM says to back off (429), and paces
        requests before the bucket runs dry.

        Pacing: ARM reports the tokens left after each call (``x-ms-ratelimit-remaining-subscription-{kind}``).
        When fewer than ``reserve`` (the number of workers) would be left, a request waits for the refill of the
        missing tokens; the refill rate starts at ARM's documented one and follows what the counts show."""

        def __init__(self) -> None:
            super().__init__()
            self._lock = threading.Lock()
            self._until = 0.0
            self.calls: Counter[str] = Counter()
            self.reserve = reserve
            self.pacing = pacing
            self._remaining: dict[str, tuple[float, float]] = {}  # kind -> (count, when), minus requests sent since
            self._sample: dict[str, tuple[float, int, int]] = {}  # kind -> (time, count, calls sent then)
            self._rate = dict(REFILL_PER_SECOND)

        def send(self, request: Any) -> Any:
            wait = self._until - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            kind = _kind(request.http_request.method.upper())
            if self.pacing:
                self._pace(kind)
            with self._lock:
                self.calls[kind] += 1
            response = self.next.send(request)
            headers = response.http_response.headers
            if response.http_response.status_code == 429:
                delay = retry_after_seconds(headers) or 1.0
                with self._lock:
                    self.calls["throttled"] += 1
                    self._until = max(self._until, time.monotonic() + delay)
                    self._remaining.pop(kind, None)  # the gate holds everyone now; pace afresh from the next count
            else:
                self._observe(kind, headers.get(f"x-ms-ratelimit-remaining-subscription-{kind}"))
            return response

        def _pace(self, kind: str) -> None:
            with self._lock:
                known = self._remaining.get(kind)
                if known is None:
                    return
                count, since = known
                now = time.monotonic()
                left = count + (now - since) * self._rate[kind]  # what has refilled since the count
                self._remaining[kind] = (left - 1, now)  # this request's token
                missing = self.reserve - left
                delay = missing / self._rate[kind] if missing > 0 else 0.0
                if delay > 0:
                    self.calls["paced"] += 1
            if delay > 0:
                time.sleep(min(delay, 30.0))

        def _observe(self, kind: str, header: Any) -> None:
            try:
                count = int(header)
            except (TypeError, ValueError):
                with self._lock:
                    self._remaining.pop(kind, None)  # no count: no pacing on a guess
                return
            now = time.monotonic()
            with self._lock:
                sent = self.calls[kind]
                before = self._sample.get(kind)
                # only near the bottom of the bucket: a full bucket refills nothing and would read as a slow one
                if before is not None and now - before[0] >= 0.5 and max(count, before[1]) < 4 * self.reserve:
                    # refill = tokens gained back plus tokens spent, over the time between the two counts
                    gained = (count - before[1] + (sent - before[2])) / (now - before[0])
                    prior = REFILL_PER_SECOND[kind]
                    estimate = min(max(gained, 0.1 * prior), 100 * prior)
                    self._rate[kind] = 0.7 * self._rate[kind] + 0.3 * estimate
                if before is None or now - before[0] >= 0.5:
                    self._sample[kind] = (now, count, sent)
                self._remaining[kind] = (float(count), now)

    return ThrottleGate()


def location_poller(interval: float) -> Any:
    """An LRO poller that follows ``Location`` only: the workaround for SDK 5.0.0's failure on APIM's
    ``Azure-AsyncOperation`` results (research/apim.md §3)."""
    from azure.core.polling.base_polling import LocationPolling, StatusCheckPolling
    from azure.mgmt.core.polling.arm_polling import ARMPolling, BodyContentPolling

    return ARMPolling(interval, lro_algorithms=[LocationPolling(), BodyContentPolling(), StatusCheckPolling()],
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


class ApimTarget:
    """One APIM service, reached through the real SDK client."""

    def __init__(self, settings: ApimSettings, *, credential: TokenCredential | None = None,
                 client: ApiManagementClient | None = None, retry_total: int = 10, concurrency: int = 8) -> None:
        self.settings = settings
        self.rg = settings.resource_group
        self.svc = settings.service
        self._credential = credential
        self._retry_total = retry_total
        self._concurrency = concurrency
        self._gate = _gate_policy(reserve=max(2, concurrency))
        if client is not None:
            self.__dict__["client"] = client

    @property
    def service_id(self) -> str:
        return (f"/subscriptions/{self.settings.subscription_id}/resourceGroups/{self.rg}"
                f"/providers/Microsoft.ApiManagement/service/{self.svc}")

    @property
    def calls(self) -> dict[str, int]:
        return dict(self._gate.calls)

    @cached_property
    def client(self) -> ApiManagementClient:
        import requests
        from azure.core.pipeline.transport import RequestsTransport
        from azure.mgmt.apimanagement import ApiManagementClient

        credential = self._credential or make_credential(self.settings.credential)
        # one kept-alive connection per worker: requests' default pool of 10 would re-handshake TLS under load
        session = requests.Session()
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

    def _poller(self) -> Any:
        return location_poller(self.settings.polling_interval)

    def _with_etag(self, operation: Callable[..., Any], *args: str) -> tuple[Any, str | None]:
        """A GET returning (entity, its ETag header)."""
        result: Any = operation(self.rg, self.svc, *args, cls=lambda _r, body, headers: (body, headers.get("ETag")))
        return result[0], result[1]

    def _call(self, what: str, func: Callable[[], T]) -> T:
        """Run one SDK call; 409 PessimisticConcurrencyConflict (an operation on the API still running) is retried
        with back-off, everything else the SDK's own retry policy already handled becomes a TargetError."""
        from azure.core.exceptions import AzureError, HttpResponseError

        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                return func()
            except HttpResponseError as exc:
                code = getattr(getattr(exc, "error", None), "code", None)
                if exc.status_code == 409 and code == "PessimisticConcurrencyConflict" and attempt < CONFLICT_RETRIES:
                    time.sleep(max(self.settings.polling_interval, 0.05) * 2**attempt)
                    continue
                raise TargetError(f"{what}: {describe_error(exc)}") from exc
            except AzureError as exc:
                raise TargetError(f"{what}: {describe_error(exc)}") from exc
        raise AssertionError("unreachable")

    # -- reads -----------------------------------------------------------------------------------

    def list_apis(self) -> list[ActualApi]:
        """Every API in the service (owned or not), current revisions only, without policies.

        The listing returns non-current revisions too (``<id>;rev=N``); ``isCurrent eq true`` is the contract's
        filter for that (apimapis.json, Api_ListByService), and a ``;rev=`` id is skipped should one slip through.
        """

        def run() -> list[ActualApi]:
            listed = self.client.api.list_by_service(self.rg, self.svc, filter="isCurrent eq true")
            return [api_from_arm(str(a.name), _props(a)) for a in listed if ";rev=" not in str(a.name)]

        return self._call(f"listing APIs of {self.svc}", run)

    def get_api(self, api_id: str) -> tuple[ActualApi, str] | None:
        """The API and its ETag, or None if it does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        def run() -> tuple[ActualApi, str] | None:
            try:
                contract, etag = self._with_etag(self.client.api.get, api_id)
            except ResourceNotFoundError:
                return None
            return api_from_arm(str(contract.name), _props(contract)), str(etag)

        return self._call(f"reading API {api_id}", run)

    def get_policy(self, api_id: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        def run() -> str | None:
            try:
                return self.client.api_policy.get(self.rg, self.svc, api_id, "policy", format="rawxml").value
            except ResourceNotFoundError:
                return None

        return self._call(f"reading the policy of API {api_id}", run)

    def product_apis(self, product: str) -> set[str]:
        return self._call(f"listing APIs of product {product}", lambda: {
            str(a.name) for a in self.client.product_api.list_by_product(self.rg, self.svc, product)})

    def tag_links(self) -> dict[str, set[str]]:
        """API ids per tag id, from one paged apisByTags listing.

        In that listing ``name`` is a display name; the ids are ``tag.id`` (``/tags/{tagId}``) and ``api.id``
        (``/apis/{apiId}``): ApiManagementListApisByTags.json, definitions.json ApiTagResourceContractProperties.
        """

        def run() -> dict[str, set[str]]:
            links: dict[str, set[str]] = {}
            for item in self.client.api.list_by_tags(self.rg, self.svc, filter="isCurrent eq true"):
                if item.tag is not None and item.api is not None and item.tag.id and item.api.id:
                    links.setdefault(_last_segment(item.tag.id), set()).add(_last_segment(item.api.id))
            return links

        return self._call(f"listing API tags of {self.svc}", run)

    def get_named_value(self, name: str) -> NamedValueState | None:
        from azure.core.exceptions import ResourceNotFoundError

        def run() -> NamedValueState | None:
            try:
                nv = self.client.named_value.get(self.rg, self.svc, name)
            except ResourceNotFoundError:
                return None
            kv = nv.key_vault.secret_identifier if nv.key_vault else None
            return NamedValueState(name=str(nv.name), secret=bool(nv.secret), key_vault_id=kv,
                                   tags=tuple(nv.tags or ()))

        return self._call(f"reading named value {name}", run)

    def gateway_url(self) -> str:
        """The service's gateway URL (``properties.gatewayUrl`` of the service resource)."""
        service = self._call(f"reading service {self.svc}",
                             lambda: self.client.api_management_service.get(self.rg, self.svc))
        if not service.gateway_url:
            raise TargetError(f"service {self.svc} reports no gatewayUrl (self-hosted or disabled gateway?); "
                              "pass --gateway-url")
        return str(service.gateway_url)

    def subscription_key(self, sid: str = "master") -> str:
        """The primary key of a subscription (default: the built-in all-access one), read with listSecrets."""
        keys = self._call(f"reading the keys of subscription {sid}",
                          lambda: self.client.subscription.list_secrets(self.rg, self.svc, sid))
        return str(keys.primary_key)

    # -- writes ----------------------------------------------------------------------------------

    def put_api(self, api: DesiredApi, *, with_spec: bool, if_match: str | None = None,
                revision_of: ActualApi | None = None, revision: int = 0) -> None:
        """Create or update an API. ``with_spec`` imports the spec; else only its settings change.

        ``revision_of``: import into new revision number ``revision`` of that API (made current by
        :meth:`release`).
        """
        from azure.mgmt.apimanagement.models import ApiCreateOrUpdateParameter

        s = api.settings
        params: dict[str, Any] = {
            "path": s.path, "display_name": s.display_name, "description": s.description,
            "service_url": s.service_url, "protocols": list(s.protocols),
            "subscription_required": s.subscription_required, "api_revision_description": str(api.marker),
        }
        if with_spec:
            params.update(format="openapi+json", value=api.spec_json)
        api_id = api.api_id
        if revision_of is not None:
            # a new revision keeps the API's name and description ("Can't change property Name for non-current
            # revision"); they are set on the current API after the release
            api_id = f"{api.api_id};rev={revision}"
            params["source_api_id"] = f"{self.service_id}/apis/{api.api_id}"
            params.update(display_name=revision_of.settings.display_name,
                          description=revision_of.settings.description)
            if with_spec:
                spec = json.loads(api.spec_json)
                spec["info"] = {**spec.get("info", {}), "title": revision_of.settings.display_name,
                                "description": revision_of.settings.description}
                params["value"] = json.dumps(spec, separators=(",", ":"))
        body = ApiCreateOrUpdateParameter(**params)
        self._call(f"writing API {api_id}", lambda: self.client.api.begin_create_or_update(
            self.rg, self.svc, api_id, body, if_match=if_match, polling=self._poller()).result())

    def release(self, api_id: str, revision: int) -> None:
        from azure.mgmt.apimanagement.models import ApiReleaseContract

        body = ApiReleaseContract(api_id=f"{self.service_id}/apis/{api_id};rev={revision}",
                                  notes="released by apimsync")
        self._call(f"releasing revision {revision} of API {api_id}", lambda: self.client.api_release.create_or_update(
            self.rg, self.svc, api_id, f"apimsync-rev{revision}", body))

    def revisions(self, api_id: str) -> list[tuple[int, bool]]:
        """(revision number, is current) of every revision of an API."""
        return self._call(f"listing revisions of API {api_id}", lambda: [
            (int(r.api_revision or 0), bool(r.is_current)) for r in self.client.api_revision.list_by_service(
                self.rg, self.svc, api_id)])

    def delete_revision(self, api_id: str, revision: int) -> None:
        """Delete one non-current revision (never the API: ``deleteRevisions`` stays off)."""
        self._call(f"deleting revision {revision} of API {api_id}", lambda: self.client.api.begin_delete(
            self.rg, self.svc, f"{api_id};rev={revision}", if_match="*", polling=self._poller()).result())

    def put_policy(self, api_id: str, xml: str) -> None:
        from azure.mgmt.apimanagement.models import PolicyContract

        self._call(f"writing the policy of API {api_id}", lambda: self.client.api_policy.create_or_update(
            self.rg, self.svc, api_id, "policy", PolicyContract(value=xml, format="rawxml")))

    def link_product(self, product: str, api_id: str) -> None:
        self._call(f"adding API {api_id} to product {product}", lambda: self.client.product_api.create_or_update(
            self.rg, self.svc, product, api_id))

    def ensure_tag(self, tag: str) -> None:
        """Create the tag when it does not exist; an existing (maybe shared) tag keeps its display name."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.mgmt.apimanagement.models import TagCreateUpdateParameters

        def run() -> None:
            try:
                self.client.tag.get(self.rg, self.svc, tag)
            except ResourceNotFoundError:
                self.client.tag.create_or_update(self.rg, self.svc, tag, TagCreateUpdateParameters(display_name=tag))

        self._call(f"creating tag {tag}", run)

    def assign_tag(self, tag: str, api_id: str) -> None:
        self._call(f"tagging API {api_id} with {tag}", lambda: self.client.tag.assign_to_api(
            self.rg, self.svc, api_id, tag))

    def delete_api(self, api_id: str, etag: str) -> None:
        self._call(f"deleting API {api_id}", lambda: self.client.api.begin_delete(
            self.rg, self.svc, api_id, if_match=etag, delete_revisions=True, polling=self._poller()).result())

    def put_named_value(self, change: NamedValueChange) -> None:
        from azure.mgmt.apimanagement.models import KeyVaultContractCreateProperties, NamedValueCreateContract

        if change.key_vault_id:
            body = NamedValueCreateContract(display_name=change.name, secret=True, key_vault=(
                KeyVaultContractCreateProperties(secret_identifier=change.key_vault_id,
                                                 identity_client_id=change.identity_client_id)))
        else:
            assert change.secret_value is not None
            body = NamedValueCreateContract(display_name=change.name, secret=True,
                                            value=change.secret_value.reveal(),
                                            tags=[f"apimsync-fp-{change.secret_value.fingerprint()}"])
        self._call(f"writing named value {change.name}", lambda: self.client.named_value.begin_create_or_update(
            self.rg, self.svc, change.name, body, polling=self._poller()).result())

    # -- the sync lock ---------------------------------------------------------------------------

    # -- the sync lock ---------------------------------------------------------------------------------------

    LOCK_ROUNDS = 8  # lists of the tickets before giving up
    lock_pause = 0.3  # seconds between them

    def acquire_lock(self, name: str, ttl_seconds: int, *, force: bool = False) -> str:
        """Take the sync lock ``name``; returns the ticket to release.

        Protocol (APIM has no conditional create for named values, no If-None-Match): each run creates its own
        *ticket*, a named value ``<name>-<owner>`` holding its owner and expiry, then lists the tickets of the lock.
        It proceeds only when its own ticket is the only live one. Otherwise the run with the larger owner id
        withdraws its ticket and tries again later, while the smaller one keeps its ticket and lists again; after
        ``LOCK_ROUNDS`` lists the run gives up with LockError. Expired tickets are deleted and ignored.

        Guarantee: two runs never both proceed while their tickets live. If A proceeds, its list did not show B's
        ticket, so B created it after that list; B's own list then shows A's ticket (kept until A releases) and B
        waits. This relies on ARM answering a list with every write it has completed (read-after-write), and on
        the ticket living as long as the holder works: a run longer than ``ttl_seconds``, or a clock ahead of the
        holder's by more than the grace (a tenth of the TTL, at most a minute), can remove a live ticket. Contention
        ends because only the larger owner withdraws."""
        owner = uuid.uuid4().hex[:12]
        ticket = f"{name}-{owner}"
        expires = (datetime.now(timezone.utc) + timedelta(seconds=ttl_seconds)).isoformat()
        try:
            self._put_ticket(ticket, owner, expires, ttl_seconds)
            others: list[dict[str, Any]] = []
            for round_ in range(self.LOCK_ROUNDS):
                others = [t for t in self._tickets(name) if t["ticket"] != ticket]
                if force:
                    for other in others:
                        self._delete_ticket(other["ticket"])
                    others = []
                if not others:
                    return ticket
                if round_ == self.LOCK_ROUNDS - 1:
                    break
                if owner > min(str(t["owner"]) for t in others):  # the larger owner withdraws
                    self._delete_ticket(ticket)
                    time.sleep(self.lock_pause * random.uniform(1.0, 2.0))
                    self._put_ticket(ticket, owner, expires, ttl_seconds)
                else:
                    time.sleep(self.lock_pause)
        except BaseException:
            self._delete_ticket(ticket)
            raise
        self._delete_ticket(ticket)
        holder = min(others, key=lambda t: str(t["expires"]))
        raise LockError(f"another apimsync run holds the lock on {self.svc} (owner {holder['owner']}, until "
                        f"{holder['expires']}); wait, or break it with --force-lock")

    def release_lock(self, name: str, ticket: str) -> None:
        """Delete our ticket; a failure is only logged (the ticket expires by itself)."""
        try:
            self._delete_ticket(ticket, quiet=False)
        except TargetError as exc:  # it expires by itself; never fail a finished sync over it
            log.warning("%s", exc)

    def _put_ticket(self, ticket: str, owner: str, expires: str, ttl_seconds: int) -> None:
        from azure.mgmt.apimanagement.models import NamedValueCreateContract

        body = NamedValueCreateContract(display_name=ticket, secret=False, value=json.dumps(
            {"owner": owner, "expires": expires, "ttl": ttl_seconds}))
        self._call("taking the sync lock", lambda: self.client.named_value.begin_create_or_update(
            self.rg, self.svc, ticket, body, polling=self._poller()).result())

    def _tickets(self, name: str) -> list[dict[str, Any]]:
        """The live tickets of lock ``name`` (expired or unreadable ones are deleted on the way)."""
        now = datetime.now(timezone.utc)
        listed = self._call("reading the sync lock", lambda: list(self.client.named_value.list_by_service(
            self.rg, self.svc, filter=f"startswith(displayName,'{name}-')")))
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
                self.client.named_value.delete(self.rg, self.svc, ticket, if_match="*")
            except ResourceNotFoundError:
                pass

        try:
            self._call("releasing the sync lock", run)
        except TargetError:
            if not quiet:
                raise


def _props(contract: Any) -> dict[str, Any]:
    """The JSON-named properties of an SDK ApiContract."""
    return {
        "path": contract.path, "displayName": contract.display_name, "description": contract.description,
        "serviceUrl": contract.service_url, "subscriptionRequired": contract.subscription_required,
        "protocols": [str(p.value if hasattr(p, "value") else p) for p in (contract.protocols or [])],
        "apiRevision": contract.api_revision, "apiRevisionDescription": contract.api_revision_description,
    }


def _last_segment(resource_id: str) -> str:
    return str(resource_id).rstrip("/").rsplit("/", 1)[-1]


def _parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None
