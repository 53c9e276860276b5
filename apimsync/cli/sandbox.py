"""``apimsync emulate`` and ``apimsync demo``: the emulators (the ``emulate`` extra), as a sandbox or a demo."""

from __future__ import annotations

import json
import sys

import click

from apimsync.cli.base import (
    handle_errors,
    main,
    output_format,
    output_option,
    progress_bars,
)

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
@output_option
@click.pass_context
@handle_errors
def demo(ctx: click.Context, output: str | None) -> None:
    """Sync the shipped demo endpoints into a local APIM emulator, call a model through its gateway, verify every
    API, and sync again: the second run changes nothing."""
    _need_emulators()
    from apimsync.emulators.sandbox import Sandbox

    fmt = output_format(ctx, output)
    with Sandbox() as box:
        engine = box.engine(progress=progress_bars())
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
