"""Reading apimsync's own input files: regular files only, bounded in size, UTF-8, YAML without aliases.

A configuration, pipeline, overlay or policy file that names ``/dev/zero`` or a FIFO is refused before it is
opened, and a YAML anchor/alias pair (the "billion laughs" shape) is refused before it can expand.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from apimsync.errors import ApimsyncError

MAX_FILE_BYTES = 4 * 1024 * 1024  # configuration, pipeline, overlay and policy files
MAX_SPEC_BYTES = 32 * 1024 * 1024  # an OpenAPI document, before any parsing (APIM's own limit is 4 MB compact)


def read_bytes(path: str | Path, error: type[ApimsyncError], *, limit: int = MAX_FILE_BYTES) -> bytes:
    """The file's bytes; ``error`` names the file when it is missing, not a regular file, or over ``limit``."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise error(f"{path}: not a regular file")
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > limit:
        raise error(f"{path}: larger than {limit // (1024 * 1024)} MB; refused before reading it whole")
    return data


def read_text(path: str | Path, error: type[ApimsyncError], *, limit: int = MAX_FILE_BYTES) -> str:
    data = read_bytes(path, error, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases: apimsync's files never need them, and they can expand without bound."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in apimsync files",
                                              event.start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """YAML (or JSON) text → Python values, safely and without aliases; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader subclass
