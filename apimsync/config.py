"""Configuration: ``apimsync.yaml`` → typed, validated, frozen :class:`apimsync.settings.Settings`.

Precedence: explicit overrides (CLI flags, notebook keywords) > environment (``APIMSYNC_<SECTION>_<KEY>``, and the
APIOps names ``AZURE_SUBSCRIPTION_ID``, ``AZURE_RESOURCE_GROUP_NAME``, ``API_MANAGEMENT_SERVICE_NAME``) > the file
> defaults. Every problem is one ``ConfigError`` line naming the file and the key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from apimsync.backend import insecure_url_problem
from apimsync.binding import ENV_BOOLEANS, build, get_key, hint_of, known_keys, set_key
from apimsync.errors import ConfigError
from apimsync.files import load_yaml, read_text
from apimsync.naming import render_name, sanitize_api_id, sanitize_path
from apimsync.settings import NamedValueSource, Settings, Workspace, gateway_auth

DEFAULT_FILE = "apimsync.yaml"
SERVICE_NAME = re.compile(r"^[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$")
NAMED_VALUE_NAME = re.compile(r"^[A-Za-z0-9\-._]+$")
ENV_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
WORKSPACE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")




CREDENTIALS = ("default", "cli", "managed-identity", "emulator")
ENV_ALIASES = {"AZURE_SUBSCRIPTION_ID": "apim.subscription_id", "AZURE_RESOURCE_GROUP_NAME": "apim.resource_group",
               "API_MANAGEMENT_SERVICE_NAME": "apim.service"}
_PATH_KEYS = ("pipeline", "policy.template", "policy.oauth.template", "apim.ca_bundle")


# -- loading ---------------------------------------------------------------------------------------

def load_settings(path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None, environment: str | None = None) -> Settings:
    """Settings from a file (default ./apimsync.yaml when it exists) with one of its ``environments`` applied
    (``environment``, else ``APIMSYNC_ENV``), the environment variables and overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    origin = "<settings>"
    file = Path(path) if path is not None else Path(DEFAULT_FILE)
    environment = environment or env.get("APIMSYNC_ENV") or None
    if path is not None or file.exists():
        origin = str(file)
        data = _read_yaml(file)
        base = file.resolve().parent
        environments = data.get("environments")
        for part in [data, *(v for v in environments.values() if isinstance(v, dict))] \
                if isinstance(environments, dict) else [data]:  # paths are relative to the file, in each
            for dotted in _PATH_KEYS:
                value = get_key(part, dotted)
                if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                    candidate = base / value
                    if candidate.exists() or not dotted.endswith(".template") or "/" in value:
                        set_key(part, dotted, str(candidate))
        data = apply_environment(data, environment, origin)  # under the environment variables and flags
    for name, dotted in ENV_ALIASES.items():
        if env.get(name):
            set_key(data, dotted, env[name])
    for dotted, value in _env_overrides(env).items():
        set_key(data, dotted, value)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_key(data, dotted, value)
    return settings_from_mapping(data, origin, environment)


def apply_environment(data: Mapping[str, Any], name: str | None, origin: str) -> dict[str, Any]:
    """The file's settings with ``environments.<name>`` merged over them (mappings merge, anything else replaces,
    as APIOps' per-environment configuration does); without a name, the base settings."""
    data = dict(data)
    environments = data.pop("environments", None) or {}
    if not isinstance(environments, Mapping):
        raise ConfigError(f"{origin}: environments: expected a mapping of environment names to settings")
    if name is None:
        return data
    if name not in environments:
        known = ", ".join(sorted(map(str, environments))) or "none defined"
        raise ConfigError(f"{origin}: environment '{name}' is not in environments ({known})")
    if not isinstance(environments[name], Mapping):
        raise ConfigError(f"{origin}: environments.{name}: expected a mapping of settings")
    return _merge(data, environments[name])


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else value
    return out


def settings_from_mapping(data: Mapping[str, Any], origin: str = "<settings>",
                          environment: str | None = None) -> Settings:
    """Validate a mapping shaped like the YAML file into Settings (``environment``: one of its environments)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: expected a mapping at the top level")
    if "environment" in data:
        raise ConfigError(f"{origin}: environment: not a setting; define environments: and choose with --env")
    if "environments" in data:  # (load_settings has applied it already, under the variables and flags)
        data = apply_environment(data, environment, origin)
    if environment is not None and not ENV_NAME.match(environment):
        raise ConfigError(f"{origin}: environment '{environment}': letters, digits, '-', '_' only (at most 32)")
    if "apim" not in data:
        raise ConfigError(f"{origin}: apim: required (subscription_id, resource_group, service)")
    settings = build(Settings, {**data, "origin": origin, "environment": environment}, origin, "")
    _check(settings)
    return settings


def _read_yaml(file: Path) -> dict[str, Any]:
    if not file.exists():
        raise ConfigError(f"{file}: configuration file not found")
    text = read_text(file, ConfigError)
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{file}: not valid YAML ({where}{problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping of settings, got {type(data).__name__}")
    return data


def _env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """APIMSYNC_<SECTION>_<KEY> for every known setting (e.g. APIMSYNC_APIM_SERVICE, APIMSYNC_CONCURRENCY)."""
    out: dict[str, str] = {}
    for dotted in known_keys(Settings, ""):
        name = "APIMSYNC_" + dotted.replace(".", "_").upper()
        if name in env:
            value = env[name]
            if hint_of(Settings, dotted) is bool:
                value = ENV_BOOLEANS.get(value.strip().lower(), value)
            out[dotted] = value
    return out


# a host, or "*." and two or more literal labels, optionally with a port
BACKEND_HOST_PATTERN = re.compile(r"^(?:\*\.)?[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?::[0-9]{1,5})?$|^(?:localhost|"
                                  r"[0-9.]+)(?::[0-9]{1,5})?$")


def _check(s: Settings) -> None:
    o = s.origin
    a = s.apim
    for key in ("subscription_id", "resource_group", "service"):
        if not getattr(a, key).strip():
            raise ConfigError(f"{o}: apim.{key}: required")
    if not SERVICE_NAME.match(a.service) or len(a.service) > 50:
        raise ConfigError(f"{o}: apim.service: '{a.service}' is not a valid APIM service name")
    problem = insecure_url_problem(a.base_url)
    if problem:
        raise ConfigError(f"{o}: apim.base_url: {problem}")
    if a.credential not in CREDENTIALS and not re.fullmatch(r"service-credential:\S+", a.credential):
        raise ConfigError(f"{o}: apim.credential: expected one of {', '.join(CREDENTIALS)} or "
                          f"service-credential:<name>, got '{a.credential}'")
    if a.ca_bundle and not Path(a.ca_bundle).is_file():
        raise ConfigError(f"{o}: apim.ca_bundle: file not found: {a.ca_bundle}")
    names = [w.name for w in s.workspaces]
    for w in s.workspaces:
        if not WORKSPACE_NAME.match(w.name) or len(w.name) > 64:
            raise ConfigError(f"{o}: workspaces: name '{w.name}' may only use letters, digits, '_', '.', '-' "
                              "(at most 64: it is part of each API's ownership marker)")
        # databricks-sdk reads a host without a scheme as https
        problem = insecure_url_problem(w.host if "://" in w.host else f"https://{w.host}") if w.host else None
        if problem:
            raise ConfigError(f"{o}: workspaces[{w.name}].host: {problem}; the Databricks token would travel in "
                              "clear text")
        if w.auth is not None:
            _check_auth(f"{o}: workspaces[{w.name}]", w)
    if len(set(names)) != len(names):
        raise ConfigError(f"{o}: workspaces: names must be unique, got {', '.join(names)}")
    for key in ("api_id", "path", "display_name", "description"):
        try:
            extra = {"task": "task", "served_models": "models"} if key == "description" else {}
            rendered = render_name(getattr(s.naming, key), endpoint="endpoint", workspace="workspace", **extra)
            if key == "api_id":
                sanitize_api_id(rendered)
            if key == "path":
                sanitize_path(rendered)
        except ConfigError as exc:
            raise ConfigError(f"{o}: naming.{key}: {exc}") from None
    sources = [("policy.named_value", s.policy.named_value)]
    if s.policy.oauth:
        sources += [("policy.oauth.client_id", s.policy.oauth.client_id),
                    ("policy.oauth.client_secret", s.policy.oauth.client_secret)]
    for w in s.workspaces:
        if w.named_value:
            sources.append((f"workspaces[{w.name}].named_value", w.named_value))
        if w.oauth:
            sources += [(f"workspaces[{w.name}].oauth.client_id", w.oauth.client_id),
                        (f"workspaces[{w.name}].oauth.client_secret", w.oauth.client_secret)]
    for key, source in sources:
        _check_source(o, key, source)
    owners: dict[str, tuple[str, NamedValueSource]] = {}
    for w in s.workspaces:
        names = [str(src.name) for src in gateway_auth(s, w.name).sources()]
        if len(set(names)) != len(names):
            raise ConfigError(f"{o}: workspace {w.name}: its token and service principal share a named value name "
                              f"({', '.join(str(n) for n in names)})")
        for src in gateway_auth(s, w.name).sources():
            other = owners.setdefault(str(src.name), (w.name, src))
            if other[1] != src:  # one named value, two values: one workspace would send the other's credential
                raise ConfigError(f"{o}: named value '{src.name}' is used by workspaces {other[0]} and {w.name} "
                                  "with different sources; give each workspace its own (a name with {workspace})")
    if s.policy.llm is not None:
        if s.policy.llm.tokens_per_minute and not s.apis.subscription_required:
            raise ConfigError(f"{o}: policy.llm.tokens_per_minute counts per subscription: it needs "
                              "apis.subscription_required (without a key there is no subscription to count)")
        if not NAMED_VALUE_NAME.match(s.policy.llm.metrics_namespace):
            raise ConfigError(f"{o}: policy.llm.metrics_namespace: letters, digits, '-', '.', '_' only")
    for pattern in s.apis.backend_hosts:
        if not BACKEND_HOST_PATTERN.match(pattern):
            raise ConfigError(f"{o}: apis.backend_hosts: '{pattern}' must name a domain: a host, or '*.' and at least "
                              "two labels (*.example.com), optionally with :port; a broader pattern would let any "
                              "workspace send the credential anywhere")


def _check_source(o: str, key: str, source: NamedValueSource) -> None:
    if source.name is not None:
        try:
            name = render_name(source.name, workspace="workspace")
        except ConfigError as exc:
            raise ConfigError(f"{o}: {key}.name: {exc}") from None
        if not NAMED_VALUE_NAME.match(name) or len(name) > 200:
            raise ConfigError(f"{o}: {key}.name: '{source.name}' may only use letters, digits, '-', '.', '_' "
                              "(and {workspace})")
    given = [k for k in ("env", "key_vault", "databricks_secret", "value") if getattr(source, k)]
    if len(given) > 1:
        raise ConfigError(f"{o}: {key}: give one of env, key_vault, databricks_secret, value (got {', '.join(given)})")
    if source.databricks_secret and source.databricks_secret.count("/") != 1:
        raise ConfigError(f"{o}: {key}.databricks_secret: expected 'scope/key'")


def _check_auth(where: str, w: Workspace) -> None:
    """A workspace's own credential: a host to use it at, a token or a client id and secret, secrets not in the
    file."""
    auth = w.auth
    assert auth is not None
    if not w.host or w.profile:
        raise ConfigError(f"{where}.auth: needs host (the workspace it reads) and no profile (the profile's "
                          "credential would compete with it)")
    oauth = auth.client_id is not None or auth.client_secret is not None
    if (auth.token is None) == (not oauth) or (oauth and (auth.client_id is None or auth.client_secret is None)):
        raise ConfigError(f"{where}.auth: give token, or client_id and client_secret (a service principal's "
                          "OAuth secret)")
    for key in ("token", "client_id", "client_secret"):
        source = getattr(auth, key)
        if source is None:
            continue
        given = [k for k in ("env", "databricks_secret", "value") if getattr(source, k)]
        if len(given) != 1:
            raise ConfigError(f"{where}.auth.{key}: give one of env, databricks_secret" +
                              (", value" if key == "client_id" else "") + f" (got {', '.join(given) or 'none'})")
        if source.value and key != "client_id":
            raise ConfigError(f"{where}.auth.{key}: a secret does not belong in the file; read it from env or "
                              "databricks_secret (a secret scope)")
        if source.databricks_secret and source.databricks_secret.count("/") != 1:
            raise ConfigError(f"{where}.auth.{key}.databricks_secret: expected 'scope/key'")
