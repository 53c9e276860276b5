"""Named values: the token and service principal each workspace's policies read, kept in APIM as secrets.

Those apimsync keeps (each workspace's token, its service principal's id and secret) are planned: their source is
read now (:func:`resolve`) and their state in APIM once, and a change is written before the first API whose policy
reads it. Any other a policy references must already exist in APIM. An API whose policy reads a named value that
cannot be resolved or does not exist fails alone, with the reason. A written value carries a tag with its keyed
fingerprint (:meth:`apimsync.secrets.Secret.fingerprint`), so a rotation is noticed without reading the secret.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from apimsync.arm import ArmResource
from apimsync.changes import Action, Failure, NamedValueChange
from apimsync.errors import ApimsyncError, ConfigError
from apimsync.model import DesiredApi
from apimsync.secrets import Secret, read_secret
from apimsync.settings import NamedValueSource, Settings, gateway_auth


@dataclass(frozen=True)
class NamedValueDesired:
    name: str
    secret_value: Secret | None
    key_vault_id: str | None
    identity_client_id: str | None


@dataclass(frozen=True)
class NamedValueState:
    """A named value as APIM reports it (never with its secret value)."""

    name: str
    secret: bool
    key_vault_id: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def value_fingerprint(self) -> str | None:
        for tag in self.tags:
            if tag.startswith("apimsync-fp-"):
                return tag[len("apimsync-fp-"):]
        return None


def resolve(source: NamedValueSource, env: Mapping[str, str] | None = None,
                        key: str = "policy.named_value") -> NamedValueDesired:
    """Where the named value's value comes from, read now (Key Vault references are left to APIM); ``key`` is the
    configuration key errors name."""
    name = str(source.name)
    if source.key_vault and not source.value:
        return NamedValueDesired(name, None, source.key_vault, source.identity_client_id)
    if not (source.value or source.env or source.databricks_secret):
        raise ConfigError(f"{key}: the policy references named value '{name}'; set one of env, key_vault, "
                          "databricks_secret" + (", value" if "client_id" in key else ""))
    return NamedValueDesired(name, read_secret(source, env, key), None, None)


def kept_by(desired: list[DesiredApi], settings: Settings) -> dict[str, tuple[NamedValueSource, str]]:
    """The named values apimsync keeps for these APIs (each workspace's token and service principal), by name,
    with the configuration key that sets each."""
    kept: dict[str, tuple[NamedValueSource, str]] = {}
    for ws in sorted({d.workspace for d in desired}):
        creds = gateway_auth(settings, ws)
        kept[str(creds.token.name)] = (creds.token, "named_value")
        if creds.oauth:
            kept[str(creds.oauth.client_id.name)] = (creds.oauth.client_id, "oauth.client_id")
            kept[str(creds.oauth.client_secret.name)] = (creds.oauth.client_secret, "oauth.client_secret")
    return kept


def change(want: NamedValueDesired, have: NamedValueState | None,
                       source: NamedValueSource, salt: str) -> NamedValueChange:
    """What to do with one named value: create, update (with why) or nothing. ``salt`` keys the value's
    fingerprint (the named value's resource id)."""
    fingerprint = want.secret_value.fingerprint(salt) if want.secret_value is not None else None
    kind = ("key_vault" if want.key_vault_id else "databricks_secret" if source.databricks_secret else
            "value" if source.value else "env")
    reasons: list[str] = []
    if have is None:
        action, reasons = Action.CREATE, ["missing"]
    else:
        if not have.secret:
            reasons.append("not marked secret")
        if want.key_vault_id and have.key_vault_id != want.key_vault_id:
            reasons.append("Key Vault reference changed")
        if fingerprint is not None and (have.key_vault_id or have.value_fingerprint != fingerprint):
            reasons.append("value changed (token rotated)")
        action = Action.UPDATE if reasons else Action.NOOP
    return NamedValueChange(want.name, action, tuple(reasons), kind, want.secret_value, want.key_vault_id,
                            want.identity_client_id, fingerprint)


class NamedValues(ArmResource):
    """The named values of one service: their state (never a secret's value), plain values for the lock, writes."""

    def get(self, name: str) -> NamedValueState | None:
        from azure.core.exceptions import ResourceNotFoundError

        def run() -> NamedValueState | None:
            try:
                nv = self.client.named_value.get(self.rg, self.svc, name)
            except ResourceNotFoundError:
                return None
            kv = nv.key_vault.secret_identifier if nv.key_vault else None
            return NamedValueState(name=str(nv.name), secret=bool(nv.secret), key_vault_id=kv,
                                   tags=tuple(nv.tags or ()))

        return self.call(f"reading named value {name}", run)

    def read_plain(self, name: str) -> tuple[str | None, str] | None:
        """A plain named value's value and ETag (None: it does not exist). For the lock, whose value is no secret."""
        from azure.core.exceptions import ResourceNotFoundError

        def run() -> tuple[str | None, str] | None:
            try:
                nv, etag = self.arm.with_etag(self.client.named_value.get, name)
            except ResourceNotFoundError:
                return None
            return (None if nv.value is None else str(nv.value)), str(etag)

        return self.call(f"reading named value {name}", run)

    def write_plain(self, name: str, value: str, *, if_match: str | None) -> bool:
        """Write a plain (not secret) named value; with ``if_match``, only over that ETag: False when another
        write came first (412, or 409 while it runs). For the lock's compare-and-swap."""
        from azure.core.exceptions import HttpResponseError
        from azure.mgmt.apimanagement.models import NamedValueCreateContract

        body = NamedValueCreateContract(display_name=name, secret=False, value=value)

        def run() -> bool:
            try:
                self.client.named_value.begin_create_or_update(self.rg, self.svc, name, body, if_match=if_match,
                                                               polling=self.poller()).result()
            except HttpResponseError as exc:
                # 412: written since it was read; 409: a write is running on it now. Either way another run
                # came first: the caller reads again rather than repeat a write meant for what it read
                if exc.status_code in (409, 412):
                    return False
                raise
            return True

        return self.call(f"writing named value {name}", run)

    def put(self, change: NamedValueChange) -> None:
        from azure.mgmt.apimanagement.models import KeyVaultContractCreateProperties, NamedValueCreateContract

        if change.key_vault_id:
            body = NamedValueCreateContract(display_name=change.name, secret=True, key_vault=(
                KeyVaultContractCreateProperties(secret_identifier=change.key_vault_id,
                                                 identity_client_id=change.identity_client_id)))
        else:
            assert change.secret_value is not None
            body = NamedValueCreateContract(display_name=change.name, secret=True,
                                            value=change.secret_value.reveal(),
                                            tags=[f"apimsync-fp-{change.fingerprint}"])
        self.call(f"writing named value {change.name}", lambda: self.client.named_value.begin_create_or_update(
            self.rg, self.svc, change.name, body, polling=self.poller()).result())


class NamedValueDecisions:
    """The named values each API's policy reads, each decided once. Thread-safe: the plan's workers ask for each
    API as it is built."""

    def __init__(self, settings: Settings, named_values: NamedValues, env: Mapping[str, str] | None) -> None:
        self._settings = settings
        self._store = named_values
        self._env = env
        self._lock = threading.Lock()
        # name -> its change; None: it exists in APIM and is not apimsync's; a string: why it cannot be used
        self._decided: dict[tuple[str, str], NamedValueChange | str | None] = {}

    def check(self, d: DesiredApi) -> DesiredApi | Failure:
        """``d``, or its failure when a named value its policy reads cannot be used."""
        for _name, decided in self._for(d):
            if isinstance(decided, str):
                return Failure(d.workspace, d.endpoint, "policy", decided, d.api_id)
        return d

    def of(self, d: DesiredApi) -> tuple[NamedValueChange, ...]:
        """The changes to the named values apimsync keeps that ``d``'s policy reads."""
        return tuple(c for _, c in self._for(d) if isinstance(c, NamedValueChange))

    def used(self, desired: Iterable[DesiredApi]) -> list[NamedValueChange]:
        """Every planned named value the APIs read, by name."""
        changes = {c.name: c for d in desired for c in self.of(d)}
        return [changes[name] for name in sorted(changes)]

    def _for(self, d: DesiredApi) -> list[tuple[str, NamedValueChange | str | None]]:
        kept = kept_by([d], self._settings)
        return [(name, self._decide(name, kept.get(name))) for name in d.named_value_refs]

    def _decide(self, name: str, kept: tuple[NamedValueSource, str] | None) -> NamedValueChange | str | None:
        decision = (name, repr(kept))  # one name may be kept for one workspace and read by another's policy
        with self._lock:  # a few names, each decided once: one at a time is fine
            if decision not in self._decided:
                try:
                    if kept is None:
                        if self._store.get(name) is None:
                            raise ConfigError(f"the policy references named value '{name}', which does not exist "
                                              "in APIM")
                        self._decided[decision] = None
                    else:
                        source, key = kept
                        want = resolve(source, env=self._env, key=key)
                        self._decided[decision] = change(want, self._store.get(name), source,
                                                         f"{self._store.arm.service_id}/namedValues/{name}")
                except ApimsyncError as exc:
                    self._decided[decision] = str(exc)
            return self._decided[decision]
