"""APIM's import rules, in one place for the product: the linter checks them and the transform steps fix what they
can. (The APIM emulator keeps its own copy on purpose: it stands in for Azure; tests/transform/test_rules_agree.py
holds the two to the same verdict on a corpus of specs, each breaking one rule.)

Sources: Learn, "API import restrictions and known issues" (and its OpenAPI 3.1 import-only notes).
"""

from __future__ import annotations

import re
from typing import Any

MAX_INLINE_BYTES = 4 * 1024 * 1024  # an inline import (format openapi+json) of at most 4 MB
COMPONENT_KEY = re.compile(r"^[a-zA-Z0-9.\-_]+$")  # keys under components.*
# JSON Schema 2020-12 keywords that APIM's OpenAPI 3.0 reader cannot read
UNREADABLE_2020 = ("prefixItems", "const", "$schema", "$id", "$defs", "$anchor", "$dynamicRef", "$dynamicAnchor",
                   "$recursiveRef", "$recursiveAnchor", "unevaluatedProperties", "unevaluatedItems",
                   "dependentRequired", "dependentSchemas", "propertyNames", "contains", "if", "then", "else",
                   "patternProperties", "contentMediaType", "contentEncoding")
# what the down-convert turns into 3.0 instead of dropping: prefixItems (its own step), const (an enum),
# contentMediaType/contentEncoding (a format), $defs (hoisted into components.schemas)
CONVERTED_2020 = ("prefixItems", "const", "contentMediaType", "contentEncoding", "$defs")
# dropped by the down-convert: the unreadable rest, and 2020-12 annotations the reader ignores anyway
DROPPED_2020 = (*(k for k in UNREADABLE_2020 if k not in CONVERTED_2020),
                "$comment", "minContains", "maxContains", "contentSchema")


# the keywords that belong to one JSON type: when a type array becomes anyOf, each goes into its type's branch
TYPE_KEYWORDS = {
    "string": ("minLength", "maxLength", "pattern", "format"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "format"),
    "integer": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "format"),
    "array": ("items", "minItems", "maxItems", "uniqueItems"),
    "object": ("properties", "required", "additionalProperties", "minProperties", "maxProperties"),
}


def fits(value: Any, kind: str, nullable: Any = False) -> bool:
    """Whether an ``example`` or ``default`` fits a schema ``type`` (APIM: "Data and type mismatch found.")."""
    if value is None:
        return bool(nullable)
    checks = {"string": lambda v: isinstance(v, str),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "boolean": lambda v: isinstance(v, bool), "array": lambda v: isinstance(v, list),
              "object": lambda v: isinstance(v, dict)}
    check = checks.get(kind)
    return True if check is None else bool(check(value))
