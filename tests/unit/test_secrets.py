"""Secrets never show their value; named-value sources resolve or fail with a clear message."""

from __future__ import annotations

import logging
import pickle

import pytest

from apimsync.errors import ConfigError
from apimsync.resources.named_values import resolve as resolve_named_value
from apimsync.secrets import Secret
from apimsync.settings import NamedValueSource

TOKEN = "dapi-0123456789abcdef-secret"


def test_secret_is_hidden_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret(TOKEN)
    assert TOKEN not in str(secret) and TOKEN not in repr(secret) and TOKEN not in f"{secret}"
    assert TOKEN not in f"{secret!r} {[secret]} {({'k': secret})}"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").debug("value %s %r", secret, secret)
    assert TOKEN not in caplog.text
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert secret.reveal() == TOKEN
    assert len(secret.fingerprint("a")) == 16 and TOKEN not in secret.fingerprint("a")
    assert Secret(TOKEN).fingerprint("a") != Secret(TOKEN + "x").fingerprint("a")
    assert Secret(TOKEN).fingerprint("a") != Secret(TOKEN).fingerprint("b")  # keyed: no table serves two targets


def test_env_source() -> None:
    got = resolve_named_value(NamedValueSource(name="nv", env="TOK"), env={"TOK": TOKEN})
    assert got.secret_value == Secret(TOKEN) and got.key_vault_id is None
    with pytest.raises(ConfigError, match="environment variable TOK is not set") as info:
        resolve_named_value(NamedValueSource(name="nv", env="TOK"), env={})
    assert TOKEN not in str(info.value)


def test_key_vault_source_is_a_reference() -> None:
    kv = "https://vault.vault.azure.net/secrets/dbx-token"
    got = resolve_named_value(NamedValueSource(name="nv", key_vault=kv, identity_client_id="cid"), env={})
    assert got.secret_value is None and got.key_vault_id == kv and got.identity_client_id == "cid"


def test_databricks_secret_only_on_databricks() -> None:
    with pytest.raises(ConfigError, match="only readable when running on Databricks"):
        resolve_named_value(NamedValueSource(name="nv", databricks_secret="scope/key"), env={})


def test_databricks_secret_through_dbutils(monkeypatch: pytest.MonkeyPatch) -> None:
    import __main__

    class Secrets:
        def get(self, scope: str, key: str) -> str:
            assert (scope, key) == ("scope", "key")
            return TOKEN

    class DbUtils:
        secrets = Secrets()

    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "16.4")
    monkeypatch.setattr(__main__, "dbutils", DbUtils(), raising=False)
    got = resolve_named_value(NamedValueSource(name="nv", databricks_secret="scope/key"), env={})
    assert got.secret_value is not None and got.secret_value.reveal() == TOKEN
    assert got.name == "nv", "the named value keeps its own name, not the secret's key"


def test_no_source_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="set one of env, key_vault, databricks_secret"):
        resolve_named_value(NamedValueSource(name="nv"), env={})
