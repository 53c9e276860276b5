"""Policy templates: APIM policy XML with ``${variable}`` placeholders (string.Template), so APIM's own
``{{named-value}}`` references pass through untouched.
"""

from __future__ import annotations

import re
import string
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape

from apimsync.bundled import resolve
from apimsync.errors import PolicyError
from apimsync.files import read_text

NAMED_VALUE_REF = re.compile(r"\{\{\s*([A-Za-z0-9\-._]+)\s*\}\}")
COMMENT = re.compile(r"<!--.*?-->\s*", re.DOTALL)


def load_template(name_or_path: str) -> tuple[str, Path]:
    """A bundled template by name (``policies/<name>.xml``) or a file path; returns (text, path)."""
    path = resolve("policies", name_or_path, ".xml")
    if not path.exists():
        raise PolicyError(f"policy template '{name_or_path}' not found")
    return read_text(path, PolicyError), path


# Values are data: escaped for both quote styles, so no value breaks out of an attribute.
VALUE_ESCAPES = {'"': "&quot;", "'": "&apos;"}


def policy_value(value: str, what: str) -> str:
    """``value`` escaped for a policy attribute or text, refused (PolicyError) when APIM would read it as code.

    An attribute or text that starts with ``@`` is a C# policy expression, and ``{{name}}`` reads a named value.
    Character references do not help: the XML parser turns ``&#64;`` and ``&#123;`` back into ``@`` and ``{``
    before APIM sees the text, so such a value is refused, never escaped."""
    if value.lstrip().startswith("@") or "{" in value or "}" in value:
        raise PolicyError(f"{what}: '{value[:80]}' would be code in the policy (a leading '@' is a policy "
                          "expression, braces read named values); refused")
    return escape(value, VALUE_ESCAPES)


def render_policy(template: str, variables: Mapping[str, str], *, origin: str = "policy") -> str:
    """Substitute ``${var}`` (values escaped), drop the template's comments, and check the result is a
    well-formed <policies> document with the template's own elements and attributes."""
    body = COMMENT.sub("", template).strip() + "\n"
    try:
        escaped = {k: policy_value(str(v), f"{origin}: ${{{k}}}") for k, v in variables.items()}
        xml = string.Template(body).substitute(escaped)
        reference = string.Template(body).substitute({k: "v" for k in variables})
    except KeyError as exc:
        raise PolicyError(f"{origin}: unknown variable ${{{exc.args[0]}}} "
                          f"(known: {', '.join(sorted(variables))})") from None
    except ValueError as exc:
        raise PolicyError(f"{origin}: {exc}") from None
    check_policy(xml, origin=origin)
    if _shape(xml) != _shape(reference):
        raise PolicyError(f"{origin}: a variable's value changed the policy's structure")
    return xml


def _shape(xml: str) -> list[tuple[str, tuple[str, ...]]]:
    """Elements and attribute names in document order: what a value must never change."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return []
    return [(el.tag, tuple(sorted(el.attrib))) for el in root.iter()]


def check_policy(xml: str, *, origin: str = "policy") -> None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        line, column = exc.position
        raise PolicyError(f"{origin}: not well-formed XML (line {line}, column {column})") from None
    if root.tag != "policies":
        raise PolicyError(f"{origin}: the root element must be <policies>, not <{root.tag}>")


def named_value_refs(xml: str) -> set[str]:
    """The named values a policy reads (``{{name}}``)."""
    return set(NAMED_VALUE_REF.findall(xml))


def canonical_policy(xml: str) -> str:
    """A form to compare policies by: C14N with whitespace-only text dropped, line endings normalised.

    APIM re-serialises stored policies (indentation, CRLF, tabs), so string equality would see drift everywhere.
    """
    try:
        return ET.canonicalize(xml.replace("\r\n", "\n"), strip_text=True)
    except ET.ParseError:
        return xml.strip()
