"""User steps: OpenAPI Overlay 1.0 documents and the compact ``jsonpath`` step (evaluated with jsonpath-ng)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from apimsync.errors import PipelineError
from apimsync.files import load_yaml, read_text
from apimsync.transform.context import TransformContext
from apimsync.transform.steps import Step, builtin


def compile_path(expression: Any, where: str) -> Any:
    """A compiled jsonpath-ng expression (with filters), or a PipelineError naming the step."""
    from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
    from jsonpath_ng.ext import parse

    if not isinstance(expression, str) or not expression.startswith("$"):
        raise PipelineError(f"{where}: JSONPath must be a string starting with '$', got {expression!r}")
    try:
        return parse(expression)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:
        raise PipelineError(f"{where}: bad JSONPath {expression!r}: {str(exc).splitlines()[0]}") from None


def _merge(target: Any, update: Any) -> Any:
    """Overlay 1.0 merge: objects merge recursively, arrays get the update's items appended, else replaced."""
    if isinstance(target, dict) and isinstance(update, dict):
        for key, value in update.items():
            target[key] = _merge(target[key], value) if key in target else copy.deepcopy(value)
        return target
    if isinstance(target, list):
        target.extend(copy.deepcopy(update) if isinstance(update, list) else [copy.deepcopy(update)])
        return target
    return copy.deepcopy(update)


def _remove(matches: list[Any]) -> None:
    """Delete matched nodes from their parents; array items last-first so indexes stay right."""
    from jsonpath_ng.jsonpath import Fields, Index

    by_list: list[tuple[list[Any], int]] = []
    for m in matches:
        parent = m.context.value if m.context is not None else None
        if isinstance(m.path, Fields) and isinstance(parent, dict):
            for name in m.path.fields:
                parent.pop(name, None)
        elif isinstance(m.path, Index) and isinstance(parent, list):
            by_list += [(parent, int(i)) for i in getattr(m.path, "indices", ())]
    for parent, index in sorted(by_list, key=lambda item: item[1], reverse=True):
        if 0 <= index < len(parent):
            del parent[index]


def _update(doc: Any, matches: list[Any], value: Any) -> None:
    for m in matches:
        merged = _merge(m.value, value)
        if merged is not m.value:
            m.full_path.update(doc, merged)


@builtin("overlay")
class Overlay(Step):
    """Apply an OpenAPI Overlay 1.0 document: ``actions`` with a JSONPath ``target`` and ``update`` (merged) or
    ``remove: true``.

    params: ``file`` (relative to the pipeline file).
    before: ``"info": {"title": "x"}`` with an action ``{target: "$.info", update: {"x-team": "ml"}}``
    after:  ``"info": {"title": "x", "x-team": "ml"}``
    """

    def check(self, where: str) -> None:
        self.takes(("file", "base"), where)
        name = self.params.get("file")
        if not isinstance(name, str):
            raise PipelineError(f"{where}: 'file' must name an overlay document")
        path = Path(self.params.get("base", ".")) / name
        if not path.exists():
            raise PipelineError(f"{where}: overlay file not found: {path}")
        try:
            overlay = load_yaml(read_text(path, PipelineError))
        except yaml.YAMLError as exc:
            raise PipelineError(f"{where}: overlay {path} is not valid YAML/JSON: {str(exc).splitlines()[0]}") from None
        if not isinstance(overlay, dict) or not str(overlay.get("overlay", "")).startswith("1."):
            raise PipelineError(f"{where}: {path} is not an Overlay 1.x document (needs 'overlay: 1.0.0')")
        actions = overlay.get("actions")
        if not isinstance(actions, list) or not actions:
            raise PipelineError(f"{where}: {path} has no actions")
        self.actions = []
        for i, action in enumerate(actions):
            at = f"{where}: {path.name} action {i + 1}"
            if not isinstance(action, dict) or "target" not in action:
                raise PipelineError(f"{at}: needs a 'target'")
            self.actions.append((compile_path(action["target"], at), action.get("update"),
                                 action.get("remove") is True))

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:
        for path, update, remove in self.actions:
            matches = path.find(doc)
            if remove:
                _remove(matches)
            elif update is not None:
                _update(doc, matches, update)


@builtin("jsonpath")
class JsonPath(Step):
    """A compact user rule: ``remove: <path>``, ``set: <path>`` with ``value``, or ``merge: <path>`` with ``value``.

    before: ``"info": {"title": "x"}``, step ``{jsonpath: {set: "$.info.title", value: "Churn"}}``
    after:  ``"info": {"title": "Churn"}``
    """

    def check(self, where: str) -> None:
        self.takes(("remove", "set", "merge", "value"), where)
        ops = [k for k in ("remove", "set", "merge") if k in self.params]
        if len(ops) != 1:
            raise PipelineError(f"{where}: give exactly one of remove, set, merge")
        self.op = ops[0]
        if self.op != "remove" and "value" not in self.params:
            raise PipelineError(f"{where}: '{self.op}' needs a 'value'")
        self.path = compile_path(self.params[self.op], where)

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:
        if self.op == "remove":
            _remove(self.path.find(doc))
        elif self.op == "set":
            self.path.update_or_create(doc, copy.deepcopy(self.params["value"]))
        else:
            _update(doc, self.path.find(doc), self.params["value"])
