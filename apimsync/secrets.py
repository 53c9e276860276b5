"""Secrets: the value behind the named value, from an environment variable, a Databricks secret scope or a Key
Vault reference. A :class:`Secret` never shows its value in str, repr, f-strings, logs or exceptions.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

from apimsync.credentials import databricks_dbutils
from apimsync.errors import ConfigError
from apimsync.settings import SecretSource


class Secret:
    """A secret string. ``reveal()`` is the only way to its value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def fingerprint(self, salt: str) -> str:
        """16 hex chars of HMAC-SHA256 keyed with ``salt`` (the named value's resource id): enough to notice a
        rotation, useless for recovering a token, and not comparable across targets (no precomputed table of
        guesses serves two services)."""
        return hmac.new(salt.encode("utf-8"), self._value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


def read_secret(source: SecretSource, env: Mapping[str, str] | None = None, key: str = "secret") -> Secret:
    """The value ``source`` names, read now: its plain value, an environment variable, or a Databricks secret
    (readable on Databricks only); ``key`` is the configuration key errors name."""
    env = os.environ if env is None else env
    if source.value:
        return Secret(source.value)
    if source.env:
        value = env.get(source.env, "")
        if not value.strip():
            raise ConfigError(f"{key}.env: environment variable {source.env} is not set or empty")
        return Secret(value)
    if source.databricks_secret:
        dbutils = databricks_dbutils()
        if dbutils is None:
            raise ConfigError(f"{key}.databricks_secret: only readable when running on Databricks")
        scope, _, secret_key = source.databricks_secret.partition("/")
        try:
            return Secret(dbutils.secrets.get(scope=scope, key=secret_key))
        except Exception:
            raise ConfigError(f"{key}.databricks_secret: cannot read secret {scope}/{secret_key}") from None
    raise ConfigError(f"{key}: set one of env, databricks_secret")
