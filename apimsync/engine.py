"""The sync engine: source → transform → desired APIs → actual APIs → plan → apply → report.

``Engine`` is the composition root shared by the CLI, the notebook API and the job entry point. The SDK clients
are built lazily from the settings; tests and notebooks may hand in their own.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING

from apimsync.apply import Applier
from apimsync.changes import Action, Failure, Plan, Skip
from apimsync.desired import api_id_for, build, names_for, source_fingerprint
from apimsync.endpoints import Endpoint, Invalid, name_selected, select
from apimsync.errors import ApimsyncError, ConfigError, PolicyError, UnsafePlanError
from apimsync.lock import Holder
from apimsync.model import ActualApi, DesiredApi, Marker, short_hash
from apimsync.parallel import Progress, gather, split
from apimsync.planner import Planner
from apimsync.report import Report
from apimsync.resources.named_values import NamedValueDecisions
from apimsync.settings import Settings
from apimsync.source import DatabricksSource
from apimsync.target import ApimTarget

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.apimanagement import ApiManagementClient
    from databricks.sdk import WorkspaceClient

    from apimsync.checks import Target, VerifyReport
    from apimsync.transform import Pipeline

log = logging.getLogger(__name__)

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
    def apim(self) -> ApimTarget:
        return ApimTarget(self.settings.apim, credential=self._credential, client=self._apim_client,
                          concurrency=max(self.settings.concurrency, self.settings.apply_concurrency))

    @cached_property
    def sources(self) -> list[DatabricksSource]:
        return [DatabricksSource(ws, client=self._workspace_clients.get(ws.name), env=self._env)
                for ws in self.settings.workspaces]

    @cached_property
    def pipeline(self) -> Pipeline:
        from apimsync.transform import load_pipeline

        return load_pipeline(self.settings.pipeline)

    def template(self, name: str, key: str = "policy.template") -> str:
        """A policy template's text by name or path (loaded once); ``key`` is the setting errors name."""
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

    def plan(self, *, prune: bool | None = None, force: bool = False, only: str | None = None,
             refresh: bool = False) -> Plan:
        """Read both sides and decide. ``only`` limits the plan to one endpoint (import) and never prunes.

        A spec is fetched only when what determines it changed (the endpoint's served models, the configuration,
        the pipeline: the source fingerprint in each API's marker), or with ``refresh``, which a periodic run
        should set now and then for changes Databricks makes behind them. Policies are read on a drift check
        (``refresh``, or ``drift_check_hours`` since the last one); between checks the markers stand for them."""
        return self._plan(prune=prune, force=force, only=only, refresh=refresh,
                          drift_check=self._drift_check_due(refresh, self.apim.lock.state(self.lock_name)))

    def _drift_check_due(self, refresh: bool, lock: Holder) -> bool:
        """Whether this run reads every policy: with ``--refresh``, when ``drift_check_hours`` passed since the
        last run that did (the time is kept in the lock), or when that time is unknown."""
        hours = self.settings.drift_check_hours
        if refresh or hours <= 0 or lock.checked is None:
            return True
        return datetime.now(timezone.utc) - lock.checked >= timedelta(hours=hours)

    def _plan(self, *, prune: bool | None = None, force: bool = False, only: str | None = None,
              refresh: bool = False, drift_check: bool = True, applier: Applier | None = None) -> Plan:
        """The plan; with ``applier``, each create or update whose decision needs no other endpoint is handed to
        it as soon as the planner decides it (:class:`Planner`), while other specs are still being fetched."""
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
            skipped += [Skip(ep.workspace, ep.name, reason, api_id_for(ep, s)) for ep, reason in held]
        if only is not None:
            chosen = [ep for ep in chosen if ep.name == only]
            skipped = [sk for sk in skipped if sk.endpoint == only]
            if not chosen and not skipped:
                raise ConfigError(f"endpoint '{only}' not found in any configured workspace (or not selected)")
        seen = {ep.workspace for ep in chosen} | {sk.workspace for sk in skipped}
        empty_workspaces = [ws for ws in listed_workspaces if ws not in seen]

        # the API list first (its markers say which specs are unchanged), the rest of APIM's side while the
        # specs are fetched and transformed
        apis = self.apim.apis.list()
        env = s.environment or ""
        published = {(m.workspace, m.endpoint): m for a in apis if (m := a.marker) is not None
                     and m.environment == env}
        config, version = self._config_fingerprint

        def source_of(ep: Endpoint) -> str:
            return source_fingerprint(ep, config, version=version)

        def unchanged(ep: Endpoint) -> Marker | None:
            """The marker of the API published from this endpoint, when its source is unchanged."""
            marker = published.get((ep.workspace, ep.name))
            return marker if marker and not refresh and marker.source == source_of(ep) else None

        named = NamedValueDecisions(s, self.apim.named_values, self._env)
        # the service's tier, read only when a policy depends on it (the LLM token limit, the OAuth token cache)
        tier = self.apim.tier() if (s.policy.llm and s.policy.llm.tokens_per_minute) or s.policy.oauth or any(
            w.oauth for w in s.workspaces) else None
        planner = Planner(self.apim.service_id, apis, (names_for(ep, s) for ep in chosen), environment=env,
                          early=applier is not None)
        by_ws = {src.workspace.name: src for src in self.sources}
        with ThreadPoolExecutor(max_workers=1) as side:  # one coordinating thread: see apimsync/parallel.py
            reading = side.submit(self._actual, listed_workspaces, apis, drift_check)

            def one(ep: Endpoint) -> DesiredApi | Skip | Failure:
                fetched = by_ws[ep.workspace].fetch(ep, unchanged, details=version)
                built = build(fetched, s, self.pipeline, self.template, source=source_of(fetched.endpoint), tier=tier,
                              reuse=unchanged(fetched.endpoint) if fetched.reused else None)
                if isinstance(built, DesiredApi):
                    built = named.check(built)
                if isinstance(built, DesiredApi):
                    # decided at once when it can be; applied while the other specs are still being fetched
                    change = planner.offer(built, reading.result)
                    if change is not None and applier is not None:
                        applier.submit(change, named.of(built))
                return built

            for ep, built in gather(chosen, one, split(s.concurrency)[0], self._progress, "plan"):
                if isinstance(built, Exception):
                    built = Failure(ep.workspace, ep.name, "fetch", f"{type(built).__name__}: {built}")
                if isinstance(built, Skip):
                    skipped.append(built)
                elif isinstance(built, Failure):
                    failures.append(built)
            actual = reading.result()
        plan = planner.complete(
            actual, workspaces=listed_workspaces, skipped=skipped, failures=failures,
            named_values=named.used(planner.offered()), prune=bool(s.prune.enabled if prune is None else prune)
            and only is None, max_delete_fraction=s.prune.max_delete_fraction, protect=s.prune.protect, force=force,
            empty_workspaces=empty_workspaces, endpoint=only)
        return replace(plan, drift_check="every policy read and compared with the template" if drift_check else
                       f"policies not read: their markers stand for them until the next drift check (every "
                       f"{s.drift_check_hours:g} h; --refresh checks now)")

    @cached_property
    def _config_fingerprint(self) -> tuple[str, bool]:
        """What of the configuration shapes a spec: the pipeline's steps, the naming (the spec's title and
        description) and the routes published (not the policy: a policy change rewrites policies, not specs); and
        whether the pipeline reads ``{config_version}``, which only an endpoint's details report."""
        s = self.settings
        steps = [(step.name, step.params, step.when) for step in self.pipeline.steps]
        routes = (s.apis.served_model_routes, s.apis.openai_routes, s.apis.validate_requests)
        text = json.dumps([steps, repr(s.naming), routes], default=str)
        return short_hash(text), "{config_version}" in text

    def _actual(self, workspaces: list[str], apis: list[ActualApi], drift_check: bool) -> list[ActualApi]:
        """Every API in the service (``apis``, listed); owned ones (from these workspaces) with their links, and
        their policies where the marker cannot stand for them: on a drift check, or a marker without ``pol=``."""
        env = self.settings.environment or ""
        owned = {a.api_id for a in apis if a.marker is not None and a.marker.workspace in workspaces
                 and a.marker.environment in (env, "")}  # one without an environment may be adopted
        product_links = {p: self.apim.links.product_apis(p) for p in self.settings.apis.products}
        tag_links = self.apim.links.tag_links() if self.settings.apis.tags or self.settings.apis.endpoint_tags else {}
        to_read = [a for a in apis if a.api_id in owned and (drift_check or not (a.marker and a.marker.policy))]
        policies = {}
        workers = split(self.settings.concurrency)[1]
        for a, policy in gather(to_read, lambda a: self.apim.policies.get(a.api_id), workers):
            if isinstance(policy, Exception):
                raise policy
            policies[a.api_id] = policy
        out = []
        for a in apis:
            if a.api_id in owned:
                a = replace(a, policy_xml=policies.get(a.api_id), policy_unread=a.api_id not in policies,
                            products=frozenset(p for p, ids in product_links.items() if a.api_id in ids),
                            tags=frozenset(t for t, ids in tag_links.items() if a.api_id in ids))
            out.append(a)
        return out

    # -- verify ----------------------------------------------------------------------------------

    def verify(self, endpoints: Sequence[str] = (), *, gateway_url: str | None = None,
               subscription_key: str | None = None) -> VerifyReport:
        """Call every published API once through the gateway (or only those of ``endpoints``)."""
        from apimsync.checks import run_checks

        targets = self.verify_targets(endpoints)
        url = gateway_url or self.apim.gateway_url()
        key = subscription_key or self.apim.subscription_key()
        return run_checks(targets, gateway_url=url, key=key, ca_bundle=self.settings.apim.ca_bundle,
                          workers=self.settings.concurrency, progress=self._progress)

    def verify_targets(self, endpoints: Sequence[str] = ()) -> list[Target]:
        """The APIs verify calls: every planned one (or those of ``endpoints``), with its published spec."""
        from apimsync.checks import Target

        plan = self.plan(prune=False, refresh=True)  # verify builds its requests from the specs
        unknown = sorted(set(endpoints) - {c.endpoint for c in plan.changes})
        if unknown:
            raise ConfigError(f"no API planned for endpoint(s) {', '.join(unknown)} (not selected, or failed: run "
                              "apimsync plan)")
        return [
            Target(c.endpoint or "", c.workspace or "", c.api_id,
                   c.actual.settings.path if c.actual else c.desired.settings.path,
                   json.loads(c.desired.spec_json) if c.actual is not None and c.desired.spec_json else None,
                   c.desired.task)
            for c in plan.changes
            if c.desired is not None and c.action is not Action.DELETE and (not endpoints or c.endpoint in endpoints)]

    # -- apply -----------------------------------------------------------------------------------

    def apply(self, plan: Plan, *, force_lock: bool = False, applier: Applier | None = None,
              checked: datetime | None = None, record: bool = False) -> Report:
        """Apply a plan (what of it ``applier`` has not already started) under the service-wide lock, taken
        before the first write, so a run with nothing to write takes no lock. ``checked``: the plan read every
        policy then; the lock keeps the time in its release. A run that took no lock writes nothing, unless
        ``record``: the drift check was due by the schedule, and its time must be kept (one write per check)."""
        started = time.monotonic()
        report = Report(plan)
        applier = applier or self._applier(force_lock)
        clean = False  # the drift check counts when everything it found to repair was repaired
        try:
            report.named_values, report.outcomes = applier.finish(plan)
            clean = applier.error is None and not plan.failures and all(
                o.ok for o in [*report.named_values, *report.outcomes])
        finally:
            if applier.ticket is not None:
                self.apim.lock.release(self.lock_name, applier.ticket, checked if clean else None)
            elif checked is not None and clean and record:
                self.apim.lock.record_check(self.lock_name, checked)
        if applier.error is not None:
            raise applier.error
        report.seconds = time.monotonic() - started
        report.calls = self.apim.calls
        return report

    def _applier(self, force_lock: bool, generation: int | None = None) -> Applier:
        def take_lock() -> str:
            ticket = self.apim.lock.acquire(self.lock_name, self.settings.lock_ttl_seconds, force=force_lock,
                                            generation=generation)
            # released (and no longer kept) by apply
            self.apim.lock.keep(ticket, self.lock_name, self.settings.lock_ttl_seconds)
            return ticket

        return Applier(self.apim, concurrency=self.settings.apply_concurrency,
                       update_strategy=self.settings.update_strategy, progress=self._progress,
                       before_first_write=take_lock)

    @property
    def lock_name(self) -> str:
        """One lock per set of workspaces: syncs of different workspaces into one APIM own disjoint APIs."""
        return "apimsync-lock-" + short_hash(sorted(ws.name for ws in self.settings.workspaces))

    def sync(self, *, dry_run: bool = False, prune: bool | None = None, force: bool = False,
             force_lock: bool = False, only: str | None = None, reviewed: str | None = None,
             refresh: bool = False) -> Report:
        """Plan and apply. ``reviewed``: the checksum of a plan someone reviewed (``plan --out``); the sync plans
        again and applies only when it gets that same plan, else raises UnsafePlanError and writes nothing."""
        started = time.monotonic()
        # the lock before anything is read: it is taken only if no other run took it since (its generation), and it
        # says when every policy was last read
        lock = self.apim.lock.state(self.lock_name)
        generation = None if dry_run else lock.generation
        due = self._drift_check_due(False, lock)  # by the schedule (refresh checks too, but off the schedule)
        drift_check = refresh or due
        # creates and updates start while the plan is made, unless someone must see the whole plan first
        applier = None if dry_run or reviewed is not None else self._applier(force_lock, generation)
        try:
            plan = self._plan(prune=prune, force=force, only=only, refresh=refresh, drift_check=drift_check,
                              applier=applier)
        except BaseException:
            if applier is not None:  # nothing more starts; what was started finishes, and the lock is released
                applier.close()
                try:
                    self.apply(Plan(self.apim.service_id), applier=applier)
                except Exception as exc:  # the original error is the one to report
                    log.warning("after an interrupted plan: %s", exc)
            raise
        if reviewed is not None and plan.checksum != reviewed:
            raise UnsafePlanError("the reviewed plan no longer matches what a sync would do now (Databricks, APIM, "
                                  "the configuration or a token changed since); nothing was written: run apimsync "
                                  "plan --out again and review the new plan")
        if dry_run:
            report = Report(plan, dry_run=True, calls=self.apim.calls)
        else:
            # a drift check compared every policy (and repaired what was not apimsync's): the lock keeps its time
            checked = datetime.now(timezone.utc) if drift_check and only is None else None
            report = self.apply(plan, force_lock=force_lock, applier=applier or self._applier(force_lock, generation),
                                checked=checked, record=due)
        report.seconds = time.monotonic() - started
        return report
