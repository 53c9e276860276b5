"""The Databricks edge: list a workspace's serving endpoints and fetch each one's OpenAPI spec (databricks-sdk)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from apimsync.__about__ import __version__
from apimsync.endpoints import ENDPOINT_NAME, Endpoint, Fetched, Invalid, describe_kind
from apimsync.errors import SourceError, SpecError
from apimsync.sessions import databricks_session
from apimsync.settings import Workspace

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

log = logging.getLogger(__name__)

class DatabricksSource:
    """One Databricks workspace, reached through databricks-sdk (unified auth)."""

    def __init__(self, workspace: Workspace, *, client: WorkspaceClient | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.workspace = workspace
        self._env = env  # where workspaces[].auth reads environment variables (None: os.environ)
        if client is not None:
            databricks_session(client)
            self.__dict__["client"] = client

    @cached_property
    def client(self) -> WorkspaceClient:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        ws = self.workspace
        try:
            client = WorkspaceClient(config=Config(host=ws.host, profile=ws.profile, product="apimsync",
                                                   product_version=__version__,
                                                   retry_timeout_seconds=ws.retry_timeout_seconds,
                                                   **self._credential()))
            databricks_session(client)
            return client
        except Exception as exc:  # the SDK raises ValueError and friends for config problems
            raise SourceError(f"workspace {self.workspace.name}: {_one_line(exc)}") from exc

    def _credential(self) -> dict[str, Any]:
        """The Config fields of ``workspaces[].auth``, with its auth type forced so that no other credential
        (runtime auth above all) is used instead; none without it (unified auth)."""
        from apimsync.secrets import read_secret

        auth, key = self.workspace.auth, f"workspaces[{self.workspace.name}].auth"
        if auth is None:
            return {}
        if auth.token is not None:
            return {"auth_type": "pat", "token": read_secret(auth.token, self._env, f"{key}.token").reveal()}
        assert auth.client_id is not None and auth.client_secret is not None  # config checked
        return {"auth_type": "oauth-m2m",
                "client_id": read_secret(auth.client_id, self._env, f"{key}.client_id").reveal(),
                "client_secret": read_secret(auth.client_secret, self._env, f"{key}.client_secret").reveal()}

    @cached_property
    def host(self) -> str:
        """The workspace URL: the backend host of its APIs and the issuer of their OAuth tokens.

        databricks-sdk's runtime auth (in a notebook or job) ignores a configured host and connects to the current
        workspace (databricks-sdk-py#202), and on classic compute reports a regional URL as its host
        (databricks-sdk-py#1039): neither may become a backend, so both are refused here with what to do."""
        name = self.workspace.name
        try:
            connected = normalise_host(str(self.client.config.host))
        except ValueError as exc:
            raise SourceError(f"workspace {name}: the host databricks-sdk uses is not a valid URL ({exc})") from None
        runtime_auth = self.client.config.auth_type in ("runtime", "runtime-oauth")
        if self.workspace.host:
            configured = normalise_host(self.workspace.host)
            # on classic compute runtime auth connects through the regional URL: the configured host is right when
            # it is the workspace the notebook context names
            if connected != configured and not (runtime_auth and _same_host(runtime_workspace_url(), configured)):
                raise SourceError(
                    f"workspace {name}: configured host {configured}, but databricks-sdk connected to {connected} "
                    f"({self.client.config.auth_type} auth: runtime auth always uses the current workspace); give "
                    f"this workspace its own credential (workspaces[{name}].auth: a token, or a service principal's "
                    "client id and secret) so apimsync reads the workspace it publishes")
            return configured
        # runtime auth (a notebook or job reading its own workspace) may report a regional URL: the notebook
        # context knows the workspace URL. Any other auth connected to the host it names.
        if runtime_auth or REGIONAL_HOST.match(connected):
            runtime = runtime_workspace_url()
            if runtime:
                return runtime
        if REGIONAL_HOST.match(connected):
            raise SourceError(f"workspace {name}: databricks-sdk reports the regional URL {connected}, not the "
                              "workspace URL; set workspaces[].host to https://adb-<id>.<n>.azuredatabricks.net")
        return connected

    def list_endpoints(self) -> list[Endpoint | Invalid]:
        """All serving endpoints; the raw list keeps fields the SDK's dataclasses drop (endpoint_type)."""
        try:
            payload = self.client.api_client.do("GET", "/api/2.0/serving-endpoints")
        except Exception as exc:
            raise SourceError(f"workspace {self.workspace.name}: listing serving endpoints: {_one_line(exc)}") from exc
        items = payload.get("endpoints") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            if items is None:
                return []
            raise SourceError(f"workspace {self.workspace.name}: the endpoint list is {describe_kind(items)}, not "
                              "a list")
        host = self.host  # a wrong host fails the workspace, not each endpoint
        out: list[Endpoint | Invalid] = []
        for i, item in enumerate(items):
            try:
                out.append(Endpoint.from_api(self.workspace.name, host, item))
            except SourceError as exc:
                name = item.get("name") if isinstance(item, Mapping) else None
                out.append(Invalid(self.workspace.name, name if isinstance(name, str) else f"#{i}", str(exc)))
        return out

    def fetch(self, endpoint: Endpoint, unchanged: Callable[[Endpoint], object] | None = None, *,
              details: bool = False) -> Fetched:
        """The OpenAPI spec of one endpoint, and its details where the list does not say enough; where Databricks
        serves no spec and the endpoint's task has a known shape, a synthesized one. ``unchanged(endpoint)`` true:
        the published API still holds, and nothing more is read.

        The details are read for a route-optimized endpoint (its dedicated URL and token scope are there only:
        the list says route_optimized, never where), with ``details`` (a pipeline reads the config version, which
        the list does not carry), and when the spec is missing (a vanished endpoint answers 404 there too)."""
        from databricks.sdk.errors import DatabricksError

        from apimsync.files import MAX_SPEC_BYTES
        from apimsync.kinds import task_of
        from apimsync.spec import load_spec

        if not ENDPOINT_NAME.fullmatch(endpoint.name):
            # checked before the name becomes part of a URL: "../x" or "a?b" must never address something else
            return Fetched(endpoint, error="the name is outside Databricks' endpoint name characters (letters, digits, "
                                           "'-', '_'); refused before it reaches a URL")
        needs_details = details or (endpoint.route_optimized and not endpoint.endpoint_url)
        if unchanged is not None and not needs_details and unchanged(endpoint):
            return Fetched(endpoint, reused=True)
        if needs_details:
            read = self._details(endpoint)
            if isinstance(read, Fetched):
                return read
            endpoint = read
            if unchanged is not None and unchanged(endpoint):
                return Fetched(endpoint, reused=True)
        try:
            raw = self.client.serving_endpoints.get_open_api(endpoint.name).contents
            body = raw.read(MAX_SPEC_BYTES + 1) if raw is not None else b""  # load_spec refuses what is over
        except DatabricksError as exc:
            if not needs_details and _status_of(exc) == 404:  # no schema, or no endpoint any more?
                read = self._details(endpoint)
                if isinstance(read, Fetched):
                    return read
                endpoint = read
            if not (means_no_schema(exc) or serves_no_schema(endpoint, exc)):
                return Fetched(endpoint, error=f"fetching the spec: {_one_line(exc)}")
            task = task_of(endpoint.task)
            if task is not None:
                return Fetched(endpoint, spec=task.spec(endpoint.name), synthesized=True)
            return Fetched(endpoint, skip_reason=f"no schema available ({_one_line(exc)})")
        except Exception as exc:
            return Fetched(endpoint, error=f"fetching the spec: {_one_line(exc)}")
        try:
            spec = load_spec(body, origin=f"spec of endpoint {endpoint.name}")
        except SpecError as exc:
            return Fetched(endpoint, error=str(exc))
        return Fetched(endpoint, spec=spec)

    def _details(self, endpoint: Endpoint) -> Endpoint | Fetched:
        """The endpoint as its detail GET reports it (the listed tags kept when the details carry none), or why
        not (gone since it was listed: skipped; anything else: failed)."""
        from databricks.sdk.errors import DatabricksError

        try:
            detail = self.client.api_client.do("GET", f"/api/2.0/serving-endpoints/{endpoint.name}")
        except DatabricksError as exc:
            if _status_of(exc) == 404:
                return Fetched(endpoint, skip_reason=f"the endpoint disappeared since it was listed ({_one_line(exc)})")
            return Fetched(endpoint, error=f"reading the endpoint: {_one_line(exc)}")
        except Exception as exc:  # timeouts, connection errors: the SDK already retried
            return Fetched(endpoint, error=f"reading the endpoint: {_one_line(exc)}")
        try:
            if not isinstance(detail, dict) or detail.get("name") != endpoint.name:
                raise SourceError(f"name: asked for '{endpoint.name}', got "
                                  f"{describe_kind(detail.get('name') if isinstance(detail, dict) else detail)}")
            return Endpoint.from_api(endpoint.workspace, endpoint.host, {**detail, "tags": detail.get(
                "tags") or [{"key": k, "value": v} for k, v in endpoint.tags.items()]})
        except SourceError as exc:
            return Fetched(endpoint, error=f"the endpoint's details: {exc}")


def means_no_schema(exc: Exception) -> bool:
    """Whether an error from ``GET /serving-endpoints/{name}/openapi`` means "this endpoint has no schema", as
    opposed to a failure to report. Only after the endpoint's own GET succeeded: then a 404 can only mean that its
    schema is missing (a served model logged without a signature; observed: RESOURCE_DOES_NOT_EXIST). Every other
    answer (400, 401, 403, 429, 5xx) is a failure with Databricks' message."""
    return _status_of(exc) == 404


def serves_no_schema(endpoint: Endpoint, exc: Exception) -> bool:
    """Whether an endpoint that serves no schema of its own answered ``/openapi`` with a client error: one that
    lists no served entity (Agent Bricks: ``"config": {}``) or a pay-per-token one. What Databricks answers for
    them is not documented (Databricks' REST reference names none), so any 4xx but 401, 403 and 429 (not ours to paper
    over) means "build the spec from the task"."""
    status = _status_of(exc)
    no_entities = not endpoint.served_entities or not endpoint.kind.own_schema
    client_error = status is None or status not in (401, 403, 429)
    return no_entities and client_error and not _is_server_error(exc)


def _is_server_error(exc: Exception) -> bool:
    from databricks.sdk import errors

    return isinstance(exc, (errors.InternalError, errors.TemporarilyUnavailable, errors.DeadlineExceeded))


# Azure's regional control-plane hosts (westeurope-c2.azuredatabricks.net), never a workspace's own URL (adb-...)
REGIONAL_HOST = re.compile(r"^https://(?!adb-)[a-z]+[0-9]*(?:-c\d+)?\.azuredatabricks\.net$")


def normalise_host(host: str) -> str:
    """``https://`` when there is no scheme, lower-case host, no default port, no trailing slash (as the SDK does)."""
    url = host if "://" in host else f"https://{host}"
    parts = urlsplit(url.rstrip("/"))
    hostname = (parts.hostname or "").lower()
    if ":" in hostname:  # an IPv6 literal keeps its brackets
        hostname = f"[{hostname}]"
    netloc = hostname + (f":{parts.port}" if parts.port and parts.port != 443 else "")
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _same_host(url: str | None, other: str) -> bool:
    """Whether two URLs name the same host and port (the notebook context gives a host without a scheme)."""
    return url is not None and urlsplit(url).hostname == urlsplit(other).hostname \
        and (urlsplit(url).port or 443) == (urlsplit(other).port or 443)


def runtime_workspace_url() -> str | None:
    """On Databricks (notebook or job): the workspace URL from the notebook context's browserHostName."""
    from apimsync.credentials import databricks_dbutils

    dbutils = databricks_dbutils()
    if dbutils is None:
        return None
    try:
        context = dbutils.notebook.entry_point.getDbutils().notebook().getContext()
        host = context.browserHostName().get()
    except Exception:  # not a notebook context (or an older runtime): the configured host must do
        return None
    return normalise_host(str(host)) if host else None


def _status_of(exc: Exception) -> int | None:
    from databricks.sdk import errors

    table = {errors.BadRequest: 400, errors.Unauthenticated: 401, errors.PermissionDenied: 403,
             errors.NotFound: 404, errors.ResourceConflict: 409, errors.TooManyRequests: 429}
    for klass, status in table.items():
        if isinstance(exc, klass):
            return status
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
