"""Reading and writing OpenAPI documents: the one place a spec's bytes become a dict (and back)."""

from __future__ import annotations

import json
import math
from typing import Any

from apimsync.errors import SpecError
from apimsync.files import MAX_SPEC_BYTES

MAX_DEPTH = 100  # nesting of objects and arrays; Databricks' specs stay under 30


class _Refused(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not JSON (a number must be finite)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Refused(f"duplicate key '{duplicate[:80]}' (JSON parsers disagree on which one wins)")
    return obj


def load_spec(data: bytes | str, origin: str) -> dict[str, Any]:
    """Parse an OpenAPI 3.x JSON document; SpecError names ``origin`` and the problem.

    Strict where Python's json is lenient: no NaN/Infinity, no duplicate keys, numbers of at most 4,300 digits,
    at most ``MAX_DEPTH`` levels, at most ``MAX_SPEC_BYTES`` (checked before parsing).
    """
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{origin}: larger than {MAX_SPEC_BYTES // (1024 * 1024)} MB; refused before parsing")
    if isinstance(data, bytes):
        if data.startswith(b"\xef\xbb\xbf"):
            raise SpecError(f"{origin}: starts with a UTF-8 byte order mark (APIM rejects it); save it without a BOM")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"{origin}: not UTF-8 text (byte {exc.start})") from None
    if data.startswith("\ufeff"):
        raise SpecError(f"{origin}: starts with a UTF-8 byte order mark (APIM rejects it); save it without a BOM")
    if not data.strip():
        raise SpecError(f"{origin}: empty document")
    try:
        spec = json.loads(data, parse_constant=_no_constant, object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{origin}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except _Refused as exc:
        raise SpecError(f"{origin}: {exc}") from None
    except ValueError as exc:  # int digits limit
        raise SpecError(f"{origin}: a number is too long ({str(exc).split(';')[0]})") from None
    except RecursionError:
        raise SpecError(f"{origin}: nested deeper than {MAX_DEPTH} levels") from None
    problem = _tree_problem(spec, MAX_DEPTH)
    if problem:
        raise SpecError(f"{origin}: {problem}")
    if not isinstance(spec, dict):
        raise SpecError(f"{origin}: expected a JSON object, got {type(spec).__name__ if spec is not None else 'null'}")
    version = spec.get("openapi")
    if "swagger" in spec:
        raise SpecError(f"{origin}: Swagger {spec.get('swagger')} document; apimsync reads OpenAPI 3.x")
    if not isinstance(version, str) or not version.startswith("3."):
        raise SpecError(f"{origin}: not an OpenAPI 3.x document (openapi: {version!r})")
    if not isinstance(spec.get("paths"), dict) or not spec["paths"]:
        raise SpecError(f"{origin}: no paths")
    return spec


def _tree_problem(value: Any, limit: int) -> str | None:
    """Nesting past ``limit``, or a number that overflowed to infinity (``1e400``), without recursion."""
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return f"nested deeper than {limit} levels"
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            elif isinstance(child, float) and not math.isfinite(child):
                return "a number overflows to infinity (not representable in JSON)"
    return None


def pretty_spec(spec: dict[str, Any]) -> str:
    """Indented JSON for people (``apimsync transform``), with orjson: json's indenting encoder is pure Python and
    takes most of the command's time on a large spec. json writes what orjson refuses (integers past 64 bits)."""
    import orjson

    try:
        return orjson.dumps(spec, option=orjson.OPT_INDENT_2).decode("utf-8") + "\n"
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"


def dump_spec(spec: dict[str, Any]) -> str:
    """Compact JSON, keys in document order: what is sent inline to APIM (and hashed for change detection)."""
    return json.dumps(spec, separators=(",", ":"), ensure_ascii=False)
