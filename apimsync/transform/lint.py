"""The APIM compatibility linter: every import rule of Learn's "API import restrictions and known issues", each finding
with a JSON pointer, a severity and a fix hint. Errors mean APIM would reject the spec (or mangle it); warnings mean it
would import with something ignored."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from apimsync.transform.refs import on_cycles
from apimsync.transform.rules import COMPONENT_KEY, MAX_INLINE_BYTES, UNREADABLE_2020, fits
from apimsync.transform.walk import METHODS, Pointer, operations, pointer, walk_schemas

_IGNORED_COMPONENTS = ("responses", "parameters", "examples", "requestBodies", "headers", "securitySchemes", "links",
                       "callbacks")


@dataclass(frozen=True)
class Finding:
    pointer: str
    severity: str  # "error" | "warning"
    rule: str
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.pointer}: {self.message} [{self.rule}] (fix: {self.hint})"

    def to_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "severity": self.severity, "rule": self.rule, "message": self.message,
                "hint": self.hint}


class _Lint:
    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.findings: list[Finding] = []

    def add(self, where: Pointer, severity: str, rule: str, message: str, hint: str) -> None:
        self.findings.append(Finding(pointer(where), severity, rule, message, hint))

    def schema(self, s: dict[str, Any], where: Pointer) -> None:
        if "$ref" in s:
            self.ref(s["$ref"], (*where, "$ref"))
            if len(s) > 1:
                self.add(where, "error", "ref-siblings", "$ref with sibling keywords (APIM's 3.0 reader drops or "
                         "rejects them)", "wrap in allOf: [{$ref}] plus the siblings (downconvert-3.0)")
        kind = s.get("type")
        if isinstance(kind, list):
            self.add((*where, "type"), "error", "type-array", "type is an array (3.1); APIM: 'Cannot create a "
                     "scalar value from this type of node.'", "use type + nullable (downconvert-3.0)")
        elif kind is not None and not isinstance(kind, str):
            self.add((*where, "type"), "error", "type-array", "type must be a string", "use a single type name")
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            if bound in s and not isinstance(s[bound], bool):
                self.add((*where, bound), "error", "exclusive-bound", f"numeric {bound} (3.1); APIM accepts only "
                         "the boolean form", "use minimum/maximum with a boolean (downconvert-3.0)")
        if isinstance(s.get("examples"), list):
            self.add((*where, "examples"), "error", "schema-examples", "schema-level examples array (3.1)",
                     "use a single example (downconvert-3.0)")
        for key in UNREADABLE_2020:
            if key in s:
                rule = "prefix-items" if key == "prefixItems" else "const" if key == "const" else "json-schema-2020"
                hint = ("use items (prefix-items step)" if key == "prefixItems" else
                        "use a one-value enum (downconvert-3.0)" if key == "const" else "remove it (downconvert-3.0)")
                self.add((*where, key), "error", rule, f"'{key}' is not readable by APIM's OpenAPI 3.0 parser", hint)
        if s.get("nullable") is True and "type" not in s and not any(k in s for k in ("allOf", "anyOf", "oneOf")):
            self.add(where, "warning", "nullable-without-type", "nullable without type is ignored in 3.0",
                     "add a type")
        if s.get("format") == "unknown":
            self.add((*where, "format"), "warning", "format-unknown", "format 'unknown' means nothing to APIM",
                     "drop it (downconvert-3.0)")
        if isinstance(kind, str):
            for key in ("example", "default"):
                if key in s and not fits(s[key], kind, s.get("nullable")):
                    self.add((*where, key), "error", "type-mismatch", f"{key} does not match type {kind}; APIM: "
                             "'Data and type mismatch found.'", "fix or drop the value (fix-example-types)")

    def ref(self, ref: Any, where: Pointer) -> None:
        if not isinstance(ref, str) or not ref.startswith("#/"):
            self.add(where, "error", "external-ref", f"external $ref '{ref}': APIM cannot reference other files",
                     "inline the referenced schema")
        elif _resolve(self.doc, ref) is None:
            self.add(where, "error", "missing-ref", f"$ref '{ref}' points at nothing", "fix the reference")

    def run(self) -> list[Finding]:
        doc = self.doc
        version = str(doc.get("openapi", ""))
        if version == "3.1.0":
            self.add(("openapi",), "warning", "openapi-version", "OpenAPI 3.1 is import-only in APIM",
                     "down-convert to 3.0.3 (downconvert-3.0)")
        elif not re.fullmatch(r"3\.0\.[0-3]", version):
            self.add(("openapi",), "error", "openapi-version", f"APIM imports OpenAPI 2.0, 3.0.0-3.0.3 and 3.1.0, "
                     f"not '{version}'", "set openapi: 3.0.3")
        size = len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > MAX_INLINE_BYTES:
            self.add((), "error", "size", f"{size} bytes compact; APIM's inline import limit is 4 MB",
                     "drop operations or schemas (jsonpath/overlay steps)")
        info = _obj(doc.get("info"))
        if "summary" in info:
            self.add(("info", "summary"), "error", "info-summary", "info.summary is not supported by APIM",
                     "drop it (downconvert-3.0)")
        for key, rule in (("webhooks", "webhooks"), ("jsonSchemaDialect", "json-schema-dialect")):
            if key in doc:
                self.add((key,), "error", rule, f"{key} (3.1) is not supported", "drop it (downconvert-3.0)")
        if "externalDocs" in doc:
            self.add(("externalDocs",), "warning", "ignored-field", "externalDocs is ignored by APIM", "drop it")
        servers = doc.get("servers")
        if not isinstance(servers, list) or not servers:
            self.add(("servers",), "warning", "servers", "no servers: APIM's serviceUrl comes from the API settings",
                     "add one https server (rewrite-servers)")
        else:
            if not any(isinstance(s, dict) and str(s.get("url", "")).startswith("https://") for s in servers):
                self.add(("servers",), "warning", "servers", "no https server: APIM uses the first https URL",
                         "use an https server URL (rewrite-servers)")
            for i, s in enumerate(servers):
                if isinstance(s, dict) and s.get("variables"):
                    self.add(("servers", i, "variables"), "warning", "server-variables", "server URL templating is "
                             "not supported by APIM", "use a literal URL (rewrite-servers)")
        components = _obj(doc.get("components"))
        for section, entries in components.items():
            if isinstance(entries, dict):
                for key in entries:
                    if not COMPONENT_KEY.match(str(key)):
                        self.add(("components", section, key), "error", "component-key", f"component key '{key}' "
                                 "must match ^[a-zA-Z0-9.\\-_]+$", "rename it and its references")
            if section in _IGNORED_COMPONENTS and entries:
                self.add(("components", section), "warning", "ignored-field", f"components.{section} is ignored "
                         "by APIM", "inline what operations need")
            if section == "pathItems":
                self.add(("components", "pathItems"), "error", "json-schema-2020", "components.pathItems (3.1)",
                         "inline the path items (downconvert-3.0)")
        schemas = _obj(components.get("schemas"))
        for name in _recursive(schemas):
            self.add(("components", "schemas", name), "error", "recursion", f"schema '{name}' is recursive; APIM "
                     "does not support recursive definitions", "break the cycle (replace the inner $ref with a "
                     "plain object)")
        walk_schemas(dict(doc), self.schema)
        self.operations()
        return self.findings

    def operations(self) -> None:
        names: dict[str, Pointer] = {}
        paths = self.doc.get("paths")
        if not isinstance(paths, dict) or not paths:
            self.add(("paths",), "warning", "no-paths", "no paths: APIM imports an API without operations",
                     "add paths")
            return
        for path, item in paths.items():
            if isinstance(item, dict):
                for key in ("trace", "servers"):
                    if key in item:
                        self.add(("paths", path, key), "warning", "ignored-field", f"path-level {key} is ignored",
                                 f"drop {key}")
        for path, method, op in operations(dict(self.doc)):
            where: Pointer = ("paths", path, method)
            op_id = op.get("operationId")
            if not op_id:
                self.add(where, "warning", "operation-id", "no operationId: APIM names the operation from method "
                         "and path and cannot match it on re-import", "add stable ids (operation-ids)")
            source = op_id if isinstance(op_id, str) and op_id else f"{method}-{path}"
            name = re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")[:76]
            if name in names:
                self.add((*where, "operationId"), "warning", "operation-name", f"operation name '{name}' collides "
                         f"with {pointer(names[name])}; APIM adds a numeric suffix that can change between imports",
                         "make operationIds unique")
            names[name] = where
            if len(str(op.get("summary") or "")) > 300:
                self.add((*where, "summary"), "warning", "operation-name", "summary over 300 characters",
                         "shorten it")
            for key in ("callbacks", "security", "servers", "externalDocs"):
                if key in op:
                    self.add((*where, key), "warning", "ignored-field", f"operation {key} is ignored by APIM",
                             f"drop {key}")
            params = [p for p in (item_params(paths[path]) + (op.get("parameters") or []))
                      if isinstance(p, dict)]
            declared = set()
            for i, p in enumerate(params):
                if p.get("in") == "path":
                    declared.add(p.get("name"))
                if p.get("in") == "cookie":
                    self.add((*where, "parameters", i), "warning", "parameter", "cookie parameters are not "
                             "supported", "drop it")
                for key in ("allowEmptyValue", "style", "explode", "allowReserved"):
                    if key in p:
                        self.add((*where, "parameters", i, key), "warning", "parameter", f"parameter {key} is "
                                 "ignored by APIM", f"drop {key}")
            for template in re.findall(r"\{([^}]+)\}", path):
                if template not in declared:
                    self.add(where, "error", "path-template", f"path parameter '{template}' is not defined",
                             "add an 'in: path' parameter for it")
            body = op.get("requestBody")
            if isinstance(body, dict):
                if "$ref" in body:
                    self.ref(body["$ref"], (*where, "requestBody", "$ref"))
                for media in body.get("content") or {}:
                    if media.startswith("multipart/form-data"):
                        self.add((*where, "requestBody", "content", media), "warning", "multipart",
                                 "multipart/form-data is not supported", "use application/json")
            if method in ("get", "head", "options") and body:
                self.add((*where, "requestBody"), "warning", "get-body", "APIM discards request bodies of "
                         f"{method.upper()}", "use POST")


def item_params(item: Any) -> list[Any]:
    return list(item.get("parameters") or []) if isinstance(item, dict) else []


def _obj(value: Any) -> dict[str, Any]:
    """The value if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def _resolve(doc: Any, ref: str) -> Any:
    node = doc
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _recursive(schemas: Mapping[str, Any]) -> list[str]:
    cyclic = on_cycles(schemas)
    return [name for name in schemas if name in cyclic]


def lint(spec: Mapping[str, Any]) -> list[Finding]:
    """Every APIM import problem in a spec, errors first."""
    findings = _Lint(spec).run()
    return sorted(findings, key=lambda f: (f.severity != "error", f.pointer))


__all__ = ["METHODS", "Finding", "lint"]
