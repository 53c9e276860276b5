"""The command group, its options and what every command shares (errors as one line, output, the engine)."""

from __future__ import annotations

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

def output_option(func: F) -> F:
    return click.option("-o", "--output", type=click.Choice(["text", "json"]), default=None,
                        help="Output format on stdout (default: text, or the group's -o).")(func)


def config_option(func: F) -> F:
    return click.option("--config", "config", type=click.Path(dir_okay=False), envvar="APIMSYNC_CONFIG",
                        help="Configuration file (default: ./apimsync.yaml).")(func)


def refresh_option(func: F) -> F:
    return click.option("--refresh", is_flag=True,
                        help="Fetch every spec, even those whose source is unchanged (run it now and then: Databricks "
                             "can change a spec without a new config version).")(func)


def output_format(ctx: click.Context, output: str | None) -> str:
    return output or ctx.find_root().params.get("output") or "text"


def engine_for(ctx: click.Context, config: str | None, overrides: dict[str, Any]) -> Any:
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
    bars = progress_bars()
    engine = Engine(settings, progress=bars)
    if bars is not None:
        bars.bucket_eta = engine.apim.write_eta
    return engine


def progress_bars() -> Bars | None:
    """Progress bars on stderr, only when it is a terminal (never in notebooks, CI, pipes)."""
    if not sys.stderr.isatty() or os.environ.get("CI") or "DATABRICKS_RUNTIME_VERSION" in os.environ:
        return None
    import atexit

    from apimsync.progress import Bars

    bars = Bars()
    atexit.register(bars.close)
    return bars


def emit(obj: Any, fmt: str) -> None:
    click.echo(obj.to_json() if fmt == "json" else str(obj))
