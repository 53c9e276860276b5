"""Binding a mapping (parsed YAML, environment, flags) to frozen dataclasses: types checked and coerced from the
dataclasses' hints, unknown keys refused with a suggestion, every problem one ``ConfigError`` line naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from collections.abc import Callable, Mapping
from typing import Any, get_type_hints

from apimsync.errors import ConfigError

INTERNAL = ("origin", "environment")  # fields the loader sets, never a file or an environment variable


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, factory: Callable[[], Any] | None = None,
            bounds: tuple[float, float | None] | None = None, choices: tuple[str, ...] | None = None) -> Any:
    """A settings field that describes itself: its default (or ``factory``), its one-line ``doc`` (the README's
    configuration table), and the ``bounds`` (inclusive; None: open above) or ``choices`` :func:`build` holds
    its value to."""
    metadata = {"doc": doc, "bounds": bounds, "choices": choices}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def frozen_map(value: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return types.MappingProxyType(dict(value or {}))


def known_keys(cls: type, prefix: str) -> list[str]:
    keys: list[str] = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in INTERNAL:
            continue
        hint = hints[f.name]
        inner = dataclass_of(hint)
        if inner is not None and getattr(hint, "__origin__", None) is not tuple:  # lists are file-only
            keys += known_keys(inner, f"{prefix}{f.name}.")
        elif inner is None:
            keys.append(prefix + f.name)
    return keys


def hint_of(cls: type, dotted: str) -> Any:
    """The type hint of a dotted setting (``prune.enabled`` → bool)."""
    head, _, rest = dotted.partition(".")
    hint = get_type_hints(cls)[head]
    return hint_of(dataclass_of(hint) or cls, rest) if rest else hint


ENV_BOOLEANS = {"yes": "true", "on": "true", "no": "false", "off": "false"}  # what environment variables also say


def dataclass_of(hint: Any) -> type | None:
    """The dataclass in ``X``, ``X | None`` or ``tuple[X, ...]``."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    args = getattr(hint, "__args__", ())
    if args and isinstance(args[0], type) and dataclasses.is_dataclass(args[0]) and (
            getattr(hint, "__origin__", None) is tuple or type(None) in args):
        return args[0]
    return None


def get_key(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def set_key(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def build(cls: type, raw: Any, origin: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "(top level)"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin}: {where}: expected a mapping, got {describe(raw)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), [k for k in fields if k not in INTERNAL], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{origin}: unknown key '{prefix}{key}'{hint}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = prefix + name
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if name not in raw or (raw[name] is None and required):
            if required:
                raise ConfigError(f"{origin}: {key}: required")
            continue
        values[name] = _within(f, coerce(hints[name], raw[name], origin, key), origin, key)
    return cls(**values)


def _within(f: dataclasses.Field[Any], value: Any, origin: str, key: str) -> Any:
    """``value``, or a ConfigError when it leaves the field's bounds or choices."""
    bounds, choices = f.metadata.get("bounds"), f.metadata.get("choices")
    if bounds is not None and value is not None:
        low, high = bounds
        if value < low or (high is not None and value > high):
            expected = f"{low:,} to {high:,}" if high is not None else f"at least {low:,}"
            raise ConfigError(f"{origin}: {key}: expected {expected}, got {value}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{origin}: {key}: expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def coerce(hint: Any, value: Any, origin: str, key: str) -> Any:
    if value is None and "None" in str(hint):
        return None
    options = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    if type(None) in getattr(hint, "__args__", ()) and len(options) == 1:
        hint = options[0]  # X | None with a value: an X
    nested = dataclass_of(hint)
    if nested is not None and getattr(hint, "__origin__", None) is tuple:
        if isinstance(value, Mapping):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{origin}: {key}: expected a non-empty list, got {describe(value)}")
        return tuple(build(nested, item, origin, f"{key}[{i}].") for i, item in enumerate(value))
    if nested is not None:
        return build(nested, value, origin, key + ".")
    text = str(hint)
    if value is None and "None" in text:
        return None
    if "Mapping" in text:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{origin}: {key}: expected a mapping, got {describe(value)}")
        return frozen_map({str(k): str(v) for k, v in value.items()})
    if "tuple" in text:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
            raise ConfigError(f"{origin}: {key}: expected a list of strings, got {describe(value)}")
        return tuple(str(v) for v in value)
    if hint is bool or text == "bool":
        if isinstance(value, bool):
            return value
        # from the environment (or a quoted YAML value): true/false or 1/0 only; "no", "off" or "n" are the
        # strings YAML 1.1 and 1.2 read differently, so they are refused rather than guessed
        if isinstance(value, str) and value.strip().lower() in ("true", "1", "false", "0"):
            return value.strip().lower() in ("true", "1")
        raise ConfigError(f"{origin}: {key}: expected true or false, got {describe(value)}")
    if hint is int or text == "int":
        if isinstance(value, bool) or not is_int(value):
            raise ConfigError(f"{origin}: {key}: expected an integer, got {describe(value)}")
        return int(value)
    if hint is float or text == "float":
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: {key}: expected a number, got {describe(value)}") from None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{origin}: {key}: expected a string, got {describe(value)}")


def is_int(value: Any) -> bool:
    if isinstance(value, int):
        return True
    if isinstance(value, str):
        return bool(re.fullmatch(r"\s*-?\d+\s*", value))
    return isinstance(value, float) and value.is_integer()


def describe(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "a " + ("mapping" if isinstance(value, dict) else "list")
    return repr(value)
