"""What the resource families of the emulated service share: constants, ARM's error envelope, and ``Service``,
the attributes and cross-family methods each family may use (implemented by :class:`ApimEmulator`)."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any

from apimsync.emulators._server import Faults, Request, Response
from apimsync.emulators.apim.state import State
from apimsync.emulators.latency import Latency

API_VERSION = "2024-05-01"
API_ID = re.compile(r"^[^*#&+:<>?]+$")
NAMED_VALUE_DISPLAY = re.compile(r"^[A-Za-z0-9\-._]+$")
PAGE_SIZE = 100
TYPES = {"apis": "Microsoft.ApiManagement/service/apis", "namedValues": "Microsoft.ApiManagement/service/namedValues",
         "tags": "Microsoft.ApiManagement/service/tags", "products": "Microsoft.ApiManagement/service/products",
         "policies": "Microsoft.ApiManagement/service/apis/policies",
         "operations": "Microsoft.ApiManagement/service/apis/operations",
         "releases": "Microsoft.ApiManagement/service/apis/releases",
         "subscriptions": "Microsoft.ApiManagement/service/subscriptions"}
MANAGED_IDENTITY_APP_ID = "5b0f1c2e-7a43-4c4e-9d0a-0a9100000001"  # the service's system-assigned identity


@dataclass
class Throttle:
    """ARM token buckets per subscription: (capacity, refill per emulated second)."""

    enabled: bool = False
    reads: tuple[float, float] = (250, 25)
    writes: tuple[float, float] = (200, 10)
    deletes: tuple[float, float] = (200, 10)


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def response(self) -> Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return Response.json(self.status, {"error": body})


class Throttled(ArmError):
    def __init__(self, emulated_wait: float, real_wait: float, header: str) -> None:
        super().__init__(429, "SubscriptionRequestsThrottled",
                         "Number of requests for subscription exceeded the limit. Please try again later.")
        self.headers = {"Retry-After": str(max(1, math.ceil(emulated_wait))),
                        "retry-after-ms": str(max(1, math.ceil(real_wait * 1000))), header: "0"}

    def response(self) -> Response:
        response = super().response()
        response.headers.update(self.headers)
        return response


def not_found(what: str) -> ArmError:
    return ArmError(404, "ResourceNotFound", f"{what} not found.")




class Service:
    """The service as its resource families see it."""

    base_path: str
    url: str
    sku: str
    latency: Latency
    time_scale: float
    faults: Faults
    _lock: threading.RLock
    _state: State
    _stats: dict[str, Any]
    _operations: dict[str, Any]

    def arm_id(self, *parts: str) -> str:
        raise NotImplementedError

    def _etag(self) -> str:
        raise NotImplementedError

    def _save(self) -> None:
        raise NotImplementedError

    def _list(self, request: Request, parts: list[str], items: list[dict[str, Any]]) -> Response:
        raise NotImplementedError

    def _start_lro(self, resource: str, async_code: int, finish: Any, lro_fail: bool, busy_key: str | None, *,
                   body: dict[str, Any] | None, status: int, etag: str | None = None, spec_bytes: int = 0) -> Response:
        raise NotImplementedError

    def _poll(self, op_id: str) -> Response:
        raise NotImplementedError

    def _api_body(self, base: str, rev: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def _nv_body(self, nv_id: str, *, state: str = "Succeeded") -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _split(api_id: str) -> tuple[str, str | None]:
        raise NotImplementedError

    def _check_if_match(self, request: Request, etag: str | None, required: bool) -> None:
        raise NotImplementedError

    def _busy(self, key: str, what: str = "API") -> None:
        raise NotImplementedError

    def _revision(self, api_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def _base(self, api_id: str) -> str:
        raise NotImplementedError
