"""The APIM edge: every call apimsync makes to Azure Resource Manager, through azure-mgmt-apimanagement.

Two SDK quirks are handled here and nowhere else:
- 5.0.0's default long-running-operation poller follows ``Azure-AsyncOperation`` and fails on APIM's
  operation-result body (research/apim.md §3); we poll the ``Location`` header instead.
- ARM throttles per subscription: one gate (``apimsync/pacing.py``) paces every worker and holds them all on a 429.
The sync lock is in ``apimsync/lock.py``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from apimsync.config import ApimSettings
from apimsync.credentials import make_credential
from apimsync.errors import TargetError
from apimsync.lock import SyncLock
from apimsync.model import ActualApi, DesiredApi, NamedValueState, api_from_arm
from apimsync.pacing import gate_policy

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.apimanagement import ApiManagementClient

    from apimsync.plan import NamedValueChange

log = logging.getLogger(__name__)
T = TypeVar("T")
CONFLICT_RETRIES = 4


def location_poller(interval: float) -> Any:
    """An LRO poller that follows ``Location`` only: the workaround for SDK 5.0.0's failure on APIM's
    ``Azure-AsyncOperation`` results (research/apim.md §3). It waits one interval before its first poll: azure-core
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
        self._gate = gate_policy(reserve=max(2, concurrency))
        self.lock = SyncLock(self)
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
                # xml, as written: a rawxml GET returns expressions decoded, which is no longer XML (apiops#488)
                return self.client.api_policy.get(self.rg, self.svc, api_id, "policy", format="xml").value
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

    def read_named_value(self, name: str) -> tuple[str | None, str] | None:
        """A plain named value's value and ETag (None: it does not exist). For the lock, whose value is no secret."""
        from azure.core.exceptions import ResourceNotFoundError

        def run() -> tuple[str | None, str] | None:
            try:
                nv, etag = self._with_etag(self.client.named_value.get, name)
            except ResourceNotFoundError:
                return None
            return (None if nv.value is None else str(nv.value)), str(etag)

        return self._call(f"reading named value {name}", run)

    def write_named_value(self, name: str, value: str, *, if_match: str | None) -> bool:
        """Write a plain (not secret) named value; with ``if_match``, only over that ETag: False when another
        write came first (412, or 409 while it runs). For the lock's compare-and-swap."""
        from azure.core.exceptions import HttpResponseError
        from azure.mgmt.apimanagement.models import NamedValueCreateContract

        body = NamedValueCreateContract(display_name=name, secret=False, value=value)

        def run() -> bool:
            try:
                self.client.named_value.begin_create_or_update(self.rg, self.svc, name, body, if_match=if_match,
                                                               polling=self._poller()).result()
            except HttpResponseError as exc:
                # 412: written since it was read; 409: a write is running on it now. Either way another run
                # came first: the caller reads again rather than repeat a write meant for what it read
                if exc.status_code in (409, 412):
                    return False
                raise
            return True

        return self._call(f"writing named value {name}", run)

    @cached_property
    def _service(self) -> Any:
        return self._call(f"reading service {self.svc}",
                          lambda: self.client.api_management_service.get(self.rg, self.svc))

    def tier(self) -> str:
        """The service's SKU name (``sku.name``: Consumption, Developer, Basic, Standard, Premium, ...)."""
        sku = self._service.sku
        return str(getattr(sku.name, "value", sku.name)) if sku is not None else ""

    def gateway_url(self) -> str:
        """The service's gateway URL (``properties.gatewayUrl`` of the service resource)."""
        service = self._service
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
            if api.spec_json is None:
                raise TargetError(f"API {api.api_id}: the spec was not fetched (it was unchanged); plan with refresh")
            params.update(format="openapi+json", value=api.spec_json)
        api_id = api.api_id
        if revision_of is not None:
            # the documented two steps: clone the API into the new revision with sourceApiId alone
            # (ApiManagementCreateApiRevisionFromExistingApi.json), then import the spec into it, as
            # az apim api import --api-revision does; a new revision keeps the API's name and description
            # ("Can't change property Name for non-current revision"): they are set after the release
            api_id = f"{api.api_id};rev={revision}"
            clone = ApiCreateOrUpdateParameter(path=s.path, source_api_id=f"{self.service_id}/apis/{api.api_id}",
                                               api_revision_description=str(api.marker))
            self._call(f"creating revision {revision} of API {api.api_id}", lambda: self.client.api.
                       begin_create_or_update(self.rg, self.svc, api_id, clone, polling=self._poller()).result())
            params.update(display_name=revision_of.settings.display_name,
                          description=revision_of.settings.description)
            if with_spec and api.spec_json is not None:
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
            self.rg, self.svc, api_id, "policy", PolicyContract(value=xml, format="xml")))

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
                                            tags=[f"apimsync-fp-{change.fingerprint}"])
        self._call(f"writing named value {change.name}", lambda: self.client.named_value.begin_create_or_update(
            self.rg, self.svc, change.name, body, polling=self._poller()).result())


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
