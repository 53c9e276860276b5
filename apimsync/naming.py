"""Names: the naming templates (plain ``{endpoint}``, ``{workspace}`` placeholders) and APIM's rules for the api
ids and paths they produce. Pure functions."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from apimsync.errors import ConfigError


def render_template(template: str, values: Mapping[str, str], error: type[ConfigError] = ConfigError) -> str:
    """Fill plain ``{name}`` placeholders (no attribute, index, conversion or format spec: ``{x:>999999999}``
    would be a memory bomb); anything else raises ``error`` naming the template and the known names."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise error(f"template '{template}': {exc}") from None
    out = []
    for literal, name, spec, conversion in parts:
        out.append(literal)
        if name is None:
            continue
        known = ", ".join("{" + k + "}" for k in sorted(values))
        if spec or conversion:
            bad = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise error(f"template '{template}': {bad}: only plain placeholders are allowed ({known})")
        if name not in values:
            raise error(f"template '{template}': unknown placeholder {{{name}}} (known: {known})")
        out.append(str(values[name]))
    return "".join(out)


def render_name(template: str, **variables: str) -> str:
    """A naming template (api id, path, display name) filled with ``{endpoint}``, ``{workspace}``."""
    return render_template(template, variables)


def sanitize_api_id(raw: str) -> str:
    """An APIM api id: lower-case, each run of characters other than [a-z0-9._-] becomes '-', trimmed, ≤ 256."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", raw.lower()).strip("-.")[:256].strip("-.")
    if not slug:
        raise ConfigError(f"api id template produced '{raw}', which has no usable characters")
    return slug


def sanitize_path(raw: str) -> str:
    """An APIM API path: segments of [A-Za-z0-9._~-] joined by '/', no leading or trailing '/', ≤ 400."""
    segments = [re.sub(r"[^A-Za-z0-9._~-]+", "-", seg).strip("-") for seg in raw.split("/")]
    if any(seg in (".", "..") for seg in segments):
        raise ConfigError(f"path template produced '{raw}', which has a '.' or '..' segment")
    path = "/".join(s for s in segments if s)[:400].strip("/")
    if not path:
        raise ConfigError(f"path template produced '{raw}', which has no usable characters")
    return path
