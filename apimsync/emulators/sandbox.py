"""Both emulators started together, plus the settings and clients that point apimsync at them.

Used by ``apimsync demo`` and ``apimsync emulate``, the tests and the benchmarks.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from apimsync.emulators.apim import MANAGED_IDENTITY_APP_ID, ApimEmulator, Throttle
from apimsync.emulators.databricks import DEFAULT_FIXTURES, DatabricksEmulator
from apimsync.emulators.latency import Latency, lro_only

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

    from apimsync.engine import Engine
    from apimsync.settings import Settings

DEMO_TOKEN_ENV = "APIMSYNC_DEMO_TOKEN"  # the named value's source in the sandbox configuration
DEMO_TOKEN = "dapi-demo-token-for-apim"
# a service principal registered in every emulated workspace (an account-level principal assigned to each), for the
# OAuth policy of route-optimized endpoints
DEMO_SP_ID = "6f0b7c55-apimsync-demo-sp"
DEMO_SP_SECRET_ENV = "APIMSYNC_DEMO_SP_SECRET"
DEMO_SP_SECRET = "dose-demo-sp-secret"


def workspace_name(index: int) -> str:
    """The sandbox's name for its workspace ``index`` (0-based): emulator, emulator-2, emulator-3, ..."""
    return "emulator" if index == 0 else f"emulator-{index + 1}"


def demo_token(index: int) -> tuple[str, str]:
    """(environment variable, PAT) of the token APIM's named value carries for workspace ``index``."""
    if index == 0:
        return DEMO_TOKEN_ENV, DEMO_TOKEN
    return f"{DEMO_TOKEN_ENV}_{index + 1}", f"{DEMO_TOKEN}-{index + 1}"


def token_named_value(index: int = 0) -> str:
    """The named value holding workspace ``index``'s token (the default name template, databricks-token-{workspace})."""
    return f"databricks-token-{workspace_name(index)}"


class Sandbox:
    """N Databricks workspaces and an APIM service on 127.0.0.1, wired for apimsync.

    Each workspace has its own host, its own client token and its own token for APIM's named value (a PAT is valid
    in one workspace only); ``databricks`` is the first.
    """

    def __init__(self, *, fixtures: str | Path | None = DEFAULT_FIXTURES, endpoints: int | None = None,
                 databricks_port: int = 0, apim_port: int = 0, gateway_port: int = 0,
                 state_file: str | Path | None = None, throttle: Throttle | None = None, time_scale: float = 1.0,
                 latency: Latency | None = None, seed: int = 0, workspaces: int = 1, sku: str = "Developer") -> None:
        latency = latency or lro_only(0.05)
        self.workspaces = [
            DatabricksEmulator(fixtures, endpoints=endpoints, port=databricks_port if i == 0 else 0, seed=seed,
                               token="dapi-emulator-token" if i == 0 else f"dapi-emulator-token-{i + 1}",
                               workspace_id=str(1234567890123456 + i), latency=latency, time_scale=time_scale)
            for i in range(workspaces)]
        self.databricks = self.workspaces[0]
        for i, workspace in enumerate(self.workspaces):
            # the token the named value carries is a PAT of this workspace; APIM's managed identity and the demo
            # service principal are registered in it (what a user sets up for managed-identity or OAuth auth)
            workspace.identities.pats.add(demo_token(i)[1])
            workspace.identities.entra_apps.add(MANAGED_IDENTITY_APP_ID)
            workspace.identities.service_principals[DEMO_SP_ID] = DEMO_SP_SECRET
        self.apim = ApimEmulator(port=apim_port, gateway_port=gateway_port, state_file=state_file, throttle=throttle,
                                 time_scale=time_scale, latency=latency, seed=seed, sku=sku)
        self._profiles: Path | None = None

    def start(self) -> Sandbox:
        started: list[DatabricksEmulator] = []
        try:
            for workspace in self.workspaces:
                started.append(workspace.start())
            self.apim.start()
        except BaseException:
            for workspace in started:
                workspace.stop()
            raise
        if len(self.workspaces) > 1:
            # one PAT per workspace: separate processes authenticate through a profile each
            fd, name = tempfile.mkstemp(prefix="apimsync-databrickscfg-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self.databrickscfg())
            self._profiles = Path(name)
        return self

    def stop(self) -> None:
        try:
            self.apim.stop()
        finally:
            for workspace in self.workspaces:
                workspace.stop()
            if self._profiles is not None:
                self._profiles.unlink(missing_ok=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def config(self, ca_file: str | Path | None = None, **sections: Any) -> dict[str, Any]:
        """An apimsync configuration (as a mapping) pointing at the emulators; ``sections`` merge on top."""
        workspaces: list[dict[str, Any]] = []
        for i, workspace in enumerate(self.workspaces):
            entry: dict[str, Any] = {"name": workspace_name(i), "host": workspace.url}
            if len(self.workspaces) > 1:
                entry["profile"] = workspace_name(i)
            if i > 0:
                entry["named_value"] = {"env": demo_token(i)[0]}
            workspaces.append(entry)
        config: dict[str, Any] = {
            "workspaces": workspaces,
            "apim": {
                "subscription_id": self.apim.SUBSCRIPTION, "resource_group": self.apim.RESOURCE_GROUP,
                "service": self.apim.SERVICE, "base_url": self.apim.url,
                "ca_bundle": str(ca_file or self.apim.ca_file), "credential": "emulator",
                # polls twice in an import's time: a fast sandbox answers at once, a realistic one in seconds
                "polling_interval": round(max(0.05, self.apim.latency.api_import / 2) / self.apim.time_scale, 4),
            },
            "policy": {"named_value": {"env": DEMO_TOKEN_ENV},
                       "oauth": {"client_id": {"value": DEMO_SP_ID}, "client_secret": {"env": DEMO_SP_SECRET_ENV}}},
            # the emulated data-plane host of route-optimized endpoints (on Databricks: *.serving.<cloud zone>,
            # allowed by the backend check without configuration; here another loopback port)
            "apis": {"backend_hosts": sorted({urlsplit(w.dedicated_url).netloc for w in self.workspaces})},
        }
        if len(self.workspaces) > 1:  # the same endpoint names in each workspace: the workspace is part of the name
            config["naming"] = {"api_id": "dbx-{workspace}-{endpoint}", "path": "serving/{workspace}/{endpoint}",
                                "display_name": "{endpoint} ({workspace})"}
        for key, value in sections.items():
            if isinstance(value, Mapping) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        return config

    def config_yaml(self, ca_file: str | Path | None = None) -> str:
        return yaml.safe_dump(self.config(ca_file), sort_keys=False)

    def databrickscfg(self) -> str:
        """A ~/.databrickscfg with a profile per workspace (host and client token)."""
        return "".join(f"[{workspace_name(i)}]\nhost = {w.url}\ntoken = {w.token}\n\n"
                       for i, w in enumerate(self.workspaces))

    def env(self) -> dict[str, str]:
        """Environment variables a separate apimsync process needs to use the sandbox (and to call its gateway)."""
        if len(self.workspaces) == 1:
            clients = {"DATABRICKS_HOST": self.databricks.url, "DATABRICKS_TOKEN": self.databricks.token}
        else:
            clients = {"DATABRICKS_CONFIG_FILE": str(self._profiles)}
        return {**clients, **dict(demo_token(i) for i in range(len(self.workspaces))),
                DEMO_SP_SECRET_ENV: DEMO_SP_SECRET, "APIMSYNC_GATEWAY_URL": self.apim.gateway_url,
                "APIMSYNC_SUBSCRIPTION_KEY": self.apim.subscription_key}

    def workspace_client(self, name: str = "emulator") -> WorkspaceClient:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        names = [workspace_name(i) for i in range(len(self.workspaces))]
        workspace = self.workspaces[names.index(name)] if name in names else self.databricks  # a test's own names
        return WorkspaceClient(config=Config(host=workspace.url, token=workspace.token, auth_type="pat",
                                             retry_timeout_seconds=30))

    def settings(self, **sections: Any) -> Settings:
        from apimsync.config import settings_from_mapping

        return settings_from_mapping(self.config(**sections), origin="sandbox")

    def engine(self, settings: Settings | None = None, *, env: Mapping[str, str] | None = None,
               **kwargs: Any) -> Engine:
        """An Engine for these emulators with real SDK clients (the token comes from ``env``)."""
        from apimsync.engine import Engine

        settings = settings or self.settings()
        clients = {ws.name: self.workspace_client(ws.name) for ws in settings.workspaces}
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
