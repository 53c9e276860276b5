"""What a pipeline knows about the endpoint it transforms, and the ``{name}`` templates steps use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from apimsync.errors import PipelineError
from apimsync.naming import render_template


@dataclass(frozen=True)
class TransformContext:
    endpoint: str
    server_url: str
    tags: Mapping[str, str] = field(default_factory=dict)
    served_entities: tuple[str, ...] = ()
    config_version: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    served_model_routes: bool = False  # keep the per-entity routes beside /invocations (add-invocations-path)
    task: str | None = None  # the endpoint's task (llm/v1/chat, ...): what serving-inputs accepts
    openai_routes: bool = True  # openai-routes publishes the task's OpenAI route (apis.openai_routes)
    validate_requests: bool = False  # APIM validates requests against the schema (serving-inputs widens it)

    def values(self) -> dict[str, str]:
        return {"endpoint": self.endpoint, "server_url": self.server_url,
                "config_version": self.config_version or "1", **self.variables}


def render(template: str, ctx: TransformContext, extra: Mapping[str, str] | None = None) -> str:
    return render_template(template, {**ctx.values(), **(extra or {})}, PipelineError)
