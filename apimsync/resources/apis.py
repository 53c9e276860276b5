"""APIs: the API with its spec (an OpenAPI import) or its settings alone: read, compared and written.

An API's id, path, display name, description, backend and subscription setting are set by apimsync; its marker
(``apiRevisionDescription``) says it is apimsync's, from which endpoint, and the hashes of what was published.
"""

from __future__ import annotations

import json
from typing import Any

from apimsync.arm import ArmResource
from apimsync.errors import TargetError
from apimsync.model import ActualApi, DesiredApi, api_from_arm


def reasons(desired: DesiredApi, actual: ActualApi) -> tuple[list[str], bool]:
    """Why an owned API must be written, and whether with its spec (an import) or its settings alone."""
    out: list[str] = []
    marker, want = actual.marker, desired.marker
    spec_changed = marker is None or marker.spec != want.spec
    if spec_changed:
        out.append("spec changed")
    differing = desired.settings.differences(actual.settings)
    if marker is not None and marker.settings != want.settings:
        out.append("settings changed" + (f": {', '.join(differing)}" if differing else ""))
    elif differing:
        out.append(f"drift: {', '.join(differing)} edited outside apimsync")
    if marker is not None and (marker.workspace, marker.endpoint) != (want.workspace, want.endpoint):
        out.append(f"source moved to {want.workspace}/{want.endpoint}")
    if marker is not None and marker.environment != want.environment:
        out.append(f"adopted by environment {want.environment}")
    if marker is not None and marker.policy != want.policy:
        # the policy's hash goes with the API (its marker): written when the policy is, read instead of it
        out.append("policy recorded")
    if not out and marker is not None and want.source and marker.source != want.source:
        # the spec is the same, but what determines it moved (or a marker from before fingerprints): record it
        # once, so the next run need not fetch the spec again
        out.append("spec source recorded")
    return out, spec_changed


class Apis(ArmResource):
    """The APIs of one service."""

    def list(self) -> list[ActualApi]:
        """Every API in the service (owned or not), current revisions only, without policies.

        The listing returns non-current revisions too (``<id>;rev=N``); ``isCurrent eq true`` is the contract's
        filter for that (apimapis.json, Api_ListByService), and a ``;rev=`` id is skipped should one slip through.
        """

        def run() -> list[ActualApi]:
            listed = self.client.api.list_by_service(self.rg, self.svc, filter="isCurrent eq true")
            return [api_from_arm(str(a.name), _props(a)) for a in listed if ";rev=" not in str(a.name)]

        return self.call(f"listing APIs of {self.svc}", run)

    def get(self, api_id: str) -> tuple[ActualApi, str] | None:
        """The API and its ETag, or None if it does not exist."""
        from azure.core.exceptions import ResourceNotFoundError

        def run() -> tuple[ActualApi, str] | None:
            try:
                contract, etag = self.arm.with_etag(self.client.api.get, api_id)
            except ResourceNotFoundError:
                return None
            return api_from_arm(str(contract.name), _props(contract)), str(etag)

        return self.call(f"reading API {api_id}", run)

    def put(self, api: DesiredApi, *, with_spec: bool, if_match: str | None = None,
                revision_of: ActualApi | None = None, revision: int = 0) -> None:
        """Create or update an API. ``with_spec`` imports the spec; else only its settings change.

        ``revision_of``: import into new revision number ``revision`` of that API (made current by
        :meth:`apimsync.resources.revisions.Revisions.release`).
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
            clone = ApiCreateOrUpdateParameter(path=s.path, source_api_id=f"{self.arm.service_id}/apis/{api.api_id}",
                                               api_revision_description=str(api.marker))
            self.call(f"creating revision {revision} of API {api.api_id}", lambda: self.client.api.
                       begin_create_or_update(self.rg, self.svc, api_id, clone, polling=self.poller()).result())
            params.update(display_name=revision_of.settings.display_name,
                          description=revision_of.settings.description)
            if with_spec and api.spec_json is not None:
                spec = json.loads(api.spec_json)
                spec["info"] = {**spec.get("info", {}), "title": revision_of.settings.display_name,
                                "description": revision_of.settings.description}
                params["value"] = json.dumps(spec, separators=(",", ":"))
        body = ApiCreateOrUpdateParameter(**params)
        self.call(f"writing API {api_id}", lambda: self.client.api.begin_create_or_update(
            self.rg, self.svc, api_id, body, if_match=if_match, polling=self.poller()).result())

    def delete(self, api_id: str, etag: str) -> None:
        self.call(f"deleting API {api_id}", lambda: self.client.api.begin_delete(
            self.rg, self.svc, api_id, if_match=etag, delete_revisions=True, polling=self.poller()).result())


def _props(contract: Any) -> dict[str, Any]:
    """The JSON-named properties of an SDK ApiContract."""
    return {
        "path": contract.path, "displayName": contract.display_name, "description": contract.description,
        "serviceUrl": contract.service_url, "subscriptionRequired": contract.subscription_required,
        "protocols": [str(p.value if hasattr(p, "value") else p) for p in (contract.protocols or [])],
        "apiRevision": contract.api_revision, "apiRevisionDescription": contract.api_revision_description,
    }
