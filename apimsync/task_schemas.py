"""The request and response schemas of each task, for endpoints Databricks serves no schema for
(:mod:`apimsync.kinds` builds their OpenAPI document).

Foundation-model, external-model and agent endpoints speak OpenAI-compatible request and response shapes
(Databricks "Foundation model REST API reference": chat, completions, embeddings; agents: the OpenAI Responses shape
for ``agent/v1/responses``, chat messages for ``agent/v1/chat`` and ``agent/v2/chat``). The schemas below hold
the fields those pages list; what is not listed is allowed (``additionalProperties`` is left open), so a newer
field never makes APIM refuse a request.
"""

from __future__ import annotations

from typing import Any

SchemaPair = tuple[dict[str, Any], dict[str, Any]]  # (request, response)

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

CHAT: SchemaPair = (
    {"type": "object", "required": ["messages"], "properties": {"messages": _MESSAGES, **_SAMPLING}},
    {"type": "object", "properties": {
        "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion"]},
        "created": {"type": "integer"}, "model": {"type": "string"}, "usage": _USAGE,
        "choices": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "finish_reason": {"type": "string"},
            "message": {"type": "object", "properties": {"role": {"type": "string"}, "content": {
                "type": "string"}}}}}}}})
COMPLETIONS: SchemaPair = (
    {"type": "object", "required": ["prompt"], "properties": {"prompt": _STRING_OR_LIST, **_SAMPLING}},
    {"type": "object", "properties": {
        "id": {"type": "string"}, "object": {"type": "string", "enum": ["text_completion"]},
        "created": {"type": "integer"}, "model": {"type": "string"}, "usage": _USAGE,
        "choices": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "text": {"type": "string"}, "finish_reason": {"type": "string"}}}}}})
EMBEDDINGS: SchemaPair = (
    {"type": "object", "required": ["input"], "properties": {"input": _STRING_OR_LIST}},
    {"type": "object", "properties": {
        "object": {"type": "string", "enum": ["list"]}, "model": {"type": "string"}, "usage": _USAGE,
        "data": {"type": "array", "items": {"type": "object", "properties": {
            "object": {"type": "string"}, "index": {"type": "integer"},
            "embedding": {"type": "array", "items": {"type": "number"}}}}}}})
RESPONSES: SchemaPair = (
    {"type": "object", "required": ["input"], "properties": {
        "input": RESPONSES_INPUT,
        "stream": {"type": "boolean"}}},
    {"type": "object", "properties": {
        "id": {"type": "string"}, "object": {"type": "string", "enum": ["response"]},
        "output": {"type": "array", "items": {"type": "object", "properties": {
            "type": {"type": "string"}, "role": {"type": "string"},
            "content": {"type": "array", "items": {"type": "object", "properties": {
                "type": {"type": "string"}, "text": {"type": "string"}}}}}}}}})
