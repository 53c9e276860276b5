"""Entry point for a Databricks ``python_wheel_task``: named parameters → settings → sync.

Databricks passes a job's ``named_parameters`` as ``--key=value`` arguments. Recognised keys: ``config``,
``dry_run``, ``prune``, ``force``, ``force_lock``, ``refresh`` (fetch every spec, even unchanged ones: set it on
one run a day), ``output`` (text|json); any other key is a dotted setting
such as ``apim.service=my-apim`` (lists such as ``workspaces`` belong in the config file).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from apimsync.errors import ApimsyncError, ConfigError

_FLAGS = ("dry_run", "prune", "force", "force_lock", "refresh")


def parse_parameters(argv: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split ``--key=value`` arguments into job options and setting overrides."""
    options: dict[str, str] = {}
    overrides: dict[str, str] = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"job parameter '{arg}': expected --key=value")
        key, value = arg[2:].split("=", 1)
        key = key.replace("-", "_") if "." not in key else key
        (options if key in (*_FLAGS, "config", "output") else overrides)[key] = value
    return options, overrides


def _flag(options: dict[str, str], name: str) -> bool | None:
    if name not in options:
        return None
    value = options[name].strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise ConfigError(f"job parameter '{name}': expected true or false, got '{options[name]}'")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sync; the exit code is the report's (0 ok, 1 some API failed, 2 configuration error)."""
    from apimsync.config import load_settings
    from apimsync.engine import Engine

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        options, overrides = parse_parameters(sys.argv[1:] if argv is None else argv)
        settings = load_settings(options.get("config"), overrides=overrides)
        report = Engine(settings).sync(dry_run=bool(_flag(options, "dry_run")), prune=_flag(options, "prune"),
                                       force=bool(_flag(options, "force")),
                                       force_lock=bool(_flag(options, "force_lock")),
                                       refresh=bool(_flag(options, "refresh")))
    except ApimsyncError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(report.to_json() if options.get("output") == "json" else str(report))
    return report.exit_code


def run() -> None:
    """The wheel's ``apimsync-job`` entry point: exits with the sync's code so the task fails when it should."""
    sys.exit(main())


if __name__ == "__main__":
    run()
