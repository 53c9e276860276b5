"""The ``serving-inputs`` step: an invocation's request schema accepts every body the endpoint accepts.

Chat and responses schemas are widened always (their messages and input as MLflow takes them); a custom model's
variants only when APIM validates requests (``apis.validate_requests``): then the other MLflow input fields
(dataframe_split included, loosely, without prefixItems) and unwrapped LLM bodies join its own variants, while the
developer portal otherwise shows the model's own variants only.

APIM's validate-content (``apis.validate_requests``) refuses what the imported request schema refuses, so the
schema must not be narrower than serving. What serving accepts is MLflow's rule (held to its own validators in
tests/data/payloads/verdicts.json):

- a custom (pyfunc) model takes exactly one of ``dataframe_split``, ``dataframe_records``, ``instances``,
  ``inputs``, or an unwrapped LLM body with ``messages``, ``prompt`` or ``input`` (mlflow/pyfunc/scoring_server,
  mlflow/pyfunc/utils/serving_data_parser.py), whatever its signature lists;
- a chat endpoint takes messages with any role and content as text, parts (images) or null beside tool calls
  (ChatCompletionRequest, ChatAgentRequest), where a spec may list ``role: enum [user, assistant]``;
- a responses agent takes ``input`` as a list of messages or output items (ResponsesAgentRequest).
"""

from __future__ import annotations

import json
from typing import Any

from apimsync.kinds import task_of
from apimsync.task_schemas import MESSAGE
from apimsync.transform.context import TransformContext
from apimsync.transform.steps import Step, builtin
from apimsync.transform.walk import operations

INPUT_FIELDS = ("dataframe_split", "dataframe_records", "instances", "inputs")
# an unwrapped LLM body: no data parsing, whatever the model's signature (serving_data_parser.SUPPORTED_LLM_FORMATS)
LLM_BODY = {"type": "object", "description": "an unwrapped LLM request (messages, prompt or input)",
            "anyOf": [{"required": ["messages"]}, {"required": ["prompt"]}, {"required": ["input"]}]}


@builtin("serving-inputs")
class ServingInputs(Step):
    """Widen each invocation's request schema to what Databricks serving accepts (see the module docstring).

    before: ``{"properties": {"dataframe_records": …}, "required": ["dataframe_records"]}`` (a custom model)
    after:  ``{"oneOf": [{… dataframe_records …}, {"required": ["dataframe_split"], …}, …, {"anyOf":
    [{"required": ["messages"]}, …]}]}``; chat: ``messages.items`` takes any role and content.
    """

    def apply(self, doc: dict[str, Any], ctx: TransformContext) -> None:
        for path, method, op in operations(doc):
            if method != "post" or not str(path).endswith("/invocations"):
                continue
            content = (op.get("requestBody") or {}).get("content") if isinstance(op.get("requestBody"), dict) \
                else None
            media = content.get("application/json") if isinstance(content, dict) else None
            schema = media.get("schema") if isinstance(media, dict) else None
            if not isinstance(media, dict) or not isinstance(schema, dict):
                continue
            media["schema"] = _widened(schema, ctx.task, ctx.validate_requests)


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _widened(schema: dict[str, Any], task_name: str | None, validated: bool) -> dict[str, Any]:
    props = schema.get("properties")
    task = task_of(task_name)
    if task is not None and isinstance(props, dict) and task.body_field in props \
            and (isinstance(props[task.body_field], dict) or not task.chat):
        body = task.body_field
        if task.chat:
            props[body] = {**props[body], "items": _copy(MESSAGE)}
            props[body].pop("prefixItems", None)
        elif task.replace_body:
            props[body] = _copy(task.schemas[0]["properties"][body])
        return _requiring(schema, body)
    branches = _input_branches(schema)
    if branches is None or not validated:  # the portal shows the model's own variants; validation needs them all
        return schema
    offered = {k for b in branches for k in b.get("properties", {}) if k in INPUT_FIELDS}
    loose = [{"type": "object", "required": [key], "properties": {key: {}, "params": {"type": "object"}}}
             for key in INPUT_FIELDS if key not in offered]
    llm = _copy(LLM_BODY)
    if task is not None and task.chat:  # an unwrapped body is a chat request (ChatCompletionRequest, ChatAgentRequest)
        llm = {"type": "object", "required": ["messages"], "properties": {
            "messages": {"type": "array", "minItems": 1, "items": _copy(MESSAGE)}}}
    return {"oneOf": [*branches, *loose, llm]}


def _requiring(schema: dict[str, Any], field: str) -> dict[str, Any]:
    """The schema with ``field`` required: the request is refused without it (MLflow's validators)."""
    required = schema.get("required")
    schema["required"] = [*required, field] if isinstance(required, list) and field not in required else (
        required if isinstance(required, list) else [field])
    return schema


def _input_branches(schema: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The branches of a custom model's request schema (each keyed by an MLflow input field), or None when the
    schema is not one (a chat or embeddings body, a schema of the user's own)."""
    for key in ("oneOf", "anyOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and set(schema) <= {key, "type", "description"}:
            if branches and all(_keyed(b) for b in branches):
                return branches
            return None
    return [schema] if _keyed(schema) else None


def _keyed(branch: Any) -> bool:
    props = branch.get("properties") if isinstance(branch, dict) else None
    return isinstance(props, dict) and bool(props) and set(props) <= {*INPUT_FIELDS, "params"} and any(
        k in INPUT_FIELDS for k in props)
