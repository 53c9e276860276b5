"""The built-in transform steps. Each is documented with a before/after example.

A step is either a *schema* step (``visit(schema)`` on every schema, in place) or a *document* step
(``apply(doc, ctx)`` on the whole document, in place). The pipeline works on its own copy of the spec.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from apimsync.errors import PipelineError
from apimsync.transform.context import TransformContext, render
from apimsync.transform.rules import DROPPED_2020
from apimsync.transform.walk import METHODS, operations, pointer, walk_schemas


@dataclass
class Step:
    """A configured step. ``kind`` is "schema" or "document"."""

    name: str
    params: dict[str, Any]
    when: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "document"

    def visit(self, schema: dict[str, Any]) -> None:  # schema steps
        raise NotImplementedError

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:  # document steps
        raise NotImplementedError


REGISTRY: dict[str, Callable[[dict[str, Any], str], Step]] = {}


def builtin(name: str) -> Callable[[type[Step]], type[Step]]:
    def register(cls: type[Step]) -> type[Step]:
        def make(params: dict[str, Any], where: str) -> Step:
            step = cls(name, dict(params))
            step.check(where)  # type: ignore[attr-defined]
            return step

        REGISTRY[name] = make
        return cls

    return register


def _strings(params: Mapping[str, Any], key: str, where: str, default: list[str]) -> list[str]:
    value = params.get(key, default)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PipelineError(f"{where}: '{key}' must be a list of strings")
    return value


def _only(params: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise PipelineError(f"{where}: unknown parameter(s) {', '.join(unknown)}"
                            + (f" (known: {', '.join(allowed)})" if allowed else " (it takes none)"))


@builtin("drop-input-variants")
class DropInputVariants(Step):
    """Drop request variants by their input key, and collapse a ``oneOf`` left with one branch.

    params: ``drop`` (default ``[dataframe_split]``) or ``keep`` (only these input keys survive); ``params`` is
    never an input key.

    before: ``{"oneOf": [{"properties": {"dataframe_split": …, "params": …}}, {"properties":
    {"dataframe_records": …, "params": …}}]}``
    after:  ``{"properties": {"dataframe_records": …, "params": …}}``
    """

    def check(self, where: str) -> None:
        _only(self.params, ("drop", "keep"), where)
        self.drop = set(_strings(self.params, "drop", where, [] if "keep" in self.params else ["dataframe_split"]))
        self.keep = set(_strings(self.params, "keep", where, [])) if "keep" in self.params else None

    def _gone(self, branch: Any) -> bool:
        props = branch.get("properties") if isinstance(branch, dict) else None
        if not isinstance(props, dict):
            return False
        inputs = {k for k in props if k != "params"}
        if self.keep is not None:
            return bool(inputs) and not inputs & self.keep
        return bool(inputs & self.drop)

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:
        for _path, _method, op in operations(doc):
            body = op.get("requestBody")
            content = body.get("content") if isinstance(body, dict) else None
            if not isinstance(content, dict):
                continue
            for media in content.values():
                schema = media.get("schema") if isinstance(media, dict) else None
                if not isinstance(schema, dict):
                    continue
                for key in ("oneOf", "anyOf"):
                    branches = schema.get(key)
                    if not isinstance(branches, list):
                        continue
                    kept = [b for b in branches if not self._gone(b)]
                    if not kept:
                        continue  # dropping every variant would leave no valid request: keep the spec as is
                    if len(kept) == 1 and set(schema) == {key}:
                        media["schema"] = kept[0]
                    else:
                        schema[key] = kept


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

    def check(self, where: str) -> None:
        _only(self.params, (), where)

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

    In schemas: type arrays → ``type`` + ``nullable`` (several types → ``anyOf``); ``const`` → one-value ``enum``;
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

    def check(self, where: str) -> None:
        _only(self.params, (), where)

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
                if types:
                    s.setdefault("anyOf", []).extend({"type": t} for t in types)
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

    def check(self, where: str) -> None:
        _only(self.params, (), where)

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


@builtin("rewrite-servers")
class RewriteServers(Step):
    """Exactly one server, from a template (default ``{server_url}``: the endpoint's Databricks URL, or the
    route-optimized ``endpoint_url``); path- and operation-level ``servers`` are removed.

    before: ``"servers": [{"url": "https://adb-1.azuredatabricks.net/serving-endpoints/x"}, …]``
    after:  ``"servers": [{"url": "<server_url>"}]``
    """

    def check(self, where: str) -> None:
        _only(self.params, ("url",), where)
        if not isinstance(self.params.get("url", "{server_url}"), str):
            raise PipelineError(f"{where}: 'url' must be a string template")

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:
        doc["servers"] = [{"url": render(self.params.get("url", "{server_url}"), ctx)}]
        for item in (doc.get("paths") or {}).values():
            if isinstance(item, dict):
                item.pop("servers", None)
                for method in METHODS:
                    if isinstance(item.get(method), dict):
                        item[method].pop("servers", None)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def entity_of(path: str) -> str | None:
    """The served entity of a ``/served-models/<entity>/invocations`` path."""
    match = re.fullmatch(r"/served-models/([^/]+)/invocations", path)
    return match.group(1) if match else None


@builtin("operation-ids")
class OperationIds(Step):
    """A stable ``operationId`` and ``summary`` for every operation, derived from the served entity, never from
    anything that changes between runs (APIM matches operations on re-import by operationId and deletes the
    unmatched ones).

    params: ``template`` (default ``invoke-{entity}``), ``summary`` (default ``Invoke {entity}``), ``overwrite``
    (default false: keep ids the spec already has). Paths that are not served-model paths use
    ``{method}-{path}`` and ``/invocations`` uses ``invoke``.

    before: ``"/served-models/churn-3/invocations": {"post": {…}}``
    after:  ``… {"post": {"operationId": "invoke-churn-3", "summary": "Invoke churn-3", …}}``
    """

    def check(self, where: str) -> None:
        _only(self.params, ("template", "summary", "overwrite"), where)

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:
        template = self.params.get("template", "invoke-{entity}")
        summary = self.params.get("summary", "Invoke {entity}")
        overwrite = bool(self.params.get("overwrite", False))
        for path, method, op in operations(doc):
            entity = entity_of(path)
            if entity is not None:
                values = {"entity": entity, "method": method}
                op_id = render(template, ctx, values)
                text = render(summary, ctx, values)
            elif path == "/invocations":
                op_id, text = "invoke", f"Invoke {ctx.endpoint} (traffic-routed)"
            else:
                op_id, text = f"{method}-{_slug(path)}", f"{method.upper()} {path}"
            if overwrite or not op.get("operationId"):
                op["operationId"] = op_id
            if overwrite or not op.get("summary"):
                op["summary"] = text[:300]


@builtin("add-invocations-path")
class AddInvocationsPath(Step):
    """Publish the endpoint's own ``POST /invocations``: the query URL Databricks documents for every endpoint,
    routed by its traffic split, and stable across model versions (the per-entity paths embed the entity name,
    which changes with each deployment). The per-entity paths stay only when ``apis.served_model_routes`` is on.

    Its request schema accepts what any served entity accepts (identical schemas collapse to one; different
    signatures become an ``anyOf``, and a payload only one entity accepts may be routed to another by the split).

    before: ``paths: {"/served-models/a-1/invocations": …}``
    after:  ``paths: {"/invocations": {"post": …}}`` (and the per-entity paths with served_model_routes)
    """

    def check(self, where: str) -> None:
        _only(self.params, (), where)

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:
        paths = doc.get("paths")
        if not isinstance(paths, dict):
            return
        entity_paths = [p for p, item in paths.items()
                        if entity_of(p) and isinstance(item, dict) and isinstance(item.get("post"), dict)]
        posts = [paths[p]["post"] for p in entity_paths]
        if posts and "/invocations" not in paths:
            requests = _distinct(_schema(p.get("requestBody")) for p in posts)
            responses = _distinct(_schema((p.get("responses") or {}).get("200")) for p in posts)
            post: dict[str, Any] = {"summary": f"Invoke {ctx.endpoint} (traffic-routed)"}
            if requests:
                post["requestBody"] = {"content": {"application/json": {"schema": _any_of(requests)}}}
            post["responses"] = {"200": {"description": "Successful operation", **(
                {"content": {"application/json": {"schema": _any_of(responses)}}} if responses else {})}}
            doc["paths"] = paths = {"/invocations": {"post": post}, **paths}
        if not ctx.served_model_routes and "/invocations" in paths:
            for p in entity_paths:
                del paths[p]


def _schema(section: Any) -> Any:
    try:
        return section["content"]["application/json"]["schema"]
    except (KeyError, TypeError):
        return None


def _distinct(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if item is not None and item not in out:
            out.append(item)
    return out


def _any_of(schemas: list[Any]) -> Any:
    import copy

    return copy.deepcopy(schemas[0]) if len(schemas) == 1 else {"anyOf": copy.deepcopy(schemas)}


@builtin("hoist-schemas")
class HoistSchemas(Step):
    """Move inline request and response schemas into ``components/schemas`` under stable names
    (``<operationId>-request`` / ``<operationId>-response``) so APIM's developer portal lists them.
    Run after ``operation-ids``.

    before: ``"requestBody": {"content": {"application/json": {"schema": {…}}}}``
    after:  ``… {"schema": {"$ref": "#/components/schemas/invoke-churn-3-request"}}`` and the schema under
    ``components.schemas``.
    """

    def check(self, where: str) -> None:
        _only(self.params, (), where)

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for path, method, op in operations(doc):
            base = re.sub(r"[^a-zA-Z0-9.\-_]+", "-", op.get("operationId") or f"{method}-{_slug(path)}")
            slots = [("request", (op.get("requestBody") or {}).get("content"))]
            slots += [(f"response-{status}" if status != "200" else "response", (r or {}).get("content"))
                      for status, r in (op.get("responses") or {}).items() if isinstance(r, dict)]
            for suffix, content in slots:
                if not isinstance(content, dict):
                    continue
                for media in content.values():
                    schema = media.get("schema") if isinstance(media, dict) else None
                    if isinstance(schema, dict) and "$ref" not in schema:
                        name = f"{base}-{suffix}"
                        schemas[name] = schema
                        media["schema"] = {"$ref": f"#/components/schemas/{name}"}
        if not schemas:
            doc["components"].pop("schemas")
            if not doc["components"]:
                doc.pop("components")


@builtin("set-info")
class SetInfo(Step):
    """Set ``info`` fields from templates (``{endpoint}``, ``{config_version}``, ``{workspace}`` …).

    params: any of ``title``, ``description``, ``version``.
    before: ``"info": {"title": "churn", "version": "3"}``
    after (``title: "Churn model ({workspace})"``): ``"info": {"title": "Churn model (prod)", "version": "3"}``
    """

    def check(self, where: str) -> None:
        _only(self.params, ("title", "description", "version"), where)

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:
        info = doc.setdefault("info", {})
        for key, template in self.params.items():
            info[key] = render(str(template), ctx)
