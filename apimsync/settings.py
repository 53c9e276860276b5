"""The settings, each field with its default, bounds and one-line doc (:func:`apimsync.binding.setting`): the
README's configuration table is generated from them (``python -m apimsync.readme``), and :mod:`apimsync.config`
loads a file into them. Checks across fields are in ``config._check``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from apimsync.binding import frozen_map, setting
from apimsync.naming import render_name

MAX_TPM = 1_000_000_000  # llm-token-limit's tokens-per-minute: far above any deployment, far below an overflow
MAX_LOCK_TTL = 86_400  # a day


@dataclass(frozen=True)
class Selection:
    include: tuple[str, ...] = setting(("*",), "endpoint name globs to publish")
    exclude: tuple[str, ...] = setting((), "endpoint name globs never published")
    tags: Mapping[str, str] = setting(doc="required endpoint tags (`\"*\"` = any value)", factory=frozen_map)
    ready_only: bool = setting(True, "endpoints not READY are skipped (their existing API is kept)")
    foundation_models: bool = setting(False, "also publish pay-per-token system endpoints (`endpoint_type: "
                                             "FOUNDATION_MODEL_API`, `databricks-*`); a workspace lists dozens, so "
                                             "they are published only when asked for, here or by exact name in "
                                             "`include`")


@dataclass(frozen=True)
class ApimSettings:
    subscription_id: str = setting(doc="the APIM target's subscription")
    resource_group: str = setting(doc="its resource group")
    service: str = setting(doc="the API Management service name")
    base_url: str = setting("https://management.azure.com", "ARM endpoint (sovereign clouds, the emulator)")
    ca_bundle: str | None = setting(None, "extra CA (PEM) to trust; TLS verification is never turned off")
    credential: str = setting("default", "`default`, `cli`, `managed-identity`, `service-credential:<name>` (a Unity "
                                         "Catalog service credential, on Databricks), `emulator`")
    polling_interval: float = setting(5.0, "seconds between long-running-operation polls (an API import takes "
                                           "about 10 s; each poll is an ARM read)", bounds=(0, None))


@dataclass(frozen=True)
class Naming:
    api_id: str = setting("dbx-{endpoint}", "API id template (`{endpoint}`, `{workspace}`), sanitised to APIM's rules")
    path: str = setting("serving/{endpoint}", "API path template, sanitised to APIM's rules")
    display_name: str = setting("{endpoint}", "display name template")
    description: str = setting("Databricks Model Serving endpoint {endpoint} ({task}): {served_models}",
                               "description template; also `{task}` and `{served_models}` (each served model's "
                               "name, model and version, or its external or foundation model)")


@dataclass(frozen=True)
class SecretSource:
    """Where apimsync reads a value: one of an environment variable, a Databricks secret, or a plain value."""

    env: str | None = setting(None, "an environment variable")
    databricks_secret: str | None = setting(None, "`scope/key` of a Databricks secret (readable on Databricks)")
    value: str | None = setting(None, "a plain value in the file: for what is not secret (a client id)")


@dataclass(frozen=True)
class NamedValueSource(SecretSource):
    """A named value apimsync keeps, and where its value comes from (one of the sources, or a Key Vault secret
    that APIM reads itself)."""

    name: str | None = setting(None, "the named value's name, a template with `{workspace}` (default: "
                                     "`databricks-token-{workspace}`, `databricks-sp-id-…`, `databricks-sp-secret-…`)")
    key_vault: str | None = setting(None, "a Key Vault secret URL APIM reads itself (instead of a value)")
    identity_client_id: str | None = setting(None, "the user-assigned identity APIM reads the Key Vault secret with")


@dataclass(frozen=True)
class OAuthSettings:
    """A Databricks service principal whose OAuth token the gateway obtains (route-optimized endpoints need one)."""

    client_id: NamedValueSource = setting(doc="its application id", factory=NamedValueSource)
    client_secret: NamedValueSource = setting(doc="its OAuth secret", factory=NamedValueSource)
    template: str = setting("oauth-service-principal", "the policy template of the APIs that use it")
    all_endpoints: bool = setting(False, "use it for every endpoint, not only the route-optimized ones")


@dataclass(frozen=True)
class WorkspaceAuth:
    """apimsync's own credential for reading one workspace, used instead of databricks-sdk's unified auth."""

    token: SecretSource | None = setting(None, "a token of the workspace (a secret: `env` or `databricks_secret`)")
    client_id: SecretSource | None = setting(None, "a service principal's application id (OAuth M2M)")
    client_secret: SecretSource | None = setting(None, "its OAuth secret (a secret: `env` or `databricks_secret`)")


@dataclass(frozen=True)
class Workspace:
    name: str = setting("default", "a label of at most 64 characters, also in the ownership marker; several "
                                   "workspaces may feed one APIM (give `naming` a `{workspace}` when they share "
                                   "endpoint names)")
    host: str | None = setting(None, "the workspace URL (https): the backend host of its APIs")
    profile: str | None = setting(None, "a `~/.databrickscfg` profile")
    auth: WorkspaceAuth | None = setting(None, "apimsync's own credential for reading it (needs `host`; no "
                                               "`profile`): a job reaching another workspace, where runtime auth "
                                               "would read the current one")
    retry_timeout_seconds: int = setting(60, "how long an unreachable or throttled workspace is retried")
    named_value: NamedValueSource | None = setting(None, "this workspace's token for the gateway (else "
                                                         "`policy.named_value`)")
    oauth: OAuthSettings | None = setting(None, "this workspace's service principal (else `policy.oauth`)")


@dataclass(frozen=True)
class LlmPolicy:
    """LLM-aware policies for chat and completions endpoints (Learn: llm-token-limit, llm-emit-token-metric)."""

    tokens_per_minute: int | None = setting(None, "an `llm-token-limit` per subscription, counted from the "
                                                  "backend's `usage`", bounds=(1, MAX_TPM))
    emit_metrics: bool = setting(False, "`llm-emit-token-metric` (needs Application Insights with custom metrics)")
    metrics_namespace: str = setting("apimsync", "the metrics' namespace")


@dataclass(frozen=True)
class PolicySettings:
    template: str = setting("named-value-auth", "a shipped template's name or a path to your XML template")
    variables: Mapping[str, str] = setting(doc="extra `${...}` variables for the template", factory=frozen_map)
    named_value: NamedValueSource = setting(doc="the token the gateway sends Databricks: one of `env`, "
                                                "`databricks_secret`, `key_vault`", factory=NamedValueSource)
    oauth: OAuthSettings | None = setting(None, "a service principal for route-optimized endpoints")
    llm: LlmPolicy | None = setting(None, "LLM policies for chat and completions endpoints (their answers carry "
                                          "`usage`; agents' do not)")


@dataclass(frozen=True)
class ApiSettings:
    subscription_required: bool = setting(True, "APIM subscription keys required")
    products: tuple[str, ...] = setting((), "products to link each API to (they must exist)")
    tags: tuple[str, ...] = setting((), "APIM tags to assign to each API")
    served_model_routes: bool = setting(False, "also publish `/served-models/<entity>/invocations` per served entity "
                                               "(their names change with every model version; `/invocations` does "
                                               "not)")
    backend_hosts: tuple[str, ...] = setting((), "hosts (globs) allowed as backends besides the workspace's own and "
                                                 "Databricks' data-plane hosts (see Trust boundaries)")
    openai_routes: bool = setting(True, "chat, completions and embeddings endpoints also get the OpenAI route "
                                        "(`/chat/completions`, `/completions`, `/embeddings`), rewritten to "
                                        "`/invocations` at the gateway")
    endpoint_tags: bool = setting(False, "also tag each API with its endpoint's tags (`key-value`, sanitised to APIM "
                                         "tag ids)")
    validate_requests: bool = setting(False, "add `validate-content` to each API: a payload that fits no request "
                                             "Databricks accepts is refused at the gateway (400) before it costs a "
                                             "model invocation")
    max_request_bytes: int = setting(102_400, "validate-content's `max-size`", bounds=(1024, 4 * 1024 * 1024))


@dataclass(frozen=True)
class Prune:
    enabled: bool = setting(False, "delete owned APIs whose endpoint is gone")
    max_delete_fraction: float = setting(0.3, "never delete more than this share of owned APIs without `--force`",
                                         bounds=(0, 1))
    protect: tuple[str, ...] = setting((), "api id globs never deleted")


@dataclass(frozen=True)
class Settings:
    apim: ApimSettings = setting(doc="the APIM target")
    workspaces: tuple[Workspace, ...] = setting((Workspace(),), "the workspaces whose endpoints are published "
                                                                "(default: one, from databricks-sdk's unified auth)")
    select: Selection = setting(doc="which endpoints", factory=Selection)
    naming: Naming = setting(doc="what each API is called", factory=Naming)
    pipeline: str | None = setting(None, "the transform pipeline file (default: the shipped "
                                         "`transforms/databricks-serving.yaml`)")
    policy: PolicySettings = setting(doc="each API's inbound policy", factory=PolicySettings)
    apis: ApiSettings = setting(doc="what else each API gets", factory=ApiSettings)
    prune: Prune = setting(doc="deleting APIs whose endpoint is gone", factory=Prune)
    concurrency: int = setting(8, "parallel Databricks fetches and APIM reads", bounds=(1, 64))
    apply_concurrency: int = setting(128, "APIs written at once; ARM's write bucket, not this, is the limit of a "
                                          "large sync (an import runs ~10 s, so ~50 in flight keep 10 writes/s busy) "
                                          "and the throttle gate paces them to it", bounds=(1, 256))
    update_strategy: str = setting("in-place", "`revision`: import a changed spec into a new API revision, give it "
                                               "the policy, release it, then set the API's name and description; one "
                                               "earlier revision is kept for a rollback, older ones are deleted",
                                   choices=("in-place", "revision"))
    lock_ttl_seconds: int = setting(900, "the sync lock expires by itself after this (a running sync renews it "
                                         "every third of this)", bounds=(1, MAX_LOCK_TTL))
    drift_check_hours: float = setting(24.0, "how often a run reads every API's policy to find edits made outside "
                                             "apimsync (between checks a policy is trusted to be what apimsync last "
                                             "wrote, recorded in the API's marker; `--refresh` checks now; 0: every "
                                             "run)", bounds=(0, None))
    origin: str = field(default="<settings>")  # the file read (set by the loader)
    environment: str | None = field(default=None)  # the entry of `environments:` applied (--env / APIMSYNC_ENV)


# the default names of the named values apimsync keeps: one per workspace, since a token is valid in one only
TOKEN_NAME = "databricks-token-{workspace}"
CLIENT_ID_NAME = "databricks-sp-id-{workspace}"
CLIENT_SECRET_NAME = "databricks-sp-secret-{workspace}"


@dataclass(frozen=True)
class GatewayAuth:
    """What the policies of one workspace's APIs authenticate to Databricks with: named-value sources, names set."""

    token: NamedValueSource
    oauth: OAuthSettings | None

    def sources(self) -> list[NamedValueSource]:
        extra = [self.oauth.client_id, self.oauth.client_secret] if self.oauth else []
        return [self.token, *extra]


def gateway_auth(settings: Settings, workspace: str) -> GatewayAuth:
    """The token and service principal of ``workspace`` (its own, else the policy's), names rendered."""
    ws = next((w for w in settings.workspaces if w.name == workspace), None)
    token = (ws.named_value if ws and ws.named_value else None) or settings.policy.named_value
    oauth = (ws.oauth if ws and ws.oauth else None) or settings.policy.oauth

    def named(source: NamedValueSource, default: str) -> NamedValueSource:
        return dataclasses.replace(source, name=render_name(source.name or default, workspace=workspace))

    if oauth is not None:
        oauth = dataclasses.replace(oauth, client_id=named(oauth.client_id, CLIENT_ID_NAME),
                                    client_secret=named(oauth.client_secret, CLIENT_SECRET_NAME))
    return GatewayAuth(named(token, TOKEN_NAME), oauth)
