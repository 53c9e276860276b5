"""Both emulators started together, plus the settings and clients that point apimsync at them.

Used by ``apimsync demo`` and ``apimsync emulate``, the tests and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from apimsync.emulators.apim import MANAGED_IDENTITY_APP_ID, ApimEmulator, Throttle
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
                 databricks_port: int = 0, apim_port: int = 0, gateway_port: int = 0,
                 state_file: str | Path | None = None, throttle: Throttle | None = None, time_scale: float = 1.0,
                 lro_seconds: float = 0.05, seed: int = 0) -> None:
        self.databricks = DatabricksEmulator(fixtures, endpoints=endpoints, port=databricks_port, seed=seed)
        # the token the named value carries is a PAT of this workspace; APIM's managed identity is registered
        # in it as a service principal (what a user sets up for managed-identity-auth)
        self.databricks.identities.pats.add(DEMO_TOKEN)
        self.databricks.identities.entra_apps.add(MANAGED_IDENTITY_APP_ID)
        self.apim = ApimEmulator(port=apim_port, gateway_port=gateway_port, state_file=state_file, throttle=throttle,
                                 time_scale=time_scale, lro_seconds=lro_seconds, seed=seed)

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
        """Environment variables a separate apimsync process needs to use the sandbox (and to call its gateway)."""
        return {"DATABRICKS_HOST": self.databricks.url, "DATABRICKS_TOKEN": self.databricks.token,
                DEMO_TOKEN_ENV: DEMO_TOKEN, "APIMSYNC_GATEWAY_URL": self.apim.gateway_url,
                "APIMSYNC_SUBSCRIPTION_KEY": self.apim.subscription_key}

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

    def sample_call(self, endpoint: str = "churn-classifier") -> dict[str, Any]:
        """Call one published API through the gateway as a client would (the request verify makes); returns the
        curl line and the answer."""
        import json
        import shlex

        import requests

        prepared = self.engine().verify_targets([endpoint])[0].request(self.apim.gateway_url)
        assert prepared is not None, f"{endpoint} is not published"
        url, body = prepared
        curl = (f"curl -s --cacert {shlex.quote(str(self.apim.ca_file))} "
                f"-H \"Ocp-Apim-Subscription-Key: $APIMSYNC_SUBSCRIPTION_KEY\" -H 'Content-Type: application/json' "
                f"-d {shlex.quote(json.dumps(body))} {url}")
        answer = requests.post(url, json=body, headers={"Ocp-Apim-Subscription-Key": self.apim.subscription_key},
                               verify=str(self.apim.ca_file), timeout=30)
        return {"curl": curl, "url": url, "status": answer.status_code, "body": answer.text}
