"""Configuration: loading, precedence, validation messages, name sanitising."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apimsync.config import load_settings, settings_from_mapping
from apimsync.errors import ConfigError
from apimsync.naming import sanitize_api_id, sanitize_path

TARGET = {"subscription_id": "sub", "resource_group": "rg", "service": "my-apim"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "apimsync.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_file_loads_into_typed_settings(tmp_path: Path) -> None:
    (tmp_path / "pipe.yaml").write_text("steps: []\n")
    path = write(tmp_path, """
workspaces:
  - {name: prod, host: https://adb-1.azuredatabricks.net}
  - {name: dev, profile: DEV}
select: {include: ["ml-*"], exclude: ["*-test"], tags: {apim-sync: "true"}, ready_only: true}
apim: {subscription_id: sub, resource_group: rg, service: my-apim, credential: cli}
naming: {api_id: "ml-{workspace}-{endpoint}"}
pipeline: pipe.yaml
apis: {products: [starter], tags: [ml], subscription_required: false}
prune: {enabled: true, max_delete_fraction: 0.5, protect: ["keep-*"]}
concurrency: 4
update_strategy: revision
""")
    s = load_settings(path, env={})
    assert [w.name for w in s.workspaces] == ["prod", "dev"]
    assert s.workspaces[1].profile == "DEV"
    assert dict(s.select.tags) == {"apim-sync": "true"}
    assert s.pipeline == str(tmp_path / "pipe.yaml")  # relative to the config file
    assert s.apis.products == ("starter",) and s.apis.subscription_required is False
    assert s.prune.protect == ("keep-*",) and s.concurrency == 4 and s.update_strategy == "revision"
    assert s.origin == str(path)


def test_precedence_overrides_then_env_then_file(tmp_path: Path) -> None:
    path = write(tmp_path, "apim: {subscription_id: sub, resource_group: rg, service: from-file}\nconcurrency: 2\n")
    env = {"APIMSYNC_APIM_SERVICE": "from-env", "APIMSYNC_CONCURRENCY": "3", "API_MANAGEMENT_SERVICE_NAME": "apiops"}
    assert load_settings(path, env=env).apim.service == "from-env"
    assert load_settings(path, env=env).concurrency == 3
    assert load_settings(path, env=env, overrides={"apim.service": "from-flag"}).apim.service == "from-flag"
    assert load_settings(path, env={"API_MANAGEMENT_SERVICE_NAME": "apiops"}).apim.service == "apiops"
    assert load_settings(path, env={}).apim.service == "from-file"


def test_apiops_environment_names_are_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no apimsync.yaml here
    env = {"AZURE_SUBSCRIPTION_ID": "s", "AZURE_RESOURCE_GROUP_NAME": "r", "API_MANAGEMENT_SERVICE_NAME": "svc",
           "APIMSYNC_PRUNE_ENABLED": "yes"}
    s = load_settings(None, env=env)
    assert (s.apim.subscription_id, s.apim.resource_group, s.apim.service) == ("s", "r", "svc")
    assert s.prune.enabled is True


_WS = "apim: {subscription_id: s, resource_group: r, service: x}\nworkspaces: [{name: a, host: https://adb-1.2.net"


@pytest.mark.parametrize(("text", "message"), [
    ("apim: [unclosed", r"apimsync\.yaml: not valid YAML \(line \d+"),
    ("- a\n- b\n", r"expected a mapping of settings"),
    ("concurrency: 2\n", r"apim: required"),
    ("apim: {subscription_id: s, resource_group: r}\n", r"apim\.service: required"),
    ("apim: {subscription_id: s, resource_group: r, service: x}\nprunee: {}\n",
     r"unknown key 'prunee' \(did you mean 'prune'\?\)"),
    ("apim: {subscription_id: s, resource_group: r, service: x, servce: y}\n", r"unknown key 'apim\.servce'"),
    ("apim: {subscription_id: s, resource_group: r, service: x}\nconcurrency: many\n",
     r"concurrency: expected an integer, got 'many'"),
    ("apim: {subscription_id: s, resource_group: r, service: x}\nprune: {enabled: maybe}\n",
     r"prune\.enabled: expected true or false"),
    ("apim: {subscription_id: s, resource_group: r, service: x}\nnaming: {api_id: '{nope}'}\n",
     r"naming\.api_id: .*unknown placeholder \{nope\}"),
    ("apim: {subscription_id: s, resource_group: r, service: x}\nnaming: {path: '///'}\n",
     r"naming\.path: path template produced"),
    ("apim: {subscription_id: s, resource_group: r, service: 'bad name!'}\n", r"apim\.service: 'bad name!'"),
    ("apim: {subscription_id: s, resource_group: r, service: x, credential: password}\n", r"apim\.credential"),
    ("apim: {subscription_id: s, resource_group: r, service: x, ca_bundle: missing.pem}\n",
     r"ca_bundle: file not found"),
    ("apim: {subscription_id: s, resource_group: r, service: x}\nupdate_strategy: yolo\n", r"update_strategy"),
    ("apim: {subscription_id: s, resource_group: r, service: x}\npolicy: {named_value: {env: A, key_vault: B}}\n",
     r"give one of env, key_vault, databricks_secret"),
    ("apim: {subscription_id: s, resource_group: r, service: x}\nworkspaces: [{name: a}, {name: a}]\n",
     r"names must be unique"),
    # a workspace's own credential (for a job reaching another workspace)
    ("apim: {subscription_id: s, resource_group: r, service: x}\nworkspaces: [{name: a, auth: {token: {env: T}}}]\n",
     r"workspaces\[a\]\.auth: needs host"),
    (f"{_WS}, profile: p, auth: {{token: {{env: T}}}}}}]\n", r"workspaces\[a\]\.auth: needs host .* and no profile"),
    (f"{_WS}, auth: {{client_id: {{value: c}}}}}}]\n", r"auth: give token, or client_id and client_secret"),
    (f"{_WS}, auth: {{token: {{env: T}}, client_id: {{value: c}}, client_secret: {{env: S}}}}}}]\n",
     r"auth: give token, or client_id and client_secret"),
    (f"{_WS}, auth: {{token: {{value: dapi123}}}}}}]\n", r"auth\.token: a secret does not belong in the file"),
    (f"{_WS}, auth: {{token: {{env: T, databricks_secret: s/k}}}}}}]\n", r"auth\.token: give one of env"),
    (f"{_WS}, auth: {{client_id: {{value: c}}, client_secret: {{databricks_secret: nokey}}}}}}]\n",
     r"auth\.client_secret\.databricks_secret: expected 'scope/key'"),
])
def test_bad_configuration_is_one_line_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, env={})
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(str(path))


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_settings_from_mapping_for_notebooks() -> None:
    s = settings_from_mapping({"apim": TARGET, "select": {"include": "a-*,b-*"}})
    assert s.select.include == ("a-*", "b-*")


@given(st.text(min_size=1, max_size=300))
def test_sanitized_api_ids_follow_apim_rules(raw: str) -> None:
    try:
        api_id = sanitize_api_id(raw)
    except ConfigError:
        return
    assert re.fullmatch(r"[^*#&+:<>?]{1,256}", api_id)
    assert re.fullmatch(r"[a-z0-9._-]+", api_id)
    assert sanitize_api_id(api_id) == api_id


@given(st.text(min_size=1, max_size=500))
def test_sanitized_paths_follow_apim_rules(raw: str) -> None:
    try:
        path = sanitize_path(raw)
    except ConfigError:
        return
    assert not path.startswith("/") and not path.endswith("/") and len(path) <= 400
    assert re.fullmatch(r"[A-Za-z0-9._~/-]+", path)
    assert sanitize_path(path) == path


def test_the_longest_valid_names_keep_the_marker_within_apims_limit() -> None:
    """apiRevisionDescription is at most 256 characters (definitions.json); the marker holds the workspace name
    (at most 64, checked here) and the endpoint name (Databricks: at most 63)."""
    from apimsync.model import MARKER_MAX, Marker

    longest = Marker("w" * 64, "e" * 63, "0" * 12, "1" * 12)
    assert len(str(longest)) <= MARKER_MAX and Marker.parse(str(longest)) == longest
    with pytest.raises(ConfigError, match="at most 64"):
        settings_from_mapping({"apim": {"subscription_id": "s", "resource_group": "r", "service": "svc"},
                               "workspaces": [{"name": "w" * 65}]})


def test_two_workspaces_never_share_a_named_value_with_different_values() -> None:
    """One named value holds one token: two workspaces naming it with different sources would send one
    workspace's token to the other's endpoints."""
    base = {"apim": {"subscription_id": "s", "resource_group": "r", "service": "svc"}}
    shared = {**base, "workspaces": [{"name": "a", "named_value": {"name": "tok", "env": "A"}},
                                     {"name": "b", "named_value": {"name": "tok", "env": "B"}}]}
    with pytest.raises(ConfigError, match="named value 'tok' is used by workspaces a and b with different sources"):
        settings_from_mapping(shared)
    same = {**base, "workspaces": [{"name": "a", "named_value": {"name": "tok", "env": "T"}},
                                   {"name": "b", "named_value": {"name": "tok", "env": "T"}}]}
    assert len(settings_from_mapping(same).workspaces) == 2, "one source for both: one credential, allowed"
    assert len(settings_from_mapping({**base, "workspaces": [{"name": "a"}, {"name": "b"}]}).workspaces) == 2
