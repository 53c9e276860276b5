"""The README's generated tables: ``python -m apimsync.readme`` rewrites them from the code they describe (the
endpoint kinds and tasks of :mod:`apimsync.kinds`, the settings of :mod:`apimsync.settings`); a test fails when the
README differs.

Each table sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_type_hints

from apimsync.binding import INTERNAL, dataclass_of, known_keys
from apimsync.kinds import KINDS, TASKS
from apimsync.settings import Settings

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


def settings_table() -> str:
    """Every setting: its key, default, environment variable and doc; a section used twice is described once."""
    env = set(known_keys(Settings, ""))
    lines = [_row("key", "default", "environment", "meaning"), "| --- " * 4 + "|"]

    def walk(cls: type, prefix: str, seen: dict[type, str]) -> None:
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in INTERNAL:
                continue
            inner = dataclass_of(hints[f.name])
            key = prefix + f.name + ("[]" if inner and getattr(hints[f.name], "__origin__", None) is tuple else "")
            doc = str(f.metadata.get("doc", ""))
            if f.metadata.get("bounds"):
                low, high = f.metadata["bounds"]
                doc += f" ({low:,} to {high:,})" if high is not None else f" (at least {low:,})"
            if f.metadata.get("choices"):
                doc += " (" + ", ".join(f"`{c}`" for c in f.metadata["choices"]) + ")"
            if inner is not None and inner in seen:
                doc += f"; its keys are those of `{seen[inner]}`"
            settable = key in env and "Mapping" not in str(hints[f.name])  # a mapping is set in the file only
            name = f"`APIMSYNC_{key.replace('.', '_').upper()}`" if settable else ""
            lines.append(_row(f"`{key}`", _default(f), name, doc))
            if inner is not None and inner not in seen:
                seen[inner] = key
                walk(inner, key + ".", seen)

    walk(Settings, "", {})
    return "\n".join(lines)


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        return "required"
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
    if dataclasses.is_dataclass(value):
        return ""
    if value is None:
        return "none"
    if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
        return "one, named `default`"
    if isinstance(value, tuple):
        return f"`{json.dumps(list(value))}`"
    if isinstance(value, bool) or hasattr(value, "items"):
        return f"`{json.dumps(dict(value) if hasattr(value, 'items') else value)}`"
    return f"`{value}`"


TABLES: dict[str, Callable[[], str]] = {"kinds": kinds_table, "tasks": tasks_table, "settings": settings_table}
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
