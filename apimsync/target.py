"""One APIM service as apimsync sees it: the connection (:class:`apimsync.arm.Arm`), a handle per resource it reads
and writes (:mod:`apimsync.resources`), the sync lock (:mod:`apimsync.lock`), and what it reads of the service
itself (its tier, gateway URL and subscription keys).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from apimsync.arm import Arm
from apimsync.errors import TargetError
from apimsync.lock import SyncLock
from apimsync.resources.apis import Apis
from apimsync.resources.links import Links
from apimsync.resources.named_values import NamedValues
from apimsync.resources.policies import Policies
from apimsync.resources.revisions import Revisions

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.apimanagement import ApiManagementClient

    from apimsync.settings import ApimSettings


class ApimTarget(Arm):
    """One APIM service, reached through the real SDK client."""

    def __init__(self, settings: ApimSettings, *, credential: TokenCredential | None = None,
                 client: ApiManagementClient | None = None, retry_total: int = 10, concurrency: int = 8) -> None:
        super().__init__(settings, credential=credential, client=client, retry_total=retry_total,
                         concurrency=concurrency)
        self.apis = Apis(self)
        self.policies = Policies(self)
        self.links = Links(self)
        self.revisions = Revisions(self)
        self.named_values = NamedValues(self)
        self.lock = SyncLock(self.named_values, self.svc)

    @cached_property
    def _service(self) -> Any:
        return self.call(f"reading service {self.svc}",
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
        keys = self.call(f"reading the keys of subscription {sid}",
                          lambda: self.client.subscription.list_secrets(self.rg, self.svc, sid))
        return str(keys.primary_key)
