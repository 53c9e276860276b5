"""The desired stage: what one fetched endpoint becomes (a :class:`DesiredApi`, a :class:`Skip` or a
:class:`Failure`), which desired APIs collide, and what a named value needs. Pure functions: no I/O; the Engine
hands in the settings, the pipeline and the policy templates.

One endpoint's walk: backend check → naming → transform (the pipeline) → lint → policy (template, credential
variables) → DesiredApi with its ownership marker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from apimsync.backend import backend_problem
from apimsync.changes import Failure, Skip
from apimsync.endpoints import Endpoint, Fetched
from apimsync.errors import ApimsyncError, PolicyError
from apimsync.model import MARKER_MAX, ApiSettingsView, DesiredApi, Marker, short_hash
from apimsync.naming import render_name, sanitize_api_id, sanitize_path
from apimsync.settings import Settings, gateway_auth

if TYPE_CHECKING:
    from apimsync.transform import Pipeline

ROUTE_OPTIMIZED = ("route-optimized: it answers only on its own host and only to OAuth tokens of a service principal; "
                   "configure policy.oauth (client_id, client_secret of a service principal with CAN_QUERY) to publish "
                   "it, rather than publish an API nobody can call")
Templates = Callable[[str], str]  # a policy template's text by name or path


def api_id_for(ep: Endpoint, settings: Settings) -> str | None:
    """The api id the naming gives an endpoint (None when the template cannot make one)."""
    try:
        return sanitize_api_id(render_name(settings.naming.api_id, endpoint=ep.name, workspace=ep.workspace))
    except ApimsyncError:
        return None


def names_for(ep: Endpoint, settings: Settings) -> tuple[str, str] | None:
    """(api id, lower-case path) the naming gives an endpoint, before anything is fetched (None when the templates
    cannot make them): what two endpoints must not share."""
    try:
        names = {"endpoint": ep.name, "workspace": ep.workspace}
        return (sanitize_api_id(render_name(settings.naming.api_id, **names)),
                sanitize_path(render_name(settings.naming.path, **names)).lower())
    except ApimsyncError:
        return None


def source_fingerprint(ep: Endpoint, config: str, *, version: bool = False) -> str:
    """What determines an endpoint's published spec: its served models (names, models, versions), id (a
    re-created endpoint has a new one), task and kind, tags (pipeline ``when``), whether it is route-optimized, and
    what of the configuration shapes specs; its config version too when the pipeline reads ``{config_version}``.

    The endpoint list reports all of it but route optimisation and the config version, which only the details
    name: so an unchanged endpoint needs neither its details nor its spec, unless it is route-optimized (fixed at
    creation: Databricks' docs) or the pipeline reads its config version; then its details are read, not its spec.
    """
    return short_hash([ep.name, ep.id, ep.task, ep.endpoint_type, list(ep.served_models), sorted(ep.tags.items()),
                       ep.route_optimized, ep.config_version if version else None, config])


def build(f: Fetched, settings: Settings, pipeline: Pipeline, templates: Templates, *, source: str = "",
          reuse: Marker | None = None, tier: str | None = None) -> DesiredApi | Skip | Failure:
    """What one fetched endpoint becomes; never raises, whatever the workspace returned. ``reuse``: the marker of
    the API published from an unchanged source, whose spec still holds (it was not fetched)."""
    ep = f.endpoint
    if f.skip_reason:
        return Skip(ep.workspace, ep.name, f.skip_reason, api_id_for(ep, settings))
    reused = f.reused and reuse is not None
    if not reused and (f.error or f.spec is None):
        return Failure(ep.workspace, ep.name, "fetch", f.error or "no spec")
    problem = backend_problem(ep.backend_url, ep.host, settings.apis.backend_hosts)
    if problem:
        return Failure(ep.workspace, ep.name, "backend", problem)
    if ep.kind.oauth_only and gateway_auth(settings, ep.workspace).oauth is None:
        return Skip(ep.workspace, ep.name, ROUTE_OPTIMIZED, api_id_for(ep, settings))
    return _desired(ep, None if reused else f.spec, settings, pipeline, templates, synthesized=f.synthesized,
                    source=source, reuse=reuse if reused else None, tier=tier)


def _desired(ep: Endpoint, spec: dict[str, Any] | None, s: Settings, pipeline: Pipeline, templates: Templates, *,
             synthesized: bool, source: str = "", reuse: Marker | None = None,
             tier: str | None = None) -> DesiredApi | Failure:
    from apimsync.optional_policies import NO_BUILT_IN_CACHE_TIERS, add_inbound, optional_policies
    from apimsync.policy import check_policy, render_policy
    from apimsync.spec import dump_spec
    from apimsync.transform import TransformContext, lint
    from apimsync.transform.routes import published_routes

    names = {"endpoint": ep.name, "workspace": ep.workspace}
    stage = "naming"
    try:
        api_id = sanitize_api_id(render_name(s.naming.api_id, **names))
        view = ApiSettingsView(
            path=sanitize_path(render_name(s.naming.path, **names)),
            display_name=render_name(s.naming.display_name, **names)[:300],
            description=render_name(s.naming.description, **names, task=ep.task or "custom model",
                                    served_models=", ".join(ep.served_models) or "no served model listed"),
            service_url=ep.backend_url, subscription_required=s.apis.subscription_required)
        spec_json: str | None = None
        stage = "transform"
        ctx = TransformContext(endpoint=ep.name, server_url=ep.backend_url, tags=dict(ep.tags),
                               served_entities=ep.served_entities, config_version=ep.config_version,
                               variables={**names, "api_id": api_id},
                               served_model_routes=s.apis.served_model_routes and not ep.route_optimized,
                               task=ep.task, openai_routes=s.apis.openai_routes,
                               validate_requests=s.apis.validate_requests)
        dropped: list[str] = []
        if spec is not None:
            # only the invocation routes apimsync knows, never the workspace's operation ids
            spec, dropped = published_routes(spec, ep.served_entities)
            if not spec["paths"]:
                return Failure(ep.workspace, ep.name, stage, "the spec has no invocation route (POST /invocations or "
                               "/served-models/<a served entity>/invocations); nothing to publish", api_id)
            # a fetched spec is this build's alone; a synthesized one shares its parts with the others
            out = pipeline.run(spec, ctx, owned=not synthesized)
            # APIM takes info.title/description from an imported spec (and refuses to change them on a new
            # revision): the spec says what the API's settings say, so an import never creates a drift
            out["info"] = {**(out.get("info") or {}), "title": view.display_name, "description": view.description}
            stage = "lint"
            errors = [f for f in lint(out) if f.severity == "error"]
            if errors:
                return Failure(ep.workspace, ep.name, "lint", f"{len(errors)} APIM import problem(s) after "
                               "transform", api_id, tuple(f"{f.pointer}: {f.message} (fix: {f.hint})" for f in errors))
            spec_json = dump_spec(out)
        stage = "policy"
        template, variables = policy_inputs(ep, s)
        variables = {**s.policy.variables, **variables, "endpoint": ep.name, "api_id": api_id,
                     "workspace": ep.workspace, "backend_url": ep.backend_url}
        policy = render_policy(templates(template), variables, origin=f"policy {template}")
        fragments, optional = optional_policies(ep, s, tier)
        policy = add_inbound(policy, fragments)
        check_policy(policy, origin=f"policy {template} with apimsync's optional policies")
        notes = ((f"spec synthesized from task {ep.task}",) if synthesized else ()) + (
            ("spec unchanged, not fetched",) if reuse is not None else ()) + (
            ("OAuth service principal",) if "client_id_name" in variables else ()) + (
            (f"no built-in cache on the {tier} tier: a token request per call",)
            if "client_id_name" in variables and tier in NO_BUILT_IN_CACHE_TIERS else ()) + tuple(optional) + (
            (f"{len(dropped)} route(s) of the workspace's spec not published (not an invocation route)",)
            if dropped else ())
    except ApimsyncError as exc:
        return Failure(ep.workspace, ep.name, stage, str(exc))
    except (RecursionError, ValueError, TypeError, KeyError, AttributeError) as exc:
        # a spec shape no step foresaw: this endpoint fails, the others go on (load_spec bounds depth and size)
        return Failure(ep.workspace, ep.name, stage, f"unexpected spec content ({type(exc).__name__}: "
                                                     f"{str(exc)[:200]})")
    desired = DesiredApi(api_id=api_id, workspace=ep.workspace, endpoint=ep.name, settings=view,
                         spec_json=spec_json, policy_xml=policy, products=s.apis.products,
                         tags=s.apis.tags + (endpoint_tags(ep) if s.apis.endpoint_tags else ()),
                         environment=s.environment or "", source=source,
                         spec_hash=reuse.spec if reuse is not None else "",
                         notes=notes, task=ep.task)
    if len(str(desired.marker)) > MARKER_MAX:
        return Failure(ep.workspace, ep.name, "naming", f"the ownership marker would exceed APIM's {MARKER_MAX} "
                                                        "characters (endpoint name too long)", api_id)
    return desired


def endpoint_tags(ep: Endpoint) -> tuple[str, ...]:
    """An endpoint's tags as APIM tag ids: ``key-value``, characters outside [A-Za-z0-9-._] as '-', at most 80."""
    out = []
    for key, value in sorted(ep.tags.items()):
        tag = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{key}-{value}" if value else key).strip("-.")[:80]
        if tag and tag not in out:
            out.append(tag)
    return tuple(out)


def policy_inputs(ep: Endpoint, settings: Settings) -> tuple[str, dict[str, str]]:
    """The template an endpoint's policy comes from and the credential variables it gets.

    Route-optimized endpoints (and every endpoint with ``oauth.all_endpoints``) use the service principal's OAuth
    template: a token for this endpoint only, from the workspace's ``/oidc/v1/token``."""
    creds = gateway_auth(settings, ep.workspace)
    variables = {"named_value": str(creds.token.name)}
    oauth = creds.oauth
    if oauth is None or not (ep.kind.oauth_only or oauth.all_endpoints):
        return settings.policy.template, variables
    endpoint_id = ep.oauth_id
    if endpoint_id is None:
        raise PolicyError("the endpoint has no usable id, which its OAuth token must name (authorization_details)")
    scope = [{"type": "workspace_permission", "object_type": "serving-endpoints",
              "object_path": f"/serving-endpoints/{endpoint_id}", "actions": ["query_inference_endpoint"]}]
    return oauth.template, {
        **variables, "endpoint_id": endpoint_id, "client_id_name": str(oauth.client_id.name),
        "client_secret_name": str(oauth.client_secret.name), "token_url": f"{ep.host.rstrip('/')}/oidc/v1/token",
        "authorization_details": quote(json.dumps(scope, separators=(",", ":")), safe="")}
