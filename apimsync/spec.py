"""Reading and writing OpenAPI documents: the one place a spec's bytes become a dict (and back)."""

from __future__ import annotations

import json
from typing import Any

from apimsync.errors import SpecError


def load_spec(data: bytes | str, origin: str) -> dict[str, Any]:
    """Parse an OpenAPI 3.x JSON document; SpecError names ``origin`` and the problem."""
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
        spec = json.loads(data)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{origin}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
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


def dump_spec(spec: dict[str, Any]) -> str:
    """Compact JSON, keys in document order: what is sent inline to APIM (and hashed for change detection)."""
    return json.dumps(spec, separators=(",", ":"), ensure_ascii=False)
