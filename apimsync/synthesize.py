"""OpenAPI documents for endpoints Databricks serves no schema for, built from the endpoint's ``task``.

Foundation-model, external-model and agent endpoints speak OpenAI-compatible request and response shapes
(Databricks "Foundation model REST API reference": chat, completions, embeddings; agents: the OpenAI Responses shape
for ``agent/v1/responses``, chat messages for ``agent/v1/chat`` and ``agent/v2/chat``). The documents below hold
the fields those pages list; what is not listed is allowed (``additionalProperties`` is left open), so a newer
field never makes APIM refuse a request. The plan says which specs were synthesized.
"""

from __future__ import annotations

from typing import Any

_STRING_OR_LIST = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_USAGE = {"type": "object", "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {
    "type": "integer"}, "total_tokens": {"type": "integer"}}}
_SAMPLING = {"max_tokens": {"type": "integer", "minimum": 1}, "temperature": {"type": "number", "minimum": 0},
             "top_p": {"type": "number", "minimum": 0, "maximum": 1}, "top_k": {"type": "integer", "minimum": 1},
             "stop": _STRING_OR_LIST, "n": {"type": "integer", "minimum": 1}, "stream": {"type": "boolean"}}
# a chat message as MLflow's validators take it (ChatCompletionRequest, ChatAgentRequest): a role is required;
# content is text, a list of parts (text, image_url, ...) or null beside tool_calls: any value, described
MESSAGE = {"type": "object", "required": ["role"], "properties": {
    "role": {"type": "string", "description": "system, user, assistant, tool, ..."},
    "content": {"description": "text, a list of content parts, or null beside tool_calls"}}}
_MESSAGES = {"type": "array", "minItems": 1, "items": MESSAGE}
# ResponsesAgentRequest.input: a list of messages or output items, never a string (mlflow.types.responses)
RESPONSES_INPUT = {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
    "role": {"type": "string"}, "content": {"description": "text or a list of content parts"}}}}

_CHAT = (
    {"type": "object", "required": ["messages"], "properties": {"messages": _MESSAGES, **_SAMPLING}},
    {"type": "object", "properties": {
        "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion"]},
        "created": {"type": "integer"}, "model": {"type": "string"}, "usage": _USAGE,
        "choices": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "finish_reason": {"type": "string"},
            "message": {"type": "object", "properties": {"role": {"type": "string"}, "content": {
                "type": "string"}}}}}}}})
_COMPLETIONS = (
    {"type": "object", "required": ["prompt"], "properties": {"prompt": _STRING_OR_LIST, **_SAMPLING}},
    {"type": "object", "properties": {
        "id": {"type": "string"}, "object": {"type": "string", "enum": ["text_completion"]},
        "created": {"type": "integer"}, "model": {"type": "string"}, "usage": _USAGE,
        "choices": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "text": {"type": "string"}, "finish_reason": {"type": "string"}}}}}})
_EMBEDDINGS = (
    {"type": "object", "required": ["input"], "properties": {"input": _STRING_OR_LIST}},
    {"type": "object", "properties": {
        "object": {"type": "string", "enum": ["list"]}, "model": {"type": "string"}, "usage": _USAGE,
        "data": {"type": "array", "items": {"type": "object", "properties": {
            "object": {"type": "string"}, "index": {"type": "integer"},
            "embedding": {"type": "array", "items": {"type": "number"}}}}}}})
_RESPONSES = (
    {"type": "object", "required": ["input"], "properties": {
        "input": RESPONSES_INPUT,
        "stream": {"type": "boolean"}}},
    {"type": "object", "properties": {
        "id": {"type": "string"}, "object": {"type": "string", "enum": ["response"]},
        "output": {"type": "array", "items": {"type": "object", "properties": {
            "type": {"type": "string"}, "role": {"type": "string"},
            "content": {"type": "array", "items": {"type": "object", "properties": {
                "type": {"type": "string"}, "text": {"type": "string"}}}}}}}}})

SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "llm/v1/chat": _CHAT, "agent/v1/chat": _CHAT, "agent/v2/chat": _CHAT, "llm/v1/completions": _COMPLETIONS,
    "llm/v1/embeddings": _EMBEDDINGS, "agent/v1/responses": _RESPONSES}


def spec_for_task(task: str | None, endpoint: str) -> dict[str, Any] | None:
    """An OpenAPI 3.1 document with ``POST /invocations`` for ``task``, or None for a task without a known shape."""
    shape = SHAPES.get(task or "")
    if shape is None:
        return None
    request, response = shape
    return {"openapi": "3.1.0", "info": {"title": endpoint, "version": "synthesized",
                                         "description": f"Synthesized by apimsync from the endpoint's task {task}"},
            "paths": {"/invocations": {"post": {
                "summary": f"Invoke {endpoint} ({task})",
                "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
                "responses": {"200": {"description": "Successful operation",
                                      "content": {"application/json": {"schema": response}}}}}}}}
