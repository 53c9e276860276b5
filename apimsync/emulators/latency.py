"""How long the emulated services take to answer: one figure per kind of call, in emulated seconds (a sleep of
``figure / time_scale`` real seconds), so a benchmark can run a real sync's timing many times faster.

``REALISTIC`` is what a sync meets in Azure and Databricks. Where a public source states a figure it is cited;
the rest are assumptions, marked so, chosen to be on the quick side (a slower service only favours apimsync's
concurrency over a one-at-a-time loop):

- API import, a long-running operation (202 + Location, ApiManagementCreateApiUsingOai3Import.json): 10 s for
  a small spec ("Creation complete after 10s", hashicorp/terraform-provider-azurerm#7195), and 0.78 s per KB for
  a large one, whichever is longer: 340-670 KB specs took over 7.5 minutes on the Developer tier
  (Azure/apiops-cli#251); the rate through that report is an assumption (600 KB: about 8 minutes).
- Named value create, long-running (ApiManagementCreateNamedValue.json): 5 s, an assumption (no public figure).
- API policy PUT, synchronous (200/201 in ApiManagementCreateApiPolicy.json): 1 s, an assumption (the nearest
  public figure: an operation policy delete took 1 s, terraform-provider-azurerm#27963).
- other ARM writes and deletes 0.5 s, ARM reads 0.15 s: assumptions (ARM publishes no typical latency, only
  its 60 s proxy timeout: azure-resource-manager-rpc, common-api-details.md).
- Databricks list 0.3 s, endpoint detail 0.15 s, OpenAPI document 0.3 s: assumptions (Databricks publishes no
  latency for these control-plane reads).

``FAST`` is the CPU-efficiency model: 0.1 emulated seconds per ARM call (5 ms at time scale 20), 1 s long-running
operations, instant Databricks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    """Emulated seconds per kind of call (``api_import`` and ``named_value`` are long-running operations)."""

    arm_read: float = 0.0
    arm_write: float = 0.0
    arm_delete: float = 0.0
    policy_write: float = 0.0
    api_import: float = 0.2
    api_import_per_kb: float = 0.0  # per KB of an imported spec, when that is longer than api_import
    named_value: float = 0.2
    databricks_list: float = 0.0
    databricks_get: float = 0.0
    databricks_openapi: float = 0.0

    def arm(self, method: str, path: str) -> float:
        """The answer time of one ARM call (the long-running part of an import comes on top, as its LRO)."""
        if method in ("GET", "HEAD"):
            return self.arm_read
        if method == "DELETE":
            return self.arm_delete
        return self.policy_write if "/policies/" in path else self.arm_write

    def lro(self, resource: str, spec_bytes: int = 0) -> float:
        """How long a long-running operation on ``resource`` (``apis/...``, ``namedValues/...``) runs; an import
        takes longer the larger its spec."""
        if resource.startswith("namedValues/"):
            return self.named_value
        return max(self.api_import, self.api_import_per_kb * spec_bytes / 1024)


REALISTIC = Latency(arm_read=0.15, arm_write=0.5, arm_delete=0.5, policy_write=1.0, api_import=10.0,
                    api_import_per_kb=0.78, named_value=5.0, databricks_list=0.3, databricks_get=0.15,
                    databricks_openapi=0.3)
FAST = Latency(arm_read=0.1, arm_write=0.1, arm_delete=0.1, policy_write=0.1, api_import=1.0, named_value=1.0)
MODELS = {"none": Latency(), "fast": FAST, "realistic": REALISTIC}


def lro_only(seconds: float) -> Latency:
    """Instant calls; long-running operations of ``seconds``."""
    return Latency(api_import=seconds, named_value=seconds)


def wait(seconds: float, time_scale: float) -> None:
    """Sleep ``seconds`` of emulated time."""
    if seconds > 0:
        time.sleep(seconds / time_scale)
