"""``apimsync plan``, ``sync``, ``import`` and ``verify``: the commands that read Databricks and APIM."""

from __future__ import annotations

import json
import sys

import click

from apimsync.cli.base import (
    config_option,
    emit,
    engine_for,
    handle_errors,
    main,
    output_format,
    output_option,
    refresh_option,
)


@main.command()
@config_option
@output_option
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Also write the plan as JSON to this file.")
@click.option("--prune/--no-prune", default=None, help="Plan deletes of owned APIs whose endpoint is gone.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 3 when the plan has changes (0: none, 1: error).")
@refresh_option
@click.pass_context
@handle_errors
def plan(ctx: click.Context, config: str | None, output: str | None, out: str | None, prune: bool | None,
         detailed_exitcode: bool, refresh: bool) -> None:
    """Show what a sync would change in APIM, and why. Writes nothing."""
    result = engine_for(ctx, config, {}).plan(prune=prune, refresh=refresh)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(result.to_json())
    emit(result, output_format(ctx, output))
    if result.failures or result.withheld:
        sys.exit(1)
    if detailed_exitcode and result.has_changes:
        sys.exit(3)


@main.command()
@config_option
@output_option
@click.option("--prune/--no-prune", default=None, help="Delete owned APIs whose endpoint is gone (prune.enabled).")
@click.option("--dry-run", is_flag=True, help="Plan only; write nothing.")
@click.option("--force", is_flag=True, help="Allow deleting more than prune.max_delete_fraction of owned APIs.")
@click.option("--force-lock", is_flag=True, help="Break another run's sync lock (use when it is stale).")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, exists=True),
              help="Apply only the plan reviewed in this file (written by plan --out): plan again and refuse, "
                   "writing nothing, when the result differs.")
@refresh_option
@click.pass_context
@handle_errors
def sync(ctx: click.Context, config: str | None, output: str | None, prune: bool | None, dry_run: bool,
         force: bool, force_lock: bool, plan_file: str | None, refresh: bool) -> None:
    """Make APIM match Databricks: plan, then apply.

    Exit codes: 0 everything synced, 1 some endpoint or API failed (the others were synced) or a reviewed
    plan (--plan) no longer matches, 2 usage or configuration error.
    """
    reviewed = _reviewed_checksum(plan_file) if plan_file else None
    report = engine_for(ctx, config, {}).sync(dry_run=dry_run, prune=prune, force=force, force_lock=force_lock,
                                           reviewed=reviewed, refresh=refresh)
    emit(report, output_format(ctx, output))
    sys.exit(report.exit_code)


def _reviewed_checksum(path: str) -> str:
    """The checksum of a reviewed plan file, recomputed over its content: a file edited after the review (a change
    removed, the checksum kept) is refused here, before anything is read or written."""
    from apimsync.changes import checksum_of
    from apimsync.errors import ConfigError
    from apimsync.files import read_text

    try:
        data = json.loads(read_text(path, ConfigError))
    except RecursionError:
        raise ConfigError(f"{path}: not a plan written by apimsync plan --out (nested too deeply)") from None
    except ValueError:
        data = None
    checksum = data.get("checksum") if isinstance(data, dict) else None
    if not isinstance(checksum, str) or len(checksum) != 64:
        raise ConfigError(f"{path}: not a plan written by apimsync plan --out (no checksum)")
    try:
        recomputed = checksum_of(data)
    except (RecursionError, ValueError, TypeError):
        recomputed = None
    if recomputed != checksum:
        raise ConfigError(f"{path}: the plan's content does not match its checksum (edited after it was written); "
                          "nothing was written: run apimsync plan --out again and review the new plan")
    return checksum


@main.command("import")
@click.argument("endpoint")
@config_option
@output_option
@click.option("--force-lock", is_flag=True, help="Break another run's sync lock (use when it is stale).")
@click.pass_context
@handle_errors
def import_(ctx: click.Context, endpoint: str, config: str | None, output: str | None, force_lock: bool) -> None:
    """Publish one endpoint now (create or update its API). Never deletes anything."""
    report = engine_for(ctx, config, {}).sync(only=endpoint, force_lock=force_lock)
    emit(report, output_format(ctx, output))
    sys.exit(report.exit_code)


@main.command()
@click.argument("endpoints", nargs=-1)
@config_option
@output_option
@click.option("--gateway-url", envvar="APIMSYNC_GATEWAY_URL",
              help="Gateway to call (default: the service's gatewayUrl, read through ARM).")
@click.option("--subscription-key", envvar="APIMSYNC_SUBSCRIPTION_KEY",
              help="Subscription key (default: the built-in all-access subscription's primary key, read through "
                   "ARM and never printed).")
@click.pass_context
@handle_errors
def verify(ctx: click.Context, endpoints: tuple[str, ...], config: str | None, output: str | None,
           gateway_url: str | None, subscription_key: str | None) -> None:
    """Call every published API once through the APIM gateway and say whether the model answered.

    Each call is a real inference request (it costs what a call to the endpoint costs). Per API: HTTP status,
    latency and a diagnosis: credential (401/403 from Databricks: named value, policy, token scope), path or
    backend (404), payload (400), backend (5xx), subscription key (401 from APIM). Exit 0 when every API
    answered 2xx, 1 otherwise. ENDPOINT... limits the calls to those endpoints.
    """
    report = engine_for(ctx, config, {}).verify(endpoints, gateway_url=gateway_url, subscription_key=subscription_key)
    emit(report, output_format(ctx, output))
    sys.exit(report.exit_code)


