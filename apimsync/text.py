"""Text output of values a workspace controls: control characters are shown escaped, never sent to a terminal."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(line: str) -> str:
    """One line as it may be printed: a newline or an escape sequence inside a name cannot forge output."""
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], line)
