"""API policies: read and written as ``xml`` (XML-encoded), compared in canonical form; the hash of the one
apimsync wrote is kept in the API's marker, so a run between drift checks need not read it."""

from __future__ import annotations

from apimsync.arm import ArmResource
from apimsync.model import ActualApi, DesiredApi


def reasons(desired: DesiredApi, actual: ActualApi) -> list[str]:
    """Why an API's policy must be written: missing, or different from the rendered template once both are in
    canonical form (an edit in the portal reorders attributes and whitespace without changing anything). Between
    drift checks the policy is not read: the hash in the API's marker stands for it."""
    if actual.policy_unread:
        recorded = actual.marker.policy if actual.marker is not None else ""
        return [] if recorded and recorded == desired.marker.policy else ["policy changed"]
    if actual.policy_xml is None:
        return ["policy missing"]
    if actual.policy_xml != desired.policy_xml and actual.policy_form != desired.policy_form:
        return ["policy differs from the template (changed, or edited outside apimsync)"]
    return []


class Policies(ArmResource):
    """The API-level policies of one service (``policies/policy`` of each API)."""

    def get(self, api_id: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        def run() -> str | None:
            try:
                # xml, as written: a rawxml GET returns expressions decoded, which is no longer XML (apiops#488)
                return self.client.api_policy.get(self.rg, self.svc, api_id, "policy", format="xml").value
            except ResourceNotFoundError:
                return None

        return self.call(f"reading the policy of API {api_id}", run)

    def put(self, api_id: str, xml: str) -> None:
        from azure.mgmt.apimanagement.models import PolicyContract

        self.call(f"writing the policy of API {api_id}", lambda: self.client.api_policy.create_or_update(
            self.rg, self.svc, api_id, "policy", PolicyContract(value=xml, format="xml")))
