"""The transform steps' base, and the built-in *document* steps (the schema steps are in ``schema_steps``). Each
is documented with a before/after example.

A step is either a *schema* step (``visit(schema)`` on every schema, in place) or a *document* step
(``apply(doc, ctx)`` on the whole document, in place). The pipeline works on its own copy of the spec.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from apimsync.errors import PipelineError
from apimsync.kinds import TASKS, task_of
from apimsync.transform.context import TransformContext, render
from apimsync.transform.walk import METHODS, operations


@dataclass
class Step:
    """A configured step. ``kind`` is "schema" or "document"."""

    name: str
    params: dict[str, Any]
    when: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[str] = "document"

    def check(self, where: str) -> None:
        """Validate ``params`` (PipelineError naming ``where``); by default a step takes none."""
        self.takes((), where)

    def takes(self, allowed: tuple[str, ...], where: str) -> None:
        """PipelineError naming ``where`` when ``params`` holds a parameter not in ``allowed``."""
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise PipelineError(f"{where}: unknown parameter(s) {', '.join(unknown)}"
                                + (f" (known: {', '.join(allowed)})" if allowed else " (it takes none)"))

    def visit(self, schema: dict[str, Any]) -> None:  # schema steps
        raise NotImplementedError

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:  # document steps
        raise NotImplementedError


REGISTRY: dict[str, Callable[[dict[str, Any], str], Step]] = {}


def builtin(name: str) -> Callable[[type[Step]], type[Step]]:
    def register(cls: type[Step]) -> type[Step]:
        def make(params: dict[str, Any], where: str) -> Step:
            step = cls(name, dict(params))
            step.check(where)
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


@builtin("drop-input-variants")
class DropInputVariants(Step):
    """Drop request variants by their input key, make each remaining variant require its input field, keep the
    model's input example (as ``dataframe_records``: the request example), and collapse a ``oneOf`` left with one
    branch.

    params: ``drop`` (default ``[dataframe_split]``) or ``keep`` (only these input keys survive); ``params`` is
    never an input key.

    before: ``{"oneOf": [{"properties": {"dataframe_split": …, "params": …}}, {"properties":
    {"dataframe_records": …, "params": …}}]}``
    after:  ``{"properties": {"dataframe_records": …, "params": …}, "required": ["dataframe_records"]}``
    """

    def check(self, where: str) -> None:
        self.takes(("drop", "keep"), where)
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
                    example = _records_example(branches, kept)
                    if example is not None and "example" not in media and "examples" not in media:
                        media["example"] = example
                    if not kept:
                        continue  # dropping every variant would leave no valid request: keep the spec as is
                    for branch in kept:
                        _require_input(branch)
                    if len(kept) == 1 and set(schema) == {key}:
                        media["schema"] = kept[0]
                    else:
                        schema[key] = kept


def _records_example(branches: list[Any], kept: list[Any]) -> dict[str, Any] | None:
    """The model's input example as a request: Databricks puts it in the dataframe_split variant as the inner
    ``{columns, data}`` object; as ``dataframe_records`` (when that variant is offered) it survives the drop of
    dataframe_split and becomes the operation's request example in the developer portal."""
    if not any(isinstance(b, dict) and "dataframe_records" in (b.get("properties") or {}) for b in kept):
        return None
    for branch in branches:
        props = branch.get("properties") if isinstance(branch, dict) else None
        if not isinstance(props, dict) or "dataframe_split" not in props:
            continue
        found = branch.get("examples") or props["dataframe_split"].get("examples") \
            if isinstance(props["dataframe_split"], dict) else None
        found = found[0] if isinstance(found, list) and found else branch.get("example")
        if isinstance(found, dict) and isinstance(found.get("columns"), list) and isinstance(found.get("data"), list):
            columns = [str(c) for c in found["columns"]]
            rows = [dict(zip(columns, row, strict=False)) for row in found["data"][:3] if isinstance(row, list)]
            if rows:
                return {"dataframe_records": rows}
    return None


def _require_input(branch: Any) -> None:
    """A variant keyed by one input field requires it: MLflow's scoring server takes exactly one input field,
    and without ``required`` an object with one field is valid under every branch, which a strict ``oneOf``
    (APIM's validate-content) refuses."""
    props = branch.get("properties") if isinstance(branch, dict) else None
    inputs = [k for k in props if k != "params"] if isinstance(props, dict) else []
    if len(inputs) == 1:
        required = branch.get("required")
        if not isinstance(required, list):
            branch["required"] = inputs
        elif inputs[0] not in required:
            required.append(inputs[0])


@builtin("rewrite-servers")
class RewriteServers(Step):
    """Exactly one server, from a template (default ``{server_url}``: the endpoint's Databricks URL, or the
    route-optimized ``endpoint_url``); path- and operation-level ``servers`` are removed.

    before: ``"servers": [{"url": "https://adb-1.azuredatabricks.net/serving-endpoints/x"}, …]``
    after:  ``"servers": [{"url": "<server_url>"}]``
    """

    def check(self, where: str) -> None:
        self.takes(("url",), where)
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


OPENAI_PATHS = {t.openai_route for t in TASKS.values() if t.openai_route}  # operation ids "openai-" are for these


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
        self.takes(("template", "summary", "overwrite"), where)

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
            if path not in OPENAI_PATHS and op_id.startswith("openai-"):
                op_id = "entity-" + op_id  # "openai-..." names apimsync's OpenAI routes only (the gateway's rewrite)
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
                media: dict[str, Any] = {"schema": _any_of(requests, copy=ctx.served_model_routes)}
                example = next((m["example"] for m in map(_media, posts) if "example" in m), None)
                if example is not None and len(requests) == 1:  # an example fits the one schema all entities share
                    media["example"] = example
                post["requestBody"] = {"content": {"application/json": media}}
            post["responses"] = {"200": {"description": "Successful operation", **(
                {"content": {"application/json": {"schema": _any_of(responses, copy=ctx.served_model_routes)}}}
                if responses else {})}}
            doc["paths"] = paths = {"/invocations": {"post": post}, **paths}
        if not ctx.served_model_routes and "/invocations" in paths:
            for p in entity_paths:
                del paths[p]


def _media(post: Any) -> dict[str, Any]:
    try:
        media = post["requestBody"]["content"]["application/json"]
    except (KeyError, TypeError):
        return {}
    return media if isinstance(media, dict) else {}


def _schema(section: Any) -> Any:
    try:
        return section["content"]["application/json"]["schema"]
    except (KeyError, TypeError):
        return None


def _distinct(items: Any) -> list[Any]:
    """The distinct schemas, in order (by their canonical JSON: one pass, not a comparison with each kept one)."""
    seen: dict[str, Any] = {}
    for item in items:
        if item is not None:
            seen.setdefault(json.dumps(item, sort_keys=True, default=str), item)
    return list(seen.values())


def _any_of(schemas: list[Any], *, copy: bool) -> Any:
    """One schema, or an anyOf of several; copied when the entity paths they come from stay in the document (no
    node may appear twice: a later step would rewrite it twice)."""
    import marshal

    out = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return marshal.loads(marshal.dumps(out)) if copy else out


@builtin("openai-routes")
class OpenAiRoutes(Step):
    """For chat, completions and embeddings endpoints, the OpenAI route beside ``/invocations`` (same request and
    response), so the official OpenAI SDK works with ``base_url`` = the API's URL; the gateway rewrites it to
    ``/invocations`` (a policy fragment apimsync adds). Off with ``apis.openai_routes: false``.

    before: ``paths: {"/invocations": {"post": …}}`` (task llm/v1/chat)
    after:  ``paths: {"/invocations": …, "/chat/completions": {"post": {…, "operationId": "openai-chat-completions"}}}``
    """


    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:
        task = task_of(ctx.task) if ctx.openai_routes else None
        route = task.openai_route if task is not None else None
        paths = doc.get("paths")
        if task is None or route is None or not isinstance(paths, dict) or route in paths:
            return
        post = (paths.get("/invocations") or {}).get("post") if isinstance(paths.get("/invocations"), dict) else None
        if not isinstance(post, dict):
            return
        copy = json.loads(json.dumps(post))
        copy["operationId"] = task.openai_operation_id
        copy["summary"] = f"OpenAI-compatible {route} (answered by /invocations)"
        paths[route] = {"post": copy}


@builtin("hoist-schemas")
class HoistSchemas(Step):
    """Move inline request and response schemas into ``components/schemas`` under stable names
    (``<operationId>-request`` / ``<operationId>-response``) so APIM's developer portal lists them.
    Run after ``operation-ids``.

    before: ``"requestBody": {"content": {"application/json": {"schema": {…}}}}``
    after:  ``… {"schema": {"$ref": "#/components/schemas/invoke-churn-3-request"}}`` and the schema under
    ``components.schemas``.
    """


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
        self.takes(("title", "description", "version"), where)

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:
        info = doc.setdefault("info", {})
        for key, template in self.params.items():
            info[key] = render(str(template), ctx)
