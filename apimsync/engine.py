"""The sync engine: source → transform → desired APIs → actual APIs → plan → apply → report.

``Engine`` is the composition root shared by the CLI, the notebook API and the job entry point. The SDK clients
are built lazily from the settings; tests and notebooks may hand in their own.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from apimsync.apply import Progress, apply_plan
from apimsync.backend import backend_problem
from apimsync.config import NamedValueSource, Settings, credentials, render_name, sanitize_api_id, sanitize_path
from apimsync.errors import ApimsyncError, ConfigError, PolicyError
from apimsync.model import MARKER_MAX, ActualApi, ApiSettingsView, DesiredApi, short_hash
from apimsync.planner import Action, Failure, NamedValueChange, Plan, Skip, make_plan
from apimsync.report import Report
from apimsync.source import ENDPOINT_NAME, DatabricksSource, Endpoint, Fetched, Invalid, name_selected, select
from apimsync.target import Apim

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.apimanagement import ApiManagementClient
    from databricks.sdk import WorkspaceClient

    from apimsync.secrets import NamedValueDesired
    from apimsync.transform import Pipeline
    from apimsync.verify import Target, VerifyReport

log = logging.getLogger(__name__)
ROUTE_OPTIMIZED = ("route-optimized: it answers only on its own host and only to OAuth tokens of a service principal; "
                   "configure policy.oauth (client_id, client_secret of a service principal with CAN_QUERY) to publish "
                   "it, rather than publish an API nobody can call")


class Engine:
    """Plans and applies one configuration."""

    def __init__(self, settings: Settings, *, workspace_clients: Mapping[str, WorkspaceClient] | None = None,
                 apim_client: ApiManagementClient | None = None, credential: TokenCredential | None = None,
                 env: Mapping[str, str] | None = None, progress: Progress | None = None) -> None:
        self.settings = settings
        self._workspace_clients = dict(workspace_clients or {})
        self._apim_client = apim_client
        self._credential = credential
        self._env = env
        self._progress = progress

    @cached_property
    def apim(self) -> Apim:
        return Apim(self.settings.apim, credential=self._credential, client=self._apim_client,
                    concurrency=self.settings.concurrency)

    @cached_property
    def sources(self) -> list[DatabricksSource]:
        return [DatabricksSource(ws, client=self._workspace_clients.get(ws.name)) for ws in self.settings.workspaces]

    @cached_property
    def pipeline(self) -> Pipeline:
        from apimsync.transform import load_pipeline

        return load_pipeline(self.settings.pipeline)

    def template(self, name: str, key: str = "policy.template") -> str:
        """A policy template's text by name or path (loaded once); ``key`` is the setting errors name."""
        from apimsync.errors import PolicyError
        from apimsync.policy import load_template

        cache = self.__dict__.setdefault("_templates", {})
        if name not in cache:
            try:
                cache[name] = load_template(name)[0]
            except PolicyError as exc:
                raise PolicyError(f"{self.settings.origin}: {key}: {exc}") from None
        return str(cache[name])

    def _check_templates(self) -> None:
        """Load every configured template, so a bad file stops the run before any I/O."""
        s = self.settings
        self.template(s.policy.template)
        for oauth in [s.policy.oauth, *(w.oauth for w in s.workspaces)]:
            if oauth is not None:
                self.template(oauth.template, "oauth.template")

    # -- plan ------------------------------------------------------------------------------------

    def plan(self, *, prune: bool | None = None, force: bool = False, only: str | None = None) -> Plan:
        """Read both sides and decide. ``only`` limits the plan to one endpoint (import) and never prunes."""
        s = self.settings
        _ = self.pipeline  # a bad pipeline or policy file stops the run before any I/O
        self._check_templates()
        skipped: list[Skip] = []
        failures: list[Failure] = []
        chosen: list[Endpoint] = []
        listed_workspaces: list[str] = []
        for source in self.sources:
            try:
                endpoints = source.list_endpoints()
            except ApimsyncError as exc:
                failures.append(Failure(source.workspace.name, "*", "fetch", str(exc)))
                continue
            listed_workspaces.append(source.workspace.name)
            failures += [Failure(bad.workspace, bad.label, "list", bad.reason) for bad in endpoints
                         if isinstance(bad, Invalid) and name_selected(bad.label, s.select)]
            picked, held = select([ep for ep in endpoints if isinstance(ep, Endpoint)], s.select)
            chosen += picked
            skipped += [Skip(ep.workspace, ep.name, reason, self._api_id_or_none(ep)) for ep, reason in held]
        if only is not None:
            chosen = [ep for ep in chosen if ep.name == only]
            skipped = [sk for sk in skipped if sk.endpoint == only]
            if not chosen and not skipped:
                raise ConfigError(f"endpoint '{only}' not found in any configured workspace (or not selected)")
        seen = {ep.workspace for ep in chosen} | {sk.workspace for sk in skipped}
        empty_workspaces = [ws for ws in listed_workspaces if ws not in seen]

        # APIM's side does not depend on Databricks': read it while the specs are fetched and transformed
        with ThreadPoolExecutor(max_workers=1) as side:
            reading = side.submit(self._actual, listed_workspaces)
            fetched = self._fetch_all(chosen)
            desired: list[DesiredApi] = []
            for f in fetched:
                built = self._build(f)
                bucket: list[Any] = (desired if isinstance(built, DesiredApi) else
                                     skipped if isinstance(built, Skip) else failures)
                bucket.append(built)
            desired, collisions = _drop_collisions(desired)
            failures += collisions
            actual = reading.result()
        named_values: list[NamedValueChange] = []
        if desired:
            try:
                named_values = self._named_values(desired)
            except ApimsyncError as exc:
                failures += [Failure(d.workspace, d.endpoint, "policy", str(exc), d.api_id) for d in desired]
                desired = []
        plan = make_plan(
            self.apim.service_id, desired, actual, workspaces=listed_workspaces, skipped=skipped, failures=failures,
            named_values=named_values, prune=bool(s.prune.enabled if prune is None else prune) and only is None,
            max_delete_fraction=s.prune.max_delete_fraction, protect=s.prune.protect, force=force,
            empty_workspaces=empty_workspaces)
        if only is not None:
            plan = Plan(plan.target, tuple(c for c in plan.changes if c.endpoint == only), plan.named_values,
                        plan.skipped, plan.failures, plan.withheld, plan.created_at)
        return plan

    def _api_id_or_none(self, ep: Endpoint) -> str | None:
        try:
            return sanitize_api_id(render_name(self.settings.naming.api_id, endpoint=ep.name, workspace=ep.workspace))
        except ApimsyncError:
            return None

    def _fetch_all(self, endpoints: list[Endpoint]) -> list[Fetched]:
        by_ws = {src.workspace.name: src for src in self.sources}
        results: list[Fetched] = []
        if not endpoints:
            return results
        with ThreadPoolExecutor(max_workers=max(1, min(self.settings.concurrency, len(endpoints)))) as pool:
            for i, fetched in enumerate(pool.map(lambda ep: by_ws[ep.workspace].fetch(ep), endpoints), 1):
                results.append(fetched)
                if self._progress:
                    self._progress("fetch", i, len(endpoints))
        return results

    def _build(self, f: Fetched) -> DesiredApi | Skip | Failure:
        """What one fetched endpoint becomes; never raises, whatever the workspace returned."""
        ep = f.endpoint
        if f.skip_reason:
            return Skip(ep.workspace, ep.name, f.skip_reason, self._api_id_or_none(ep))
        if f.error or f.spec is None:
            return Failure(ep.workspace, ep.name, "fetch", f.error or "no spec")
        problem = backend_problem(ep.backend_url, ep.host, self.settings.apis.backend_hosts)
        if problem:
            return Failure(ep.workspace, ep.name, "backend", problem)
        if ep.route_optimized and credentials(self.settings, ep.workspace).oauth is None:
            return Skip(ep.workspace, ep.name, ROUTE_OPTIMIZED, self._api_id_or_none(ep))
        return self._desired(ep, f.spec, synthesized=f.synthesized)

    def _desired(self, ep: Endpoint, spec: dict[str, Any], *, synthesized: bool = False) -> DesiredApi | Failure:
        from apimsync.policy import render_policy
        from apimsync.spec import dump_spec
        from apimsync.transform import TransformContext, lint

        s = self.settings
        names = {"endpoint": ep.name, "workspace": ep.workspace}
        stage = "naming"
        try:
            api_id = sanitize_api_id(render_name(s.naming.api_id, **names))
            view = ApiSettingsView(
                path=sanitize_path(render_name(s.naming.path, **names)),
                display_name=render_name(s.naming.display_name, **names)[:300],
                description=render_name(s.naming.description, **names),
                service_url=ep.backend_url, subscription_required=s.apis.subscription_required)
            stage = "transform"
            ctx = TransformContext(endpoint=ep.name, server_url=ep.backend_url, tags=dict(ep.tags),
                                   served_entities=ep.served_entities, config_version=ep.config_version,
                                   variables={**names, "api_id": api_id},
                                   served_model_routes=s.apis.served_model_routes and not ep.route_optimized)
            out = self.pipeline.run(spec, ctx)
            # APIM takes info.title/description from an imported spec (and refuses to change them on a new
            # revision): the spec says what the API's settings say, so an import never creates a drift
            out["info"] = {**(out.get("info") or {}), "title": view.display_name, "description": view.description}
            stage = "lint"
            errors = [f for f in lint(out) if f.severity == "error"]
            if errors:
                return Failure(ep.workspace, ep.name, "lint", f"{len(errors)} APIM import problem(s) after transform",
                               api_id, tuple(f"{f.pointer}: {f.message} (fix: {f.hint})" for f in errors))
            stage = "policy"
            template, variables = self._policy_inputs(ep)
            variables = {**s.policy.variables, **variables, "endpoint": ep.name, "api_id": api_id,
                         "workspace": ep.workspace, "backend_url": ep.backend_url}
            policy = render_policy(self.template(template), variables, origin=f"policy {template}")
            notes = ((f"spec synthesized from task {ep.task}",) if synthesized else ()) + (
                ("OAuth service principal",) if "client_id_name" in variables else ())
        except ApimsyncError as exc:
            return Failure(ep.workspace, ep.name, stage, str(exc))
        except (RecursionError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # a spec shape no step foresaw: this endpoint fails, the others go on (load_spec bounds depth and size)
            return Failure(ep.workspace, ep.name, stage, f"unexpected spec content ({type(exc).__name__}: "
                                                         f"{str(exc)[:200]})")
        desired = DesiredApi(api_id=api_id, workspace=ep.workspace, endpoint=ep.name, settings=view,
                             spec_json=dump_spec(out), policy_xml=policy, products=s.apis.products, tags=s.apis.tags,
                             notes=notes)
        if len(str(desired.marker)) > MARKER_MAX:
            return Failure(ep.workspace, ep.name, "naming", f"the ownership marker would exceed APIM's {MARKER_MAX} "
                                                            "characters (endpoint name too long)", api_id)
        return desired

    def _policy_inputs(self, ep: Endpoint) -> tuple[str, dict[str, str]]:
        """The template an endpoint's policy comes from and the credential variables it gets.

        Route-optimized endpoints (and every endpoint with ``oauth.all_endpoints``) use the service principal's
        OAuth template: a token for this endpoint only, from the workspace's ``/oidc/v1/token``."""
        creds = credentials(self.settings, ep.workspace)
        variables = {"named_value": str(creds.token.name)}
        oauth = creds.oauth
        if oauth is None or not (ep.route_optimized or oauth.all_endpoints):
            return self.settings.policy.template, variables
        if not ep.id or not ENDPOINT_NAME.fullmatch(ep.id):
            raise PolicyError("the endpoint has no usable id, which its OAuth token must name (authorization_details)")
        scope = [{"type": "workspace_permission", "object_type": "serving-endpoints",
                  "object_path": f"/serving-endpoints/{ep.id}", "actions": ["query_inference_endpoint"]}]
        return oauth.template, {
            **variables, "client_id_name": str(oauth.client_id.name),
            "client_secret_name": str(oauth.client_secret.name), "token_url": f"{ep.host.rstrip('/')}/oidc/v1/token",
            "authorization_details": quote(json.dumps(scope, separators=(",", ":")), safe="")}

    def _actual(self, workspaces: list[str]) -> list[ActualApi]:
        """Every API in the service; owned ones (from these workspaces) with their policy and links."""
        apis = self.apim.list_apis()
        owned = [a for a in apis if a.marker is not None and a.marker.workspace in workspaces]
        product_links = {p: self.apim.product_apis(p) for p in self.settings.apis.products}
        tag_links = self.apim.tag_links() if self.settings.apis.tags else {}
        with ThreadPoolExecutor(max_workers=max(1, min(self.settings.concurrency, len(owned) or 1))) as pool:
            fetched = pool.map(lambda a: self.apim.get_policy(a.api_id), owned)
            policies = dict(zip([a.api_id for a in owned], fetched, strict=True))
        out = []
        for a in apis:
            if a.api_id in policies:
                a = replace(a, policy_xml=policies[a.api_id],
                            products=frozenset(p for p, ids in product_links.items() if a.api_id in ids),
                            tags=frozenset(t for t, ids in tag_links.items() if a.api_id in ids))
            out.append(a)
        return out

    def _named_values(self, desired: list[DesiredApi]) -> list[NamedValueChange]:
        """The named values the policies read: those apimsync keeps (each workspace's token and service principal)
        are planned; any other must already exist in APIM."""
        from apimsync.policy import named_value_refs
        from apimsync.secrets import resolve_named_value

        kept: dict[str, tuple[NamedValueSource, str]] = {}
        for ws in sorted({d.workspace for d in desired}):
            creds = credentials(self.settings, ws)
            kept[str(creds.token.name)] = (creds.token, "named_value")
            if creds.oauth:
                kept[str(creds.oauth.client_id.name)] = (creds.oauth.client_id, "oauth.client_id")
                kept[str(creds.oauth.client_secret.name)] = (creds.oauth.client_secret, "oauth.client_secret")
        refs = set().union(*(named_value_refs(d.policy_xml) for d in desired))
        for ref in sorted(refs - set(kept)):
            if self.apim.get_named_value(ref) is None:
                raise ConfigError(f"the policy references named value '{ref}', which does not exist in APIM")
        changes = []
        for name in sorted(refs & set(kept)):
            source, key = kept[name]
            changes.append(self._named_value_change(resolve_named_value(source, env=self._env, key=key), source))
        return changes

    def _named_value_change(self, want: NamedValueDesired, source: NamedValueSource) -> NamedValueChange:
        have = self.apim.get_named_value(want.name)
        kind = ("key_vault" if want.key_vault_id else "databricks_secret" if source.databricks_secret else
                "value" if source.value else "env")
        reasons: list[str] = []
        if have is None:
            action, reasons = Action.CREATE, ["missing"]
        else:
            if not have.secret:
                reasons.append("not marked secret")
            if want.key_vault_id and have.key_vault_id != want.key_vault_id:
                reasons.append("Key Vault reference changed")
            if want.secret_value is not None and (
                    have.key_vault_id or have.value_fingerprint != want.secret_value.fingerprint()):
                reasons.append("value changed (token rotated)")
            action = Action.UPDATE if reasons else Action.NOOP
        return NamedValueChange(want.name, action, tuple(reasons), kind, want.secret_value, want.key_vault_id,
                                want.identity_client_id)

    # -- verify ----------------------------------------------------------------------------------

    def verify(self, endpoints: Sequence[str] = (), *, gateway_url: str | None = None,
               subscription_key: str | None = None) -> VerifyReport:
        """Call every published API once through the gateway (or only those of ``endpoints``)."""
        from apimsync.verify import run_checks

        targets = self.verify_targets(endpoints)
        url = gateway_url or self.apim.gateway_url()
        key = subscription_key or self.apim.subscription_key()
        return run_checks(targets, gateway_url=url, key=key, ca_bundle=self.settings.apim.ca_bundle,
                          workers=self.settings.concurrency, progress=self._progress)

    def verify_targets(self, endpoints: Sequence[str] = ()) -> list[Target]:
        """The APIs verify calls: every planned one (or those of ``endpoints``), with its published spec."""
        from apimsync.verify import Target

        plan = self.plan(prune=False)
        unknown = sorted(set(endpoints) - {c.endpoint for c in plan.changes})
        if unknown:
            raise ConfigError(f"no API planned for endpoint(s) {', '.join(unknown)} (not selected, or failed: run "
                              "apimsync plan)")
        return [
            Target(c.endpoint or "", c.workspace or "", c.api_id,
                   c.actual.settings.path if c.actual else c.desired.settings.path,
                   json.loads(c.desired.spec_json) if c.actual is not None else None)
            for c in plan.changes
            if c.desired is not None and c.action is not Action.DELETE and (not endpoints or c.endpoint in endpoints)]

    # -- apply -----------------------------------------------------------------------------------

    def apply(self, plan: Plan, *, force_lock: bool = False) -> Report:
        """Apply a plan under the service-wide lock (taken only when there is something to write)."""
        started = time.monotonic()
        report = Report(plan)
        if plan.has_changes:
            owner = self.apim.acquire_lock(self.lock_name, self.settings.lock_ttl_seconds, force=force_lock)
            try:
                report.named_values, report.outcomes = apply_plan(
                    plan, self.apim, concurrency=self.settings.concurrency,
                    update_strategy=self.settings.update_strategy, progress=self._progress)
            finally:
                self.apim.release_lock(self.lock_name, owner)
        report.seconds = time.monotonic() - started
        report.calls = self.apim.calls
        return report

    @property
    def lock_name(self) -> str:
        """One lock per set of workspaces: syncs of different workspaces into one APIM own disjoint APIs."""
        return "apimsync-lock-" + short_hash(sorted(ws.name for ws in self.settings.workspaces))

    def sync(self, *, dry_run: bool = False, prune: bool | None = None, force: bool = False,
             force_lock: bool = False, only: str | None = None) -> Report:
        started = time.monotonic()
        plan = self.plan(prune=prune, force=force, only=only)
        if dry_run:
            report = Report(plan, dry_run=True, calls=self.apim.calls)
        else:
            report = self.apply(plan, force_lock=force_lock)
        report.seconds = time.monotonic() - started
        return report


def _drop_collisions(desired: list[DesiredApi]) -> tuple[list[DesiredApi], list[Failure]]:
    """Two endpoints mapping to one api id or one path: both fail, before anything is written."""
    by_key: dict[tuple[str, str], list[DesiredApi]] = defaultdict(list)
    for d in desired:
        by_key[("api id", d.api_id)].append(d)
        by_key[("path", d.settings.path.lower())].append(d)
    bad: dict[str, Failure] = {}
    for (what, value), group in by_key.items():
        if len(group) > 1:
            names = ", ".join(f"{d.workspace}/{d.endpoint}" for d in group)
            for d in group:
                bad.setdefault(d.api_id + d.endpoint, Failure(
                    d.workspace, d.endpoint, "naming", f"{what} '{value}' is produced by several endpoints: {names}",
                    d.api_id))
    keep = [d for d in desired if d.api_id + d.endpoint not in bad]
    return keep, list(bad.values())


