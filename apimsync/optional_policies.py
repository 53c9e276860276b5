"""Policy fragments apimsync adds to an API's inbound section: always the removal of the caller's subscription key
(the workspace never sees it), and optional ones chosen from the settings and the endpoint's task; each value in
them is checked and escaped like a template variable.

- request validation (``apis.validate_requests``): ``validate-content`` against the imported request schema, so a
  malformed payload is refused at the gateway (400) before it costs a model invocation (Learn, "Validate content").
- LLM token limit and metrics (``policy.llm``), for chat, completions and agent endpoints: ``llm-token-limit`` per
  subscription counted from the backend's ``usage``, and ``llm-emit-token-metric`` with the endpoint, the model
  and the subscription as dimensions (Learn, "Limit large language model API token usage" and "Emit metrics for
  consumption of large language model tokens": both name chat completions and responses APIs, not embeddings).
"""

from __future__ import annotations

import re

from apimsync.endpoints import Endpoint
from apimsync.errors import PolicyError
from apimsync.kinds import task_of
from apimsync.policy import policy_value
from apimsync.settings import Settings

KEEP_KEYS_IN_APIM = ('<set-header name="Ocp-Apim-Subscription-Key" exists-action="delete" />'
                     '<set-query-parameter name="subscription-key" exists-action="delete" />')


def _v(value: str) -> str:
    return policy_value(value, "an optional policy's value")


def metric_dimension(name: str) -> str:
    """A served entity's name as a metric dimension value: letters, digits, '.', '_', '-' only (the workspace
    chooses it), at most 64 characters."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:64] or "unnamed"


# what a tier lacks (Learn: llm-token-limit's "Policy availability" names every tier but Consumption; the
# built-in cache: every tier but Consumption); a refused policy answers "Policy is not allowed in 'Consumption'
# sku" (MicrosoftDocs/azure-docs#57081)
NO_TOKEN_LIMIT_TIERS = ("Consumption",)
NO_BUILT_IN_CACHE_TIERS = ("Consumption",)


def optional_policies(ep: Endpoint, settings: Settings, tier: str | None = None) -> tuple[list[str], list[str]]:
    """(inbound fragments, notes for the plan); ``tier``: the service's SKU name, when it matters (PolicyError
    for a policy the tier does not offer)."""
    # always: the caller's subscription key stays in APIM (APIM forwards the header and the query parameter to the
    # backend unless a policy removes them: Learn, "Subscriptions in Azure API Management")
    fragments: list[str] = [KEEP_KEYS_IN_APIM]
    notes: list[str] = []
    if settings.apis.validate_requests:
        fragments.append(
            f'<validate-content unspecified-content-type-action="prevent" '
            f'max-size="{settings.apis.max_request_bytes}" size-exceeded-action="prevent" '
            'errors-variable-name="requestBodyValidation">'
            '<content type="application/json" validate-as="json" action="prevent" /></validate-content>')
        notes.append("request validation")
    llm = settings.policy.llm
    task = task_of(ep.task)
    if llm is not None and task is not None and task.llm_policies:
        if llm.tokens_per_minute:
            if tier in NO_TOKEN_LIMIT_TIERS:
                raise PolicyError(f"policy.llm.tokens_per_minute: llm-token-limit is not available on the {tier} "
                                  "tier (Learn: every tier but Consumption); remove it for this service")
            fragments.append(
                '<llm-token-limit counter-key="@(context.Subscription.Id)" '
                f'tokens-per-minute="{llm.tokens_per_minute}" estimate-prompt-tokens="false" '
                'remaining-tokens-header-name="x-ratelimit-remaining-tokens" />')
            notes.append(f"LLM token limit {llm.tokens_per_minute}/min")
        if llm.emit_metrics:
            model = metric_dimension(ep.served_entities[0]) if ep.served_entities else ep.name
            fragments.append(
                f'<llm-emit-token-metric namespace="{_v(llm.metrics_namespace)}">'
                '<dimension name="Subscription ID" /><dimension name="API ID" />'
                f'<dimension name="endpoint" value="{_v(ep.name)}" /><dimension name="model" value="{_v(model)}" />'
                '</llm-emit-token-metric>')
            notes.append("LLM token metrics")
    if settings.apis.openai_routes and task is not None and task.openai_route:
        # the exact operation id apimsync gives the route (the workspace's operation ids never survive the
        # transform: apimsync/transform/routes.py), so no other operation can switch the rewrite on
        fragments.append(f'<choose><when condition="@(context.Operation.Id == &quot;{task.openai_operation_id}'
                         '&quot;)"><rewrite-uri template="/invocations" copy-unmatched-params="true" /></when>'
                         '</choose>')
        notes.append(f"OpenAI route {task.openai_route}")
    return fragments, notes


_EMPTY_INBOUND = re.compile(r"<inbound\b([^>]*?)\s*/>")
_INBOUND = re.compile(r"(<inbound\b[^>]*>\s*(?:<base\s*/>)?)")
_POLICIES = re.compile(r"(<policies\b[^>]*>)")


def add_inbound(xml: str, fragments: list[str]) -> str:
    """The policy with ``fragments`` first in its inbound section (after ``<base />``)."""
    if not fragments:
        return xml
    joined = "".join(fragments)
    for pattern, put in ((_EMPTY_INBOUND, lambda m: f"<inbound{m.group(1)}>{joined}</inbound>"),
                         (_INBOUND, lambda m: m.group(1) + joined),
                         (_POLICIES, lambda m: f"{m.group(1)}<inbound><base />{joined}</inbound>")):
        added, n = pattern.subn(put, xml, count=1)
        if n:
            return added
    raise PolicyError("the policy has no <policies> element to add apimsync's optional policies to")
