"""Locate the default files shipped with apimsync (transforms/ and policies/).

In a source checkout they are the top-level folders; in an installed wheel they are
bundled under ``apimsync/_bundled/``. A user's own path always wins over a bundled name.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(kind: str) -> Path:
    """The folder holding the shipped ``transforms`` or ``policies``."""
    for candidate in (_PACKAGE / "_bundled" / kind, _PACKAGE.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"apimsync is missing its bundled {kind}/ folder")


def resolve(kind: str, name_or_path: str | Path, suffix: str) -> Path:
    """A path as given if it exists, else the bundled file ``<name><suffix>`` of that kind."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = str(name_or_path)
    if "/" not in name and "\\" not in name:
        shipped = bundled_dir(kind) / (name if name.endswith(suffix) else name + suffix)
        if shipped.exists():
            return shipped
    return path
