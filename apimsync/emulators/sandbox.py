"""Both emulators started together, plus the settings and clients that point apimsync at them.

Used by ``apimsync demo`` and ``apimsync emulate``, the tests and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from apimsync.emulators.apim import ApimEmulator, Throttle
from apimsync.emulators.databricks import DEFAULT_FIXTURES, DatabricksEmulator

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from apimsync.config import Settings
    from apimsync.engine import Engine

DEMO_TOKEN_ENV = "APIMSYNC_DEMO_TOKEN"  # the named value's source in the sandbox configuration
DEMO_TOKEN = "dapi-demo-token-for-apim"


class Sandbox:
    """A Databricks workspace and an APIM service on 127.0.0.1, wired for apimsync."""

    def __init__(self, *, fixtures: str | Path | None = DEFAULT_FIXTURES, endpoints: int | None = None,
                 databricks_port: int = 0, apim_port: int = 0, state_file: str | Path | None = None,
                 throttle: Throttle | None = None, time_scale: float = 1.0, lro_seconds: float = 0.05,
                 seed: int = 0) -> None:
        self.databricks = DatabricksEmulator(fixtures, endpoints=endpoints, port=databricks_port, seed=seed)
        self.apim = ApimEmulator(port=apim_port, state_file=state_file, throttle=throttle, time_scale=time_scale,
                                 lro_seconds=lro_seconds, seed=seed)

    def start(self) -> Sandbox:
        self.databricks.start()
        try:
            self.apim.start()
        except BaseException:
            self.databricks.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.apim.stop()
        finally:
            self.databricks.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def config(self, ca_file: str | Path | None = None, **sections: Any) -> dict[str, Any]:
        """An apimsync configuration (as a mapping) pointing at both emulators; ``sections`` merge on top."""
        config: dict[str, Any] = {
            "workspaces": [{"name": "emulator", "host": self.databricks.url}],
            "apim": {
                "subscription_id": self.apim.SUBSCRIPTION, "resource_group": self.apim.RESOURCE_GROUP,
                "service": self.apim.SERVICE, "base_url": self.apim.url,
                "ca_bundle": str(ca_file or self.apim.ca_file), "credential": "emulator", "polling_interval": 0.05,
            },
            "policy": {"named_value": {"name": "databricks-token", "env": DEMO_TOKEN_ENV}},
        }
        for key, value in sections.items():
            if isinstance(value, Mapping) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        return config

    def config_yaml(self, ca_file: str | Path | None = None) -> str:
        return yaml.safe_dump(self.config(ca_file), sort_keys=False)

    def env(self) -> dict[str, str]:
        """Environment variables a separate apimsync process needs to use the sandbox."""
        return {"DATABRICKS_HOST": self.databricks.url, "DATABRICKS_TOKEN": self.databricks.token,
                DEMO_TOKEN_ENV: DEMO_TOKEN}

    def workspace_client(self) -> WorkspaceClient:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        return WorkspaceClient(config=Config(host=self.databricks.url, token=self.databricks.token,
                                             auth_type="pat", retry_timeout_seconds=30))

    def settings(self, **sections: Any) -> Settings:
        from apimsync.config import settings_from_mapping

        return settings_from_mapping(self.config(**sections), origin="sandbox")

    def engine(self, settings: Settings | None = None, *, env: Mapping[str, str] | None = None,
               **kwargs: Any) -> Engine:
        """An Engine for these emulators with real SDK clients (the token comes from ``env``)."""
        from apimsync.engine import Engine

        settings = settings or self.settings()
        clients = {ws.name: self.workspace_client() for ws in settings.workspaces}
        return Engine(settings, workspace_clients=clients, env={**self.env(), **(env or {})}, **kwargs)
