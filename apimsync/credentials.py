"""Credentials: the Azure credential named in ``apim.credential``, and the Databricks runtime's ``dbutils``.

The product's own module for them: the emulators use ``StaticTokenCredential`` too, but the product never imports
from its test doubles.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

from apimsync.errors import TargetError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


class StaticTokenCredential:
    """An azure-core TokenCredential with a fixed token: what ``credential: emulator`` uses."""

    def __init__(self, token: str = "emulator-token") -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(self._token, int(time.time()) + 3600)


def service_credential(name: str) -> TokenCredential:
    """A Unity Catalog service credential: ``dbutils.credentials.getServiceCredentialsProvider``, or, where the
    runtime's dbutils does not offer it (Spark Connect runtimes: serverless, standard access mode), the
    ``databricks.service_credentials`` module Databricks documents for those ("Use Unity Catalog service
    credentials to connect to external cloud services")."""
    dbutils = databricks_dbutils()
    if dbutils is None:
        raise TargetError(f"apim.credential: service credential '{name}' is only available on Databricks")
    try:
        return dbutils.credentials.getServiceCredentialsProvider(name)
    except Exception as first:  # unsupported through this dbutils (Spark Connect): the module, if present
        try:
            from databricks import service_credentials  # type: ignore[attr-defined]
        except ImportError:
            raise TargetError(f"apim.credential: service credential '{name}': {first}") from None
        return service_credentials.getServiceCredentialsProvider(name)


def make_credential(kind: str) -> TokenCredential:
    """The Azure credential named in ``apim.credential``."""
    if kind == "emulator":
        return StaticTokenCredential()
    if kind == "cli":
        from azure.identity import AzureCliCredential

        return AzureCliCredential()
    if kind == "managed-identity":
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential()
    if kind.startswith("service-credential:"):
        name = kind.split(":", 1)[1]
        return service_credential(name)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def databricks_dbutils() -> Any | None:
    """The notebook/job ``dbutils`` when running on Databricks, else None."""
    if "DATABRICKS_RUNTIME_VERSION" not in os.environ:
        return None
    main = sys.modules.get("__main__")
    found = getattr(main, "dbutils", None)
    if found is not None:
        return found
    try:
        from databricks.sdk.runtime import dbutils

        return dbutils
    except Exception:
        return None
