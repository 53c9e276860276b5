"""The built-in *schema* steps: ``visit(schema)`` on every schema of the document, in place. Each is documented with
a before/after example. APIM's rules they apply come from ``apimsync/transform/rules.py``.
"""

from __future__ import annotations

import re
from typing import Any

from apimsync.transform.refs import closing_refs
from apimsync.transform.rules import DROPPED_2020, TYPE_KEYWORDS
from apimsync.transform.steps import Step, builtin
from apimsync.transform.walk import operations, pointer, visit_schemas, walk_schemas


@builtin("prefix-items")
class PrefixItems(Step):
    """Replace ``prefixItems`` (JSON Schema 2020-12 tuples) with an ``items`` schema APIM's reader accepts.

    ``items`` becomes the one positional schema when they are all alike, else ``anyOf`` of the distinct ones
    (plus the schema for extra items, when there is one), so every array that was valid stays valid.
    ``items: false`` (no extra items) becomes ``maxItems``.

    before: ``{"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}``
    after:  ``{"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}``
    """

    kind = "schema"


    def visit(self, schema: dict[str, Any]) -> None:
        positional = schema.get("prefixItems")
        if not isinstance(positional, list):
            return
        del schema["prefixItems"]
        extra = schema.pop("items", None)
        choices: list[Any] = []
        for item in positional + ([extra] if isinstance(extra, dict) else []):
            if item not in choices:
                choices.append(item)
        if extra is False:
            schema["maxItems"] = min(schema.get("maxItems", len(positional)), len(positional))
        if extra is True or any(c == {} or c is True for c in choices) or not choices:
            schema["items"] = {}
        elif len(choices) == 1:
            schema["items"] = choices[0]
        else:
            schema["items"] = {"anyOf": choices}


@builtin("downconvert-3.0")
class Downconvert(Step):
    """Down-convert OpenAPI 3.1 / JSON Schema 2020-12 to OpenAPI 3.0.3 (what APIM's reader understands).

    In schemas: type arrays → ``type`` + ``nullable`` (several types → ``anyOf``, each type's keywords moved into
    its branch); ``const`` → one-value ``enum``;
    ``examples`` → ``example``; numeric ``exclusiveMinimum``/``exclusiveMaximum`` → ``minimum`` + ``true`` (the
    stricter bound wins); ``$ref`` with siblings → ``allOf``; ``format: unknown``, ``$schema``, ``$id`` and the
    2020-12-only keywords dropped; ``contentEncoding: base64`` → ``format: byte``; ``$defs`` hoisted into
    ``components.schemas`` (their ``$ref``s rewritten). In the document: ``openapi: 3.0.3``;
    ``jsonSchemaDialect``, ``webhooks``, ``info.summary``, ``license.identifier`` and ``components.pathItems``
    dropped. The keyword lists are APIM's rules in ``apimsync/transform/rules.py``.

    before: ``{"type": ["string", "null"], "const": "a", "examples": ["a"]}``
    after:  ``{"type": "string", "nullable": true, "enum": ["a"], "example": "a"}``
    """

    kind = "schema"


    def document(self, doc: dict[str, Any]) -> None:
        if str(doc.get("openapi", "")).startswith("3.1"):
            doc["openapi"] = "3.0.3"
        _hoist_defs(doc)
        for key in ("jsonSchemaDialect", "webhooks"):
            doc.pop(key, None)
        info = doc.get("info")
        if isinstance(info, dict):
            summary = info.pop("summary", None)
            if summary and not info.get("description"):
                info["description"] = summary
            lic = info.get("license")
            if isinstance(lic, dict):
                ident = lic.pop("identifier", None)
                if ident and not lic.get("url"):
                    lic["url"] = f"https://spdx.org/licenses/{ident}.html"
        components = doc.get("components")
        if isinstance(components, dict):
            components.pop("pathItems", None)

    def visit(self, s: dict[str, Any]) -> None:
        if "$ref" in s and len(s) > 1:
            ref = s.pop("$ref")
            siblings = {k: s.pop(k) for k in list(s)}
            s["allOf"] = [{"$ref": ref}]
            s.update({k: v for k, v in siblings.items() if k != "allOf"})
            if isinstance(siblings.get("allOf"), list):
                s["allOf"] += siblings["allOf"]
            return
        kind = s.get("type")
        if isinstance(kind, list):
            types = [t for t in kind if t != "null"]
            if len(types) < len(kind):
                s["nullable"] = True
            if len(types) == 1:
                s["type"] = types[0]
            else:
                del s["type"]
                if types:  # each type's own keywords go into its branch (minLength means nothing to a number)
                    branches = []
                    for t in types:
                        branch: dict[str, Any] = {"type": t}
                        for key in TYPE_KEYWORDS.get(t, ()):
                            if key in s:
                                branch[key] = s[key]
                        branches.append(branch)
                    for key in {k for t in types for k in TYPE_KEYWORDS.get(t, ())}:
                        s.pop(key, None)
                    s.setdefault("anyOf", []).extend(branches)
        elif kind == "null":
            del s["type"]
            s["nullable"] = True
        if "const" in s:
            s["enum"] = [s.pop("const")]
        examples = s.get("examples")
        if isinstance(examples, list):
            del s["examples"]
            if examples and "example" not in s:
                s["example"] = examples[0]
        for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            value = s.get(bound)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                current = s.get(plain)
                stricter = current is None or (value >= current if plain == "minimum" else value <= current)
                if stricter:
                    s[plain] = value
                    s[bound] = True
                else:
                    del s[bound]
        if s.get("format") == "unknown":
            del s["format"]
        if s.get("contentEncoding") == "base64" and s.get("type") == "string":
            s.setdefault("format", "byte")
        s.pop("contentEncoding", None)
        if s.get("contentMediaType") == "application/octet-stream" and s.get("type") == "string":
            s.setdefault("format", "binary")
        s.pop("contentMediaType", None)
        for key in DROPPED_2020:
            s.pop(key, None)


def _hoist_defs(doc: dict[str, Any]) -> None:
    """Move every schema's ``$defs`` into ``components.schemas`` (a free name each) and point their ``$ref``s there:
    APIM's 3.0 reader knows no ``$defs``, but it reads components."""
    any_defs: list[bool] = []
    visit_schemas(doc, lambda schema: any_defs.append(True) if "$defs" in schema else None)
    if not any_defs:  # the common case, found on the fast walk (no pointers)
        return
    found: list[tuple[dict[str, Any], str]] = []

    def collect(schema: dict[str, Any], where: tuple[Any, ...]) -> None:
        if isinstance(schema.get("$defs"), dict):
            found.append((schema, pointer(where)))

    walk_schemas(doc, collect)
    if not found:
        return
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {}) if isinstance(components, dict) else {}
    if not isinstance(schemas, dict):
        return
    moved: dict[str, str] = {}  # old $ref -> new $ref
    for holder, where in found:
        for name, body in holder.pop("$defs").items():
            new = base = re.sub(r"[^a-zA-Z0-9.\-_]+", "-", str(name)) or "def"
            n = 1
            while new in schemas:
                n += 1
                new = f"{base}-{n}"
            schemas[new] = body
            moved[f"{where}/$defs/{_escape(str(name))}"] = f"#/components/schemas/{new}"
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref in moved:
                node["$ref"] = moved[ref]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _coerce(value: Any, kind: str) -> tuple[bool, Any]:
    """(ok, value) of ``value`` made to fit a JSON Schema ``type``."""
    if kind == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return False, None
            return True, int(number) if number.is_integer() and "." not in value and "e" not in value.lower() \
                else number
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return True, int(value)
    if kind == "boolean":
        if isinstance(value, bool):
            return True, value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return True, value.strip().lower() == "true"
    if kind == "string":
        if isinstance(value, str):
            return True, value
        if isinstance(value, (int, float, bool)):
            return True, str(value).lower() if isinstance(value, bool) else str(value)
    if kind == "array":
        return isinstance(value, list), value
    if kind == "object":
        return isinstance(value, dict), value
    return kind not in ("number", "integer", "boolean", "string"), value


@builtin("fix-example-types")
class FixExampleTypes(Step):
    """Make ``example`` and ``default`` match their schema's type, or drop them (APIM: "Data and type mismatch
    found.").

    before: ``{"type": "number", "default": "0.5"}``   after: ``{"type": "number", "default": 0.5}``
    before: ``{"type": "integer", "example": "many"}`` after: ``{"type": "integer"}``
    """

    kind = "schema"


    def visit(self, s: dict[str, Any]) -> None:
        kind = s.get("type")
        if not isinstance(kind, str):
            return
        for key in ("example", "default"):
            if key in s:
                if s[key] is None and s.get("nullable"):
                    continue
                ok, value = _coerce(s[key], kind)
                if ok:
                    s[key] = value
                else:
                    del s[key]

    def document(self, doc: dict[str, Any]) -> None:
        """Media-type and parameter examples must match their schema's type too."""
        for _path, _method, op in operations(doc):
            holders: list[dict[str, Any]] = [p for p in op.get("parameters") or [] if isinstance(p, dict)]
            for section in (op.get("requestBody") or {}, *((op.get("responses") or {}).values())):
                if isinstance(section, dict) and isinstance(section.get("content"), dict):
                    holders += [m for m in section["content"].values() if isinstance(m, dict)]
            for holder in holders:
                schema = holder.get("schema")
                if "example" in holder and isinstance(schema, dict) and isinstance(schema.get("type"), str):
                    ok, value = _coerce(holder["example"], schema["type"])
                    if ok:
                        holder["example"] = value
                    else:
                        del holder["example"]




@builtin("break-recursion")
class BreakRecursion(Step):
    """Break recursive schemas (APIM imports none): the ``$ref`` that closes a cycle becomes an object without a
    schema. Documented loss: the inner level of a recursive structure is untyped (it still validates as an object).

    before: ``Node: {properties: {child: {$ref: "#/components/schemas/Node"}}}``
    after:  ``Node: {properties: {child: {type: object, description: "recursive Node: not described further"}}}``
    """


    def apply(self, doc: dict[str, Any], ctx: Any) -> None:
        schemas = (doc.get("components") or {}).get("schemas") if isinstance(doc.get("components"), dict) else None
        if not isinstance(schemas, dict):
            return
        for node, target in closing_refs(schemas):
            node.clear()
            node.update({"type": "object", "description": f"recursive {target}: not described further"})
