"""Text output of values a workspace controls: control characters are shown escaped, never sent to a terminal."""

from __future__ import annotations

import re

# C0/C1 controls, line separators, and the invisible format characters that reorder or hide text on a terminal:
# bidirectional overrides and isolates (U+202A-202E, U+2066-2069), marks, zero-width characters and the BOM
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def printable(line: str) -> str:
    """One line as it may be printed: a newline or an escape sequence inside a name cannot forge output."""
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], line)
