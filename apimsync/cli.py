"""The ``apimsync`` command line (click). SDKs are imported inside commands so ``--help`` is fast."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import click

from apimsync.__about__ import __version__

if TYPE_CHECKING:
    from apimsync.progress import Bars

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn an ApimsyncError into one line on stderr and its exit code; tracebacks only with --debug."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from apimsync.errors import ApimsyncError

        try:
            return func(*args, **kwargs)
        except ApimsyncError as exc:
            ctx = click.get_current_context(silent=True)
            if ctx is not None and ctx.find_root().params.get("debug"):
                raise
            from apimsync.text import printable

            click.echo(f"Error: {printable(str(exc))}", err=True)  # may quote a workspace's or the environment's text
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "APIMSYNC"})
@click.version_option(__version__, prog_name="apimsync")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True, help="Log level for messages on stderr.")
@click.option("--debug", is_flag=True, help="Debug logging and full tracebacks on errors.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format on stdout for plan, sync, import, lint and demo.")
@click.option("-p", "--profile", help="Databricks configuration profile (~/.databrickscfg) of the workspace.")
@click.option("--env", "environment", envvar="APIMSYNC_ENV",
              help="Apply this entry of the configuration's environments: (its APIM service, selection, naming, "
                   "policy variables, credentials).")
@click.pass_context
def main(ctx: click.Context, log_level: str, debug: bool, output: str, profile: str | None,
         environment: str | None) -> None:
    """Publish Databricks Model Serving endpoints into Azure API Management.

    apimsync fetches each serving endpoint's OpenAPI document, transforms it into a spec APIM
    imports cleanly, and creates or updates one APIM API per endpoint with an inbound policy
    that authenticates APIM to Databricks: as a plan first, then an apply.
    """
    logging.basicConfig(level=logging.DEBUG if debug else getattr(logging, log_level.upper()),
                        stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if not debug:  # the SDKs' own chatter (host-metadata probes, credential chains, retries): see --debug
        for noisy in ("databricks.sdk", "azure", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


# -- sync, plan, import --------------------------------------------------------------------------

def _output_option(func: F) -> F:
    return click.option("-o", "--output", type=click.Choice(["text", "json"]), default=None,
                        help="Output format on stdout (default: text, or the group's -o).")(func)


def _config_option(func: F) -> F:
    return click.option("--config", "config", type=click.Path(dir_okay=False), envvar="APIMSYNC_CONFIG",
                        help="Configuration file (default: ./apimsync.yaml).")(func)


def _refresh_option(func: F) -> F:
    return click.option("--refresh", is_flag=True,
                        help="Fetch every spec, even those whose source is unchanged (run it now and then: Databricks "
                             "can change a spec without a new config version).")(func)


def _output_format(ctx: click.Context, output: str | None) -> str:
    return output or ctx.find_root().params.get("output") or "text"


def _engine(ctx: click.Context, config: str | None, overrides: dict[str, Any]) -> Any:
    from apimsync.config import load_settings
    from apimsync.engine import Engine

    profile = ctx.find_root().params.get("profile")
    settings = load_settings(config, overrides=overrides, environment=ctx.find_root().params.get("environment"))
    if profile:
        if len(settings.workspaces) > 1:
            from apimsync.errors import ConfigError

            raise ConfigError("--profile applies to a single workspace; the configuration lists several")
        from dataclasses import replace

        settings = replace(settings, workspaces=(replace(settings.workspaces[0], profile=profile),))
    bars = _progress_bars()
    engine = Engine(settings, progress=bars)
    if bars is not None:
        bars.bucket_eta = engine.apim.write_eta
    return engine


def _progress_bars() -> Bars | None:
    """Progress bars on stderr, only when it is a terminal (never in notebooks, CI, pipes)."""
    if not sys.stderr.isatty() or os.environ.get("CI") or "DATABRICKS_RUNTIME_VERSION" in os.environ:
        return None
    import atexit

    from apimsync.progress import Bars

    bars = Bars()
    atexit.register(bars.close)
    return bars


def _emit(obj: Any, fmt: str) -> None:
    click.echo(obj.to_json() if fmt == "json" else str(obj))


# -- transform, lint --------------------------------------------------------------------------------

def _read_spec(spec: str) -> dict[str, Any]:
    from apimsync.errors import SpecError
    from apimsync.files import MAX_SPEC_BYTES, read_bytes
    from apimsync.spec import load_spec

    if spec == "-":
        return load_spec(sys.stdin.buffer.read(MAX_SPEC_BYTES + 1), origin="<stdin>")
    return load_spec(read_bytes(spec, SpecError, limit=MAX_SPEC_BYTES), origin=spec)


def _transformed(spec: dict[str, Any], pipeline: str | None, server_url: str | None) -> dict[str, Any]:
    from apimsync.transform import TransformContext, load_pipeline

    servers = spec.get("servers") or [{}]
    url = server_url or (servers[0].get("url") if isinstance(servers[0], dict) else None) or "https://localhost"
    title = str((spec.get("info") or {}).get("title") or "endpoint")
    ctx = TransformContext(endpoint=title, server_url=url, variables={"workspace": "local", "api_id": title})
    return load_pipeline(pipeline).run(spec, ctx)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@click.option("--pipeline", help="Pipeline file (default: the shipped transforms/databricks-serving.yaml).")
@click.option("--server-url", help="URL for the spec's single server (default: the spec's first server).")
@handle_errors
def transform(spec: str, out: str | None, pipeline: str | None, server_url: str | None) -> None:
    """Transform a Databricks serving spec (a file, or - for stdin) into one APIM imports.

    Exit 1, with the linter's findings on stderr, when the result would still be refused by APIM (the spec is
    written all the same, to look at); 2 for an unreadable spec or pipeline.
    """
    from apimsync.transform import lint

    document = _transformed(_read_spec(spec), pipeline, server_url)
    result = json.dumps(document, indent=2) + "\n"
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(result)
    else:
        click.echo(result, nl=False)
    errors = [f for f in lint(document) if f.severity == "error"]
    for finding in errors:
        click.echo(str(finding), err=True)
    if errors:
        click.echo(f"{len(errors)} problem(s) APIM would refuse the import for: fix them with a pipeline step "
                   "(see apimsync lint)", err=True)
        sys.exit(1)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--pipeline", help="Pipeline to apply first (default: the shipped one; 'none' lints SPEC as is).")
@_output_option
@click.pass_context
@handle_errors
def lint(ctx: click.Context, spec: str, pipeline: str | None, output: str | None) -> None:
    """Check a spec against APIM's import rules (after the pipeline). Exit 1 when there are errors."""
    from apimsync.transform import lint as run_lint

    findings = run_lint(_transformed(_read_spec(spec), pipeline, None))
    errors = [f for f in findings if f.severity == "error"]
    if _output_format(ctx, output) == "json":
        click.echo(json.dumps({"errors": len(errors), "findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        for finding in findings:
            click.echo(str(finding))
        click.echo(f"{len(errors)} error(s), {len(findings) - len(errors)} warning(s)")
    sys.exit(1 if errors else 0)


@main.command()
@_config_option
@_output_option
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Also write the plan as JSON to this file.")
@click.option("--prune/--no-prune", default=None, help="Plan deletes of owned APIs whose endpoint is gone.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 3 when the plan has changes (0: none, 1: error).")
@_refresh_option
@click.pass_context
@handle_errors
def plan(ctx: click.Context, config: str | None, output: str | None, out: str | None, prune: bool | None,
         detailed_exitcode: bool, refresh: bool) -> None:
    """Show what a sync would change in APIM, and why. Writes nothing."""
    result = _engine(ctx, config, {}).plan(prune=prune, refresh=refresh)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(result.to_json())
    _emit(result, _output_format(ctx, output))
    if result.failures or result.withheld:
        sys.exit(1)
    if detailed_exitcode and result.has_changes:
        sys.exit(3)


@main.command()
@_config_option
@_output_option
@click.option("--prune/--no-prune", default=None, help="Delete owned APIs whose endpoint is gone (prune.enabled).")
@click.option("--dry-run", is_flag=True, help="Plan only; write nothing.")
@click.option("--force", is_flag=True, help="Allow deleting more than prune.max_delete_fraction of owned APIs.")
@click.option("--force-lock", is_flag=True, help="Break another run's sync lock (use when it is stale).")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, exists=True),
              help="Apply only the plan reviewed in this file (written by plan --out): plan again and refuse, "
                   "writing nothing, when the result differs.")
@_refresh_option
@click.pass_context
@handle_errors
def sync(ctx: click.Context, config: str | None, output: str | None, prune: bool | None, dry_run: bool,
         force: bool, force_lock: bool, plan_file: str | None, refresh: bool) -> None:
    """Make APIM match Databricks: plan, then apply.

    Exit codes: 0 everything synced, 1 some endpoint or API failed (the others were synced) or a reviewed
    plan (--plan) no longer matches, 2 usage or configuration error.
    """
    reviewed = _reviewed_checksum(plan_file) if plan_file else None
    report = _engine(ctx, config, {}).sync(dry_run=dry_run, prune=prune, force=force, force_lock=force_lock,
                                           reviewed=reviewed, refresh=refresh)
    _emit(report, _output_format(ctx, output))
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
@_config_option
@_output_option
@click.option("--force-lock", is_flag=True, help="Break another run's sync lock (use when it is stale).")
@click.pass_context
@handle_errors
def import_(ctx: click.Context, endpoint: str, config: str | None, output: str | None, force_lock: bool) -> None:
    """Publish one endpoint now (create or update its API). Never deletes anything."""
    report = _engine(ctx, config, {}).sync(only=endpoint, force_lock=force_lock)
    _emit(report, _output_format(ctx, output))
    sys.exit(report.exit_code)


@main.command()
@click.argument("endpoints", nargs=-1)
@_config_option
@_output_option
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
    report = _engine(ctx, config, {}).verify(endpoints, gateway_url=gateway_url, subscription_key=subscription_key)
    _emit(report, _output_format(ctx, output))
    sys.exit(report.exit_code)


# -- emulate, demo --------------------------------------------------------------------------------

def _need_emulators() -> None:
    """The emulators' own dependencies are the ``emulate`` extra: without them, the one line that installs it."""
    import importlib.util

    from apimsync.errors import ConfigError

    missing = [name for name in ("trustme", "jsonschema") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"the emulators need {', '.join(missing)}: pip install \"apimsync[emulate]\"")


@main.command()
@click.option("--fixtures", type=click.Path(file_okay=False, exists=True),
              help="Fixture folder: endpoints.json and openapi/<name>.json (default: the shipped set).")
@click.option("--endpoints", type=click.IntRange(min=0), default=None,
              help="Serve N synthetic endpoints (on top of --fixtures when that is given).")
@click.option("--databricks-port", type=click.IntRange(0, 65535), default=0, help="Port of the Databricks emulator.")
@click.option("--apim-port", type=click.IntRange(0, 65535), default=0, help="Port of the APIM emulator (ARM).")
@click.option("--gateway-port", type=click.IntRange(0, 65535), default=0, help="Port of the emulated APIM gateway.")
@click.option("--ca-out", type=click.Path(dir_okay=False), help="Write the APIM emulator's CA certificate (PEM) here.")
@click.option("--state", type=click.Path(dir_okay=False), help="Keep the emulated APIM's state in this JSON file.")
@click.option("--latency-model", type=click.Choice(["none", "fast", "realistic"]), default="none", show_default=True,
              help="How long calls take: 'realistic' is Azure's and Databricks' timing (sources in "
                   "apimsync/emulators/latency.py), scaled by --time-scale.")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, help="Latency added to every APIM call.")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.0, help="Share of APIM calls answered 500/503.")
@click.option("--time-scale", type=click.FloatRange(min=0.001), default=1.0,
              help="Emulated time runs X times faster (ARM throttling refill, long-running operations).")
@click.option("--throttle/--no-throttle", default=False, help="Throttle like ARM (token buckets per subscription).")
@click.option("--sku", type=click.Choice(["Consumption", "Developer", "Basic", "Standard", "Premium"]),
              default="Developer", show_default=True,
              help="The emulated APIM tier (Consumption has no llm-token-limit and no built-in cache).")
@click.option("--workspaces", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Emulate N workspaces, each with its own host, client token and token for APIM (the same "
                   "endpoints in each); clients authenticate through a profile per workspace.")
@handle_errors
def emulate(fixtures: str | None, endpoints: int | None, databricks_port: int, apim_port: int, gateway_port: int,
            ca_out: str | None, state: str | None, latency_model: str, latency_ms: float, fault_rate: float,
            time_scale: float, throttle: bool, workspaces: int, sku: str) -> None:
    """Run a local Databricks workspace and APIM service until interrupted (an offline sandbox).

    Prints the URLs (workspace, ARM, gateway), a ready configuration and the environment for pointing
    apimsync and curl at them.
    """
    import signal
    import threading

    _need_emulators()
    from apimsync.emulators.apim import Throttle
    from apimsync.emulators.databricks import DEFAULT_FIXTURES
    from apimsync.emulators.latency import MODELS
    from apimsync.emulators.sandbox import Sandbox, workspace_name
    from apimsync.errors import ConfigError

    chosen = fixtures or (None if endpoints else DEFAULT_FIXTURES)
    if state:
        from pathlib import Path

        try:
            from apimsync.emulators.apim.state import State

            if Path(state).exists():
                State.load(Path(state))
        except ValueError as exc:
            raise ConfigError(f"--state {exc}") from None
    box = Sandbox(fixtures=chosen, endpoints=endpoints, databricks_port=databricks_port, apim_port=apim_port,
                  gateway_port=gateway_port, state_file=state, throttle=Throttle(enabled=throttle),
                  time_scale=time_scale, latency=MODELS[latency_model], workspaces=workspaces, sku=sku)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with box:
        box.apim.faults.configure(latency_ms=latency_ms, fault_rate=fault_rate)
        ca = box.apim.ca_file
        if ca_out:
            from pathlib import Path

            Path(ca_out).write_bytes(Path(ca).read_bytes())
            ca = Path(ca_out).resolve()
        for i, workspace in enumerate(box.workspaces):
            click.echo(f"Databricks emulator: {workspace.url}" + (f"  (workspace {workspace_name(i)})"
                                                                   if workspaces > 1 else ""))
        click.echo(f"APIM emulator:       {box.apim.url}  (CA: {ca})")
        click.echo(f"APIM gateway:        {box.apim.gateway_url}")
        click.echo("\n# apimsync.yaml for the sandbox:\n" + box.config_yaml(ca))
        click.echo("# environment:")
        for key, value in box.env().items():
            click.echo(f"export {key}={value}")
        if workspaces > 1:
            click.echo(f"\n# profiles in $DATABRICKS_CONFIG_FILE:\n{box.databrickscfg()}", nl=False)
        click.echo("\nPress Ctrl+C to stop.", err=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    click.echo("Emulators stopped.", err=True)


@main.command()
@_output_option
@click.pass_context
@handle_errors
def demo(ctx: click.Context, output: str | None) -> None:
    """Sync the shipped demo endpoints into a local APIM emulator, call a model through its gateway, verify every
    API, and sync again: the second run changes nothing."""
    _need_emulators()
    from apimsync.emulators.sandbox import Sandbox

    fmt = _output_format(ctx, output)
    with Sandbox() as box:
        engine = box.engine(progress=_progress_bars())
        first = engine.sync()
        call = box.sample_call()
        checked = box.engine().verify()
        second = box.engine().sync()
        if fmt == "json":
            click.echo(json.dumps({"first": first.to_dict(), "call": call, "verify": checked.to_dict(),
                                   "second": second.to_dict()}, indent=2))
        else:
            click.echo("== First sync: Databricks endpoints -> APIM\n")
            click.echo(str(first))
            click.echo("\n== A call through the APIM gateway, as a client makes it\n")
            click.echo(f"$ {call['curl']}\n{call['status']} {call['body']}")
            click.echo("\n== apimsync verify: one real request per API, through the gateway to the model\n")
            click.echo(str(checked))
            click.echo("\n== Second sync: nothing changed in Databricks\n")
            click.echo(str(second.plan))
            click.echo("\n" + second.summary)
    sys.exit(max(first.exit_code, second.exit_code, checked.exit_code))
