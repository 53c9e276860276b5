"""Who a workspace accepts, and Databricks' error envelope: personal access tokens, service principals' OAuth
tokens (minted by ``/oidc/v1/token``, optionally scoped to endpoints), and Microsoft Entra tokens for the Azure
Databricks resource presented by registered application ids (what APIM's managed identity sends).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from apimsync.emulators._server import Response

AZURE_DATABRICKS_RESOURCE = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d"
TOKEN_LIFETIME_S = 3600


def error(status: int, code: str | int, message: str) -> Response:
    return Response.json(status, {"error_code": code, "message": message})


def entra_token(resource: str, app_id: str, tenant: str = "00000000-0000-0000-0000-00000000aaaa",
                lifetime_s: int = TOKEN_LIFETIME_S) -> str:
    """An emulated Microsoft Entra access token (unsigned JWT shape): what APIM's managed identity gets."""
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {"aud": resource, "appid": app_id, "iss": f"https://sts.windows.net/{tenant}/",
              "exp": int(time.time()) + lifetime_s}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.emulated"


def _entra_claims(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3 or parts[2] != "emulated":
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


@dataclass
class _Grant:
    client_id: str
    endpoints: frozenset[str] | None  # None: every endpoint (scope all-apis without authorization_details)
    expires: float


@dataclass
class Identities:
    """Who this workspace accepts: its PATs, its service principals (OAuth secrets), and Entra application ids."""

    pats: set[str] = field(default_factory=set)
    service_principals: dict[str, str] = field(default_factory=dict)  # client id -> OAuth secret
    entra_apps: set[str] = field(default_factory=set)  # application ids registered as service principals
    _grants: dict[str, _Grant] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def mint(self, client_id: str, endpoints: frozenset[str] | None) -> tuple[str, int]:
        token = "eyJemulated." + secrets.token_urlsafe(24)
        with self._lock:
            self._grants[token] = _Grant(client_id, endpoints, time.time() + TOKEN_LIFETIME_S)
        return token, TOKEN_LIFETIME_S

    def refuse(self, token: str | None, endpoint_id: str, *, oauth_only: bool = False) -> Response | None:
        """None when ``token`` may query the endpoint, else Databricks' answer.

        An unknown token gets 403 ``{"error_code": 403, "message": "Invalid access token."}`` as workspace APIs
        answer it (databricks-sdk-go issue 873). Route-optimized endpoints take only OAuth tokens minted by the
        workspace ("Personal access tokens are not supported"); the status of that refusal is not documented,
        401 is our assumption.
        """
        if token is None:
            return error(401, 401, "Credential was not sent or was of an unsupported type for this API.")
        with self._lock:
            grant = self._grants.get(token)
        if grant is not None and grant.expires > time.time():
            if grant.endpoints is None or endpoint_id in grant.endpoints:
                return None
            return error(403, "PERMISSION_DENIED", "The token's authorization_details do not cover this endpoint.")
        if oauth_only:
            if token in self.pats or _entra_claims(token) is not None:
                return error(401, 401, "Route-optimized endpoints accept only OAuth tokens from the workspace's "
                                       "/oidc/v1/token; personal access tokens are not supported.")
            return error(403, 403, "Invalid access token.")
        if token in self.pats:
            return None
        claims = _entra_claims(token)
        if claims is not None and claims.get("aud") == AZURE_DATABRICKS_RESOURCE \
                and claims.get("appid") in self.entra_apps and float(claims.get("exp") or 0) > time.time():
            return None
        return error(403, 403, "Invalid access token.")
