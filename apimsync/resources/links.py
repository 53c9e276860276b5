"""Product and tag links: an API in each product and with each tag the configuration names (never removed: a
link someone else made stays)."""

from __future__ import annotations

from apimsync.arm import ArmResource
from apimsync.model import ActualApi, DesiredApi


def missing(desired: DesiredApi, actual: ActualApi) -> tuple[list[str], list[str]]:
    """(products, tags) an API must still be linked to."""
    return ([p for p in desired.products if p not in actual.products],
            [t for t in desired.tags if t not in actual.tags])


class Links(ArmResource):
    """The product and tag links of one service's APIs."""

    def product_apis(self, product: str) -> set[str]:
        return self.call(f"listing APIs of product {product}", lambda: {
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

        return self.call(f"listing API tags of {self.svc}", run)

    def link_product(self, product: str, api_id: str) -> None:
        self.call(f"adding API {api_id} to product {product}", lambda: self.client.product_api.create_or_update(
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

        self.call(f"creating tag {tag}", run)

    def assign_tag(self, tag: str, api_id: str) -> None:
        self.call(f"tagging API {api_id} with {tag}", lambda: self.client.tag.assign_to_api(
            self.rg, self.svc, api_id, tag))


def _last_segment(resource_id: str) -> str:
    return str(resource_id).rstrip("/").rsplit("/", 1)[-1]
