"""The pipeline engine: an ordered list of steps read from a YAML file in ``transforms/``; pure on specs.

File shape::

    steps:
      - drop-input-variants: {drop: [dataframe_split]}
      - rewrite-servers: {url: "{server_url}"}
        when: {endpoints: ["churn-*"], tags: {team: ml}}     # optional: only for matching endpoints
"""

from __future__ import annotations

import fnmatch
import marshal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from apimsync.bundled import resolve
from apimsync.errors import PipelineError
from apimsync.files import load_yaml, read_text
from apimsync.transform import input_steps as _input_steps  # noqa: F401  (registers serving-inputs)
from apimsync.transform import schema_steps as _schema_steps  # noqa: F401  (registers the schema steps)
from apimsync.transform import user_steps as _user_steps  # noqa: F401  (registers overlay and jsonpath)
from apimsync.transform.context import TransformContext
from apimsync.transform.steps import REGISTRY, Step
from apimsync.transform.walk import visit_schemas


def default_pipeline() -> Path:
    return resolve("transforms", "databricks-serving", ".yaml")


class Pipeline:
    """Steps loaded from a file; :meth:`run` returns a new document and never touches its input."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps

    def run(self, spec: Mapping[str, Any], ctx: TransformContext, *, owned: bool = False) -> dict[str, Any]:
        """The transformed document. The input stays as it is (a fast structural copy is transformed), unless the
        caller hands it over (``owned``: a spec just loaded, used for nothing else)."""
        doc: dict[str, Any] = dict(spec) if owned else marshal.loads(marshal.dumps(dict(spec)))
        steps = [s for s in self.steps if _applies(s.when, ctx)]
        i = 0
        while i < len(steps):
            if steps[i].kind != "schema":
                steps[i].apply(doc, ctx)
                i += 1
                continue
            group = []
            while i < len(steps) and steps[i].kind == "schema":
                group.append(steps[i])
                i += 1
            for step in group:  # document-level parts of schema steps (e.g. downconvert's `openapi: 3.0.3`)
                document = getattr(step, "document", None)
                if document is not None:
                    document(doc)
            visit_schemas(doc, group[0].visit if len(group) == 1 else _chain([s.visit for s in group]))
        return doc


def _chain(visitors: list[Callable[[dict[str, Any]], None]]) -> Callable[[dict[str, Any]], None]:
    def visit_all(node: dict[str, Any]) -> None:
        for visit in visitors:
            visit(node)

    return visit_all


def _applies(when: Mapping[str, Any], ctx: TransformContext) -> bool:
    globs = when.get("endpoints")
    if globs and not any(fnmatch.fnmatchcase(ctx.endpoint, g) for g in globs):
        return False
    tags = when.get("tags") or {}
    return all(ctx.tags.get(k) is not None and (v == "*" or ctx.tags.get(k) == str(v)) for k, v in tags.items())


def load_pipeline(path: str | Path | None = None) -> Pipeline:
    """Load a pipeline file (None: the shipped default); ``"none"`` is the empty pipeline."""
    if path is not None and str(path) == "none":
        return Pipeline([])
    file = default_pipeline() if path is None else resolve("transforms", path, ".yaml")
    if not file.exists():
        raise PipelineError(f"{file}: pipeline file not found")
    try:
        data = load_yaml(read_text(file, PipelineError))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PipelineError(f"{file}: not valid YAML" + (f" (line {mark.line + 1})" if mark else "")) from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise PipelineError(f"{file}: expected a mapping with a 'steps' list")
    unknown = set(data) - {"steps", "description"}
    if unknown:
        raise PipelineError(f"{file}: unknown key(s) {', '.join(sorted(unknown))}")
    steps = []
    for index, entry in enumerate(data["steps"], 1):
        where = f"{file}: step {index}"
        if not isinstance(entry, dict):
            raise PipelineError(f"{where}: expected a mapping like '- step-name: {{...}}'")
        names = [k for k in entry if k != "when"]
        if len(names) != 1:
            raise PipelineError(f"{where}: expected one step name, got {', '.join(map(str, names)) or 'none'}")
        name = names[0]
        if name not in REGISTRY:
            raise PipelineError(f"{where}: unknown step '{name}' (known: {', '.join(sorted(REGISTRY))})")
        params = entry[name] or {}
        if not isinstance(params, dict):
            raise PipelineError(f"{where}: parameters of '{name}' must be a mapping")
        if name == "overlay":
            params = {**params, "base": str(file.parent)}
        step = REGISTRY[name](params, f"{where} ({name})")
        when = entry.get("when") or {}
        if not isinstance(when, dict) or set(when) - {"endpoints", "tags"}:
            raise PipelineError(f"{where}: 'when' takes 'endpoints' (globs) and 'tags' (a mapping)")
        step.when = when
        steps.append(step)
    return Pipeline(steps)
