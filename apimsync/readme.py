"""The README's generated tables: ``python -m apimsync.readme`` rewrites them from the code they describe (the
endpoint kinds and tasks of :mod:`apimsync.kinds`); a test fails when the README differs.

Each table sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from apimsync.kinds import KINDS, TASKS

README = Path(__file__).resolve().parent.parent / "README.md"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def kinds_table() -> str:
    lines = [_row("kind", "how it lists", "published", "credential", "verify sends"), "| --- " * 5 + "|"]
    lines += [_row(k.name, k.lists, k.published, k.credential, k.verify) for k in KINDS]
    return "\n".join(lines)


def tasks_table() -> str:
    lines = [_row("task", "verify sends", "a request must carry", "OpenAI route", "LLM token policies"),
             "| --- " * 5 + "|"]
    for t in TASKS.values():
        lines.append(_row(f"`{t.name}`", f"`{json.dumps(t.request)}`",
                          f"`{t.body_field}`" + (" (chat messages: any role; content text, parts or null)"
                                                 if t.chat else ""),
                          f"`{t.openai_route}`" if t.openai_route else "—", "yes" if t.llm_policies else "no"))
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {"kinds": kinds_table, "tasks": tasks_table}
_SECTION = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def rendered(text: str) -> str:
    """``text`` with every generated table written afresh."""
    return _SECTION.sub(lambda m: m.group(1) + TABLES[m.group(2)]() + "\n" + m.group(4), text)


def main() -> int:
    text = README.read_text(encoding="utf-8")
    new = rendered(text)
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"{README}: tables rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
