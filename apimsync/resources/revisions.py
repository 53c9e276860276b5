"""Revisions: with ``update_strategy: revision`` a new spec goes into a new revision, which gets the policy and is
released (made current) in one step; the revision before it is kept for a rollback in the portal."""

from __future__ import annotations

from apimsync.arm import ArmResource


class Revisions(ArmResource):
    """The revisions of one service's APIs."""

    def list(self, api_id: str) -> list[tuple[int, bool]]:
        """(revision number, is current) of every revision of an API."""
        return self.call(f"listing revisions of API {api_id}", lambda: [
            (int(r.api_revision or 0), bool(r.is_current)) for r in self.client.api_revision.list_by_service(
                self.rg, self.svc, api_id)])

    def release(self, api_id: str, revision: int) -> None:
        from azure.mgmt.apimanagement.models import ApiReleaseContract

        body = ApiReleaseContract(api_id=f"{self.arm.service_id}/apis/{api_id};rev={revision}",
                                  notes="released by apimsync")
        self.call(f"releasing revision {revision} of API {api_id}", lambda: self.client.api_release.create_or_update(
            self.rg, self.svc, api_id, f"apimsync-rev{revision}", body))

    def delete(self, api_id: str, revision: int) -> None:
        """Delete one non-current revision (never the API: ``deleteRevisions`` stays off)."""
        self.call(f"deleting revision {revision} of API {api_id}", lambda: self.client.api.begin_delete(
            self.rg, self.svc, f"{api_id};rev={revision}", if_match="*", polling=self.poller()).result())
