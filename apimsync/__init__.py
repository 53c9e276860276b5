"""apimsync: publish Databricks Model Serving endpoints into Azure API Management.

From a notebook or any Python code::

    import apimsync
    plan = apimsync.plan(config="apimsync.yaml")      # renders as a table in Databricks and Jupyter
    report = apimsync.sync(config="apimsync.yaml")    # plan, then apply; report.ok, report.exit_code
    checks = apimsync.verify(config="apimsync.yaml")  # one real call per API through the APIM gateway

Settings can also be given as keywords, nested like the YAML file (``apim={"service": "my-apim"}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apimsync.__about__ import __version__
from apimsync.errors import (
    ApimsyncError,
    ConfigError,
    LockError,
    PipelineError,
    PolicyError,
    SourceError,
    SpecError,
    TargetError,
    UnsafePlanError,
)

if TYPE_CHECKING:
    from apimsync.changes import Plan
    from apimsync.checks import VerifyReport
    from apimsync.engine import Engine
    from apimsync.report import Report

__all__ = [
    "ApimsyncError", "ConfigError", "LockError", "PipelineError", "PolicyError", "SourceError", "SpecError",
    "TargetError", "UnsafePlanError", "__version__", "plan", "sync", "verify",
]


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, Mapping) and prefix not in ("select.tags", "policy.variables"):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value
    return out


def _engine(config: str | Path | None, settings: dict[str, Any]) -> Engine:
    """An Engine for a configuration file and/or keyword settings (keywords win)."""
    from apimsync.config import load_settings
    from apimsync.engine import Engine

    return Engine(load_settings(config, overrides=_flatten("", settings, {})))


def plan(config: str | Path | None = None, *, prune: bool | None = None, force: bool = False,
         **settings: Any) -> Plan:
    """What a sync would change, and why. Writes nothing."""
    return _engine(config, settings).plan(prune=prune, force=force)


def sync(config: str | Path | None = None, *, dry_run: bool = False, prune: bool | None = None,
         force: bool = False, force_lock: bool = False, refresh: bool = False, **settings: Any) -> Report:
    """Make APIM match Databricks: plan, then apply. Returns the report (``report.ok``, ``report.exit_code``).
    ``refresh`` fetches every spec, even of endpoints unchanged since the last sync."""
    return _engine(config, settings).sync(dry_run=dry_run, prune=prune, force=force, force_lock=force_lock,
                                          refresh=refresh)


def verify(config: str | Path | None = None, *endpoints: str, gateway_url: str | None = None,
           subscription_key: str | None = None, **settings: Any) -> VerifyReport:
    """Call every published API once through the APIM gateway (real inference calls); renders as a table.

    ``report.ok`` is true when every API answered 2xx; each check has a status, latency and diagnosis.
    """
    return _engine(config, settings).verify(endpoints, gateway_url=gateway_url, subscription_key=subscription_key)
