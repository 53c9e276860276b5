"""OData as the emulated ARM reads it: a small ``$filter``."""

from __future__ import annotations

import re
from typing import Any

from apimsync.emulators.apim.common import ArmError


def filter_items(items: list[dict[str, Any]], expression: str | None) -> list[dict[str, Any]]:
    """A small OData $filter: field eq/ne 'v', startswith/endswith/contains(field,'v'), substringof('v',field),
    isCurrent eq true|false, joined with ``and``."""
    if not expression:
        return items
    tests: list[Any] = []
    for clause in re.split(r"\s+and\s+", expression.strip()):
        m = re.fullmatch(r"(\w+)\s+(eq|ne)\s+'([^']*)'", clause) or re.fullmatch(r"(\w+)\s+(eq|ne)\s+(true|false)",
                                                                              clause)
        if m:
            name, op, value = m.groups()
            typed: Any = {"true": True, "false": False}.get(value, value) if value in ("true", "false") else value
            tests.append(lambda it, n=name, o=op, v=typed: (_field(it, n) == v) == (o == "eq"))
            continue
        m = re.fullmatch(r"(startswith|endswith|contains)\((\w+),\s*'([^']*)'\)", clause)
        if m:
            fn, name, value = m.groups()
            tests.append(lambda it, f=fn, n=name, v=value: getattr(str(_field(it, n) or ""),
                                                                   {"contains": "__contains__"}.get(str(f), str(f)))(v))
            continue
        m = re.fullmatch(r"substringof\('([^']*)',\s*(\w+)\)", clause)
        if m:
            value, name = m.groups()
            tests.append(lambda it, n=name, v=value: v in str(_field(it, n) or ""))
            continue
        raise ArmError(400, "ValidationError", f"Invalid $filter expression: {clause}")
    return [it for it in items if all(t(it) for t in tests)]


def _field(item: dict[str, Any], name: str) -> Any:
    # apisByTags items carry the API's fields under "api" (TagResourceContract), the others under "properties"
    return item.get("name") if name == "name" else (item.get("properties") or item.get("api") or {}).get(name)
