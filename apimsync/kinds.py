"""Endpoint kinds: everything apimsync does differently per kind of serving endpoint, in two tables.

An endpoint has a *task* (what its requests look like: ``llm/v1/chat``, ``agent/v1/responses``…; a custom model
has none) and a *kind* (how it is served: custom model, external model, agent, pay-per-token foundation model,
route-optimized), which decides whether it is selected, where its backend is and which credential reaches it.
``TASKS`` and ``KINDS`` hold one record each; ``Endpoint.kind`` and ``task_of`` look them up. A new kind or task
is one record here plus its fixture; the README's per-kind tables are generated from these records
(``python -m apimsync.readme``; a test compares).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from apimsync import task_schemas as schemas

FOUNDATION_MODEL_API = "FOUNDATION_MODEL_API"  # endpoint_type of the pay-per-token system endpoints
EXTERNAL_MODEL = "EXTERNAL_MODEL"


@dataclass(frozen=True)
class Task:
    """What the requests of one task look like, and what apimsync does with them."""

    name: str  # as Databricks reports it
    request: Mapping[str, Any]  # what verify sends; MLflow's validators accept it (tests/data/payloads/verdicts.json)
    schemas: schemas.SchemaPair  # (request, response) of the spec synthesized when Databricks serves none
    body_field: str  # the field every request carries; MLflow's validators refuse a request without it
    chat: bool = False  # its messages are chat messages: any role, content text, parts or null beside tool calls
    replace_body: bool = False  # the spec's own schema of body_field gives way to ours (a real spec may not match
    #                             what the endpoint accepts: a Responses input typed as a string)
    openai_route: str | None = None  # served OpenAI-compatibly (Databricks' Foundation model REST API reference)
    llm_policies: bool = False  # its answer carries OpenAI ``usage``: the LLM token policies count it

    @property
    def openai_operation_id(self) -> str | None:
        """The operation id of the OpenAI route (``openai-chat-completions``): the gateway rewrites exactly it."""
        return "openai-" + self.openai_route.strip("/").replace("/", "-") if self.openai_route else None

    def spec(self, endpoint: str) -> dict[str, Any]:
        """An OpenAPI 3.1 document with ``POST /invocations`` for an endpoint of this task."""
        request, response = self.schemas
        return {"openapi": "3.1.0", "info": {"title": endpoint, "version": "synthesized",
                                             "description": f"Synthesized by apimsync from the endpoint's task "
                                                            f"{self.name}"},
                "paths": {"/invocations": {"post": {
                    "summary": f"Invoke {endpoint} ({self.name})",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
                    "responses": {"200": {"description": "Successful operation",
                                          "content": {"application/json": {"schema": response}}}}}}}}


_HELLO = [{"role": "user", "content": "Hello"}]  # a user turn with content: what every chat validator accepts
TASKS: dict[str, Task] = {t.name: t for t in (
    Task("llm/v1/chat", {"messages": _HELLO}, schemas.CHAT, "messages", chat=True, openai_route="/chat/completions",
         llm_policies=True),
    Task("llm/v1/completions", {"prompt": "Hello"}, schemas.COMPLETIONS, "prompt", openai_route="/completions",
         llm_policies=True),
    Task("llm/v1/embeddings", {"input": "Hello"}, schemas.EMBEDDINGS, "input", openai_route="/embeddings"),
    # chat and completions answers carry OpenAI usage (Foundation model REST API reference); embeddings have no
    # completion tokens; agents answer with ChatAgent messages or Responses output items, which carry none
    # (mlflow.types.agent, mlflow.types.responses): a token limit or metric on them would count nothing
    Task("agent/v1/chat", {"messages": _HELLO}, schemas.CHAT, "messages", chat=True),
    Task("agent/v2/chat", {"messages": _HELLO}, schemas.CHAT, "messages", chat=True),
    # ResponsesAgentRequest.input is a list of messages or output items, never a string (mlflow.types.responses)
    Task("agent/v1/responses", {"input": _HELLO}, schemas.RESPONSES, "input", replace_body=True),
)}


def task_of(name: str | None) -> Task | None:
    """The record of a task, or None for a task without one (custom models, a task Databricks adds later)."""
    return TASKS.get(name or "")


class Listed(Protocol):
    """What a kind is recognised by: fields of the endpoint as listed (:class:`apimsync.source.Endpoint`)."""

    @property
    def task(self) -> str | None: ...

    @property
    def endpoint_type(self) -> str | None: ...

    @property
    def route_optimized(self) -> bool: ...


@dataclass(frozen=True)
class Kind:
    """How one kind of endpoint is recognised and published; the text columns are the README's table."""

    name: str
    recognised: Callable[[Listed], bool]
    lists: str  # how the list shows it
    published: str
    credential: str
    verify: str  # what verify sends
    selected_by_default: bool = True  # else only with select.foundation_models or its exact name in include
    oauth_only: bool = False  # only an OAuth policy reaches it: without policy.oauth it is skipped with a reason
    own_schema: bool = True  # Databricks may serve its /openapi (else a 4xx there means "build it from the task")


CUSTOM_CREDENTIAL = "the workspace's token named value, or APIM's managed identity"
KINDS: tuple[Kind, ...] = (  # in the README's order; the last that recognises an endpoint is its kind
    Kind("custom model (MLflow), A/B (several served entities)", lambda ep: True,
         "`served_entities` (+ the deprecated `served_models`)",
         "`POST /invocations` with the schema Databricks serves (+ per-entity routes with `served_model_routes`)",
         CUSTOM_CREDENTIAL, "the request of its task when it has one (below), else the spec's example, else the "
         "smallest body its schema allows"),
    Kind("external model (chat, completions, embeddings)", lambda ep: ep.endpoint_type == EXTERNAL_MODEL,
         "`endpoint_type: EXTERNAL_MODEL`, `external_model`", "`POST /invocations` with the endpoint's schema",
         CUSTOM_CREDENTIAL, "the request of its task"),
    Kind("agent (`agent/v1/chat`, `agent/v2/chat`, `agent/v1/responses`), including Agent Bricks (`mas-*`, "
         "`\"config\": {}`)", lambda ep: (ep.task or "").startswith("agent/"), "`task`",
         "`POST /invocations`; where Databricks serves no schema, one built from the task (chat messages, or the "
         "Responses shape `input` → `output`), noted in the plan as \"spec synthesized\" (also when `/openapi` "
         "answers a client error for an endpoint that lists no served entity)", CUSTOM_CREDENTIAL,
         "the request of its task"),
    Kind("pay-per-token foundation model (`databricks-*`)", lambda ep: ep.endpoint_type == FOUNDATION_MODEL_API,
         "`endpoint_type: FOUNDATION_MODEL_API`, `foundation_model`",
         "**not selected by default**; with `select.foundation_models: true` or its exact name in `include`: "
         "`POST /invocations` with its schema or one built from the task (chat, completions, embeddings)",
         CUSTOM_CREDENTIAL, "the request of its task", selected_by_default=False, own_schema=False),
    Kind("route-optimized", lambda ep: ep.route_optimized,
         "`route_optimized: true` in the list; `endpoint_url` and `data_plane_info` only in its details, which are "
         "read on every run (the second run keeps the backend the first published)",
         "`POST /invocations` on its own host (`serviceUrl` from `endpoint_url`, checked against the workspace's "
         "cloud)",
         "OAuth only: `policy.oauth` (the `oauth-service-principal` template: its token is scoped with the id from "
         "`data_plane_info.query_info.authorization_details`, and cached per API and endpoint id); without it, "
         "skipped with a reason",
         "as for its kind without route optimization", oauth_only=True),
)


def kind_of(endpoint: Listed) -> Kind:
    """The kind of an endpoint: the last of ``KINDS`` that recognises it (route-optimized wins over the others)."""
    return next(kind for kind in reversed(KINDS) if kind.recognised(endpoint))
