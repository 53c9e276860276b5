"""The Databricks data plane: querying serving endpoints (who may do it: :mod:`apimsync.emulators.identities`).

- ``POST /serving-endpoints/{name}/invocations`` (the traffic split of the endpoint's served entities) and
  ``POST /serving-endpoints/{name}/served-models/{entity}/invocations`` on the workspace host;
- route-optimized endpoints answer only on their own host (a second listener standing in for
  ``https://<id>.<n>.serving.azuredatabricks.net/<workspace-id>/serving-endpoints/<name>/invocations``) and only to
  OAuth tokens, never to PATs (Databricks docs, "Query route-optimized serving endpoints");
- ``POST /oidc/v1/token``: OAuth client credentials of a service principal, optionally scoped to endpoints with
  ``authorization_details`` (Databricks docs, "Authorize service principal access to Azure Databricks with OAuth");
- Microsoft Entra tokens for the Azure Databricks resource ``2ff814a6-3304-4ab8-85cb-cd0e6f879c1d``, accepted for
  the application ids registered as service principals (what APIM's managed identity presents).

Payloads are checked the way serving does it: custom models take exactly one of ``dataframe_split``,
``dataframe_records``, ``instances``, ``inputs`` (plus ``params``), checked against the endpoint's signature
(its OpenAPI request schema); chat, completions and embeddings tasks take ``messages``, ``prompt``, ``input``.
Answers are deterministic and shaped by the response schema (or OpenAI's shapes for those tasks).
"""

from __future__ import annotations

import base64
import binascii
import collections
import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from apimsync.emulators._server import Request, Response
from apimsync.emulators.identities import error

if TYPE_CHECKING:
    from apimsync.emulators.databricks import DatabricksEmulator

INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_CHAT_TASKS = ("llm/v1/chat", "agent/v1/chat", "agent/v2/chat")


class DataPlane:
    """Answers queries for the endpoints of one :class:`DatabricksEmulator`."""

    def __init__(self, workspace: DatabricksEmulator) -> None:
        self.workspace = workspace
        self._lock = threading.Lock()
        self._counters: dict[str, itertools.count[int]] = {}
        self.tokens_issued = 0  # OAuth tokens minted by /oidc/v1/token
        self.calls: dict[str, int] = {}  # "<endpoint>/<served entity>" -> answered queries
        # the last queries as they arrived (headers, query string): what a gateway forwards, for tests to read
        self.received: collections.deque[Request] = collections.deque(maxlen=200)
        self.stream_times: list[float] = []  # when each event of the last streamed answer was produced (monotonic)

    # -- OAuth ----------------------------------------------------------------------------------------

    def token(self, request: Request) -> Response:
        """``POST /oidc/v1/token`` with ``grant_type=client_credentials``; client id and secret by HTTP basic
        auth or in the form; optional ``authorization_details`` naming ``serving-endpoints`` objects."""
        form = dict(parse_qsl(request.body.decode("utf-8", "replace")))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, binascii.Error):
                client_id = secret = None
        if form.get("grant_type") != "client_credentials":
            return Response.json(400, {"error": "unsupported_grant_type",
                                       "error_description": "grant_type must be client_credentials"})
        known = self.workspace.identities.service_principals
        if not client_id or known.get(client_id) != secret:
            return Response.json(401, {"error": "invalid_client", "error_description": "Client authentication failed"})
        endpoints: frozenset[str] | None = None
        if form.get("authorization_details"):
            try:
                details = json.loads(form["authorization_details"])
                endpoints = frozenset(  # object_path names the endpoint by its id
                    str(d["object_path"]).rsplit("/", 1)[-1] for d in details
                    if d.get("object_type") == "serving-endpoints"
                    and "query_inference_endpoint" in d.get("actions", []))
            except (ValueError, TypeError, KeyError, AttributeError):
                return Response.json(400, {"error": "invalid_request",
                                           "error_description": "authorization_details is not valid"})
        token, lifetime = self.workspace.identities.mint(client_id, endpoints)
        self.tokens_issued += 1
        return Response.json(200, {"access_token": token, "token_type": "Bearer", "expires_in": lifetime,
                                   "scope": form.get("scope", "all-apis")})

    # -- queries --------------------------------------------------------------------------------------

    def invoke(self, request: Request, name: str, entity: str | None, *, dedicated_host: bool) -> Response:
        self.received.append(request)
        if request.method != "POST":
            return error(405, "ENDPOINT_NOT_FOUND", f"{request.method} is not supported for invocations")
        item, spec = self.workspace.endpoint_and_spec(name)
        if item is None:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint with name '{name}' does not exist.")
        route_optimized = bool(item.get("route_optimized"))
        if route_optimized and not dedicated_host:
            return error(400, "BAD_REQUEST", f"Endpoint '{name}' is route-optimized: query it on its own URL "
                                             f"({self.workspace.endpoint_url(item)}).")
        if dedicated_host and not route_optimized:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Endpoint '{name}' is not served on this host.")
        refused = self.workspace.identities.refuse(request.bearer_token, str(item.get("id") or name),
                                                   oauth_only=route_optimized)
        if refused is not None:
            return refused
        if (item.get("state") or {}).get("ready") != "READY":
            return error(400, "INVALID_STATE", f"Endpoint '{name}' is not ready to serve requests.")
        entities = [e.get("name") for e in (item.get("config") or {}).get("served_entities", [])]
        if entity is None:  # Agent Bricks endpoints list no served entity ("config": {}): the endpoint answers
            routes = self.workspace.traffic(item)
            entity = self._route(name, routes) if routes else name
        elif entity not in entities:
            return error(404, "RESOURCE_DOES_NOT_EXIST", f"Served model '{entity}' does not exist in endpoint "
                                                         f"'{name}'.")
        try:
            body = json.loads(request.body.decode("utf-8")) if request.body else None
        except (UnicodeDecodeError, ValueError):
            return error(400, "MALFORMED_REQUEST", "Invalid JSON in the request body.")
        operation = _operation(spec, entity)
        problem = check_payload(item.get("task"), operation, body)
        if problem or not isinstance(body, dict):
            return error(400, "BAD_REQUEST", problem or "The request body must be a JSON object.")
        with self._lock:
            key = f"{name}/{entity}"
            self.calls[key] = self.calls.get(key, 0) + 1
        result = answer(item.get("task"), operation, body, entity)
        if body.get("stream") is True and item.get("task") in ("llm/v1/chat", "agent/v1/chat"):
            return stream(result, self.stream_times)
        return Response.json(200, result)

    def _route(self, name: str, routes: list[tuple[str, int]]) -> str:
        """The served entity for the next query: a deterministic walk through the traffic percentages."""
        with self._lock:
            n = next(self._counters.setdefault(name, itertools.count())) % 100
        for entity, share in routes:
            if n < share:
                return entity
            n -= share
        return routes[-1][0]


# -- payloads and answers --------------------------------------------------------------------------------

def _operation(spec: str | None, entity: str) -> dict[str, Any]:
    """The OpenAPI operation of one served entity ({} when the endpoint has no schema)."""
    if not spec:
        return {}
    try:
        doc = json.loads(spec)
    except ValueError:
        return {}
    paths = doc.get("paths") or {}
    op = (paths.get(f"/served-models/{entity}/invocations") or {}).get("post")
    return op if isinstance(op, dict) else {}


def _request_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json") or {}
    schema = content.get("schema")
    return schema if isinstance(schema, dict) else None


LLM_KEYS = ("messages", "prompt", "input")  # mlflow.pyfunc.utils.serving_data_parser.SUPPORTED_LLM_FORMATS


def check_payload(task: str | None, operation: dict[str, Any], body: Any) -> str | None:
    """Why serving would refuse ``body`` (None when it would score it): MLflow's own rules per kind of model,
    held to the verdicts MLflow gives (tests/data/payloads/verdicts.json, written by mlflow_verdicts.py):

    - a custom pyfunc model: the scoring server takes an unwrapped LLM body (``messages``, ``prompt``, ``input``)
      as it is, else exactly one of the four input fields (other keys, ``params`` aside, are ignored), checked
      against the model's signature;
    - chat (``llm/v1/chat``, ``agent/v1/chat``, ``agent/v2/chat``): a non-empty list of messages, each with a
      role (content may be text, a list of parts, or null beside tool calls);
    - ``agent/v1/responses``: ``input`` as a list of messages or output items, never a string;
    - completions and embeddings: ``prompt`` and ``input``."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if task in _CHAT_TASKS:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "Missing required field 'messages' (a non-empty list)."
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                return f"messages.{i}.role: Field required"
        return None
    if task == "llm/v1/embeddings":
        return None if "input" in body else "Missing required field 'input'."
    if task == "llm/v1/completions":
        return None if "prompt" in body else "Missing required field 'prompt'."
    if task == "agent/v1/responses":
        if "input" not in body and "messages" in body:
            return "'messages' field is not supported. Please use 'input' field instead."
        items = body.get("input")
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            return "input: Input should be a valid list"
        return None
    if task is not None:
        return None
    if any(key in body for key in LLM_KEYS):  # no data parsing for an unwrapped LLM body (scoring_server)
        return None
    given = [k for k in INPUT_KEYS if k in body]
    if len(given) != 1:  # MLflow's scoring server (mlflow/pyfunc/scoring_server), which serving runs
        return ("The input must be a JSON dictionary with exactly one of the input fields "
                "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}.")
    schema = _request_schema(operation)
    if schema is None:
        return None
    branches = schema.get("oneOf") or schema.get("anyOf")
    if isinstance(branches, list):  # one variant per input format: check the one that was sent
        keyed = [b for b in branches if isinstance(b, dict) and given[0] in (b.get("properties") or {})]
        if not keyed:
            accepted = sorted({k for b in branches if isinstance(b, dict) for k in (b.get("properties") or {})})
            return f"The model's signature accepts the input fields {accepted}; got {sorted(body)}."
        schema = keyed[0]
    return _schema_problem(schema, {k: v for k, v in body.items() if k in (given[0], "params")})


def _schema_problem(schema: dict[str, Any], body: Any) -> str | None:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError, _RefResolutionError

    try:
        found = next(iter(Draft202012Validator(schema).iter_errors(body)), None)
    except (SchemaError, RecursionError, _RefResolutionError):  # a $ref outside the operation's schema: unchecked
        return None
    if found is None:
        return None
    where = "/".join(str(p) for p in found.absolute_path) or "(body)"
    return f"Model input does not match the model signature at '{where}': {found.message}"


def _rows(body: dict[str, Any]) -> int:
    for key in ("dataframe_records", "instances", "inputs"):
        if isinstance(body.get(key), list):
            return max(1, len(body[key]))
    split = body.get("dataframe_split")
    if isinstance(split, dict) and isinstance(split.get("data"), list):
        return max(1, len(split["data"]))
    return 1


def answer(task: str | None, operation: dict[str, Any], body: dict[str, Any], entity: str) -> Any:
    """A deterministic answer in the shape the endpoint documents. Chat and completions carry OpenAI's ``usage``
    (Foundation model REST API reference); agents do not: a ChatAgent answers ``messages``
    (mlflow.types.agent.ChatAgentResponse), a ResponsesAgent ``output`` items, a ChatModel a chat completion whose
    ``usage`` is optional and left out here (mlflow.types.agent's ChatAgentResponse and mlflow.types.responses
    carry none)."""
    if task == "agent/v2/chat":
        return {"messages": [{"role": "assistant", "content": f"Emulated answer from {entity}.", "id": "msg-1"}]}
    if task in _CHAT_TASKS or task == "llm/v1/completions":
        prompt = json.dumps(body.get("messages") or body.get("prompt") or "")
        prompt_tokens = max(1, len(prompt.split()))
        text = f"Emulated answer from {entity}."
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        if task in _CHAT_TASKS:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        completion: dict[str, Any] = {"id": f"chatcmpl-{entity}", "object": "chat.completion" if task in _CHAT_TASKS
                      else "text_completion", "created": 1700000000, "model": entity, "choices": [choice]}
        if task.startswith("llm/"):
            completion["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": 5,
                                   "total_tokens": prompt_tokens + 5}
        return completion
    if task == "agent/v1/responses":  # the OpenAI Responses shape
        return {"id": f"resp-{entity}", "object": "response", "created_at": 1700000000, "model": entity,
                "output": [{"type": "message", "id": "msg-1", "role": "assistant", "status": "completed",
                            "content": [{"type": "output_text", "text": f"Emulated answer from {entity}."}]}]}
    if task == "llm/v1/embeddings":
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        return {"object": "list", "model": entity,
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(count)],
                "usage": {"prompt_tokens": count, "total_tokens": count}}
    content = (((operation.get("responses") or {}).get("200") or {}).get("content") or {}).get("application/json")
    schema = (content or {}).get("schema") if isinstance(content, dict) else None
    if isinstance(schema, dict) and "predictions" in (schema.get("properties") or {}):
        item = (schema["properties"]["predictions"] or {}).get("items") or {}
        return {"predictions": [_value(item, 0) for _ in range(_rows(body))]}
    if isinstance(schema, dict) and schema:
        return _value(schema, 0)
    return {"predictions": [0.5] * _rows(body)}


STREAM_INTERVAL = 0.05  # seconds between two events of a streamed answer: a model produces tokens over time


def stream(completion: dict[str, Any], times: list[float] | None = None) -> Response:
    """A chat completion as server-sent events of ``chat.completion.chunk`` objects, ``data: [DONE]`` last: how
    Databricks streams chat with ``"stream": true`` (the OpenAI streaming format), one event every
    ``STREAM_INTERVAL`` seconds; ``times`` gets when each was produced."""
    base = {k: completion[k] for k in ("id", "created", "model")}
    text = completion["choices"][0]["message"]["content"]
    words = text.split(" ")
    chunks = [{**base, "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    chunks += [{**base, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {
        "content": w if i == 0 else " " + w}, "finish_reason": None}]} for i, w in enumerate(words)]
    chunks.append({**base, "object": "chat.completion.chunk", "usage": completion.get("usage"),
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]
    produced = times if times is not None else []
    produced.clear()

    def produce() -> Iterator[bytes]:
        for i, event in enumerate(events):
            if i:
                time.sleep(STREAM_INTERVAL)
            produced.append(time.monotonic())
            yield event

    return Response(200, b"", {"Content-Type": "text/event-stream"}, stream=produce())


def _value(schema: Any, depth: int) -> Any:
    """A full, deterministic instance of a schema (every property; arrays of one item)."""
    if not isinstance(schema, dict) or depth > 12:
        return 0.5
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("oneOf", "anyOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return _value(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        return {k: _value(v, depth + 1) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_value(schema.get("items") or {}, depth + 1)]
    return {"string": "emulated", "integer": 1, "number": 0.5, "boolean": True}.get(str(kind), 0.5)


def dedicated_path(path: str) -> tuple[str, str] | None:
    """``/<workspace-id>/serving-endpoints/<name>/invocations`` → (workspace id, endpoint name)."""
    parts = unquote(path).strip("/").split("/")
    if len(parts) == 4 and parts[1] == "serving-endpoints" and parts[3] == "invocations":
        return parts[0], parts[2]
    return None
