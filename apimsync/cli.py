"""The ``apimsync`` command line (click). SDKs are imported inside commands so ``--help`` is fast."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from apimsync.__about__ import __version__

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
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "APIMSYNC"})
@click.version_option(__version__, prog_name="apimsync")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
              show_default=True, help="Log level for messages on stderr.")
@click.option("--debug", is_flag=True, help="Debug logging and full tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, log_level: str, debug: bool) -> None:
    """Publish Databricks Model Serving endpoints into Azure API Management.

    apimsync fetches each serving endpoint's OpenAPI document, transforms it into a spec APIM
    imports cleanly, and creates or updates one APIM API per endpoint with an inbound policy
    that authenticates APIM to Databricks: as a plan first, then an apply.
    """
    logging.basicConfig(level=logging.DEBUG if debug else getattr(logging, log_level.upper()),
                        stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


# -- commands are added below --------------------------------------------------------------------
