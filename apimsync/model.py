"""The two sides a plan compares: the APIs apimsync wants (DesiredApi) and the ones APIM has (ActualApi).

Ownership lives on the API itself, in ``apiRevisionDescription``: apimsync writes a marker there with the
workspace, the endpoint and short hashes of the spec and settings it last sent, so a second run knows what it
owns and what changed without any state file and without extra ARM writes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import quote, unquote

MARKER_PREFIX = "apimsync:1"
MARKER_MAX = 256  # apiRevisionDescription: maxLength 256 (definitions.json, ApiRevisionContract)
_MARKER = re.compile(r"apimsync:1 ws=(\S*) ep=(\S*) spec=(\S*) cfg=(\S*)(?: env=(\S+))?(?: src=(\S+))?(?: pol=(\S+))?")


def short_hash(value: Any) -> str:
    """12 hex chars of sha256 over canonical JSON (or the string itself)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Marker:
    """What apimsync last wrote to an API, read back from its revision description."""

    workspace: str
    endpoint: str
    spec: str
    settings: str
    environment: str = ""  # the configuration's environment (--env), when it has one
    source: str = ""  # fingerprint of what determined the spec: when it is unchanged, the spec is not fetched again
    policy: str = ""  # hash of the policy apimsync wrote: between drift checks it stands for the policy itself

    def __str__(self) -> str:
        # fields are percent-encoded and the whole text must match one fixed shape, so no name can add a field
        values = (self.workspace, self.endpoint, self.spec, self.settings, self.environment, self.source,
                  self.policy)
        ws, ep, spec, cfg, env, src, pol = (quote(v, safe="", errors="surrogatepass") for v in values)
        return (f"{MARKER_PREFIX} ws={ws} ep={ep} spec={spec} cfg={cfg}" + (f" env={env}" if env else "")
                + (f" src={src}" if src else "") + (f" pol={pol}" if pol else ""))

    @classmethod
    def parse(cls, text: str | None) -> Marker | None:
        match = _MARKER.fullmatch(text or "")
        if not match:
            return None
        return cls(*(unquote(v or "", errors="surrogatepass") for v in match.groups()))


@dataclass(frozen=True)
class ApiSettingsView:
    """The API properties apimsync sets besides the spec, as APIM reports them back."""

    path: str
    display_name: str
    description: str
    service_url: str
    subscription_required: bool
    protocols: tuple[str, ...] = ("https",)

    def differences(self, other: ApiSettingsView) -> list[str]:
        return [name for name in self.__dataclass_fields__ if getattr(self, name) != getattr(other, name)]


@dataclass(frozen=True)
class DesiredApi:
    """One APIM API that an endpoint should have."""

    api_id: str
    workspace: str
    endpoint: str
    settings: ApiSettingsView
    spec_json: str | None  # the transformed spec, compact JSON, sent inline; None: unchanged, not fetched again
    policy_xml: str
    products: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # shown in the plan (a synthesized spec, the OAuth policy); not part of the hashes
    environment: str = ""
    source: str = ""  # the source fingerprint (see Marker.source)
    spec_hash: str = ""  # with spec_json None: the hash of the spec published before, which still holds
    task: str | None = None  # the endpoint's task: what verify sends it (not part of the hashes)

    @cached_property
    def policy_form(self) -> str:
        """The policy as policies are compared (:func:`apimsync.policy.canonical_policy`), computed once."""
        from apimsync.policy import canonical_policy

        return canonical_policy(self.policy_xml)

    @cached_property
    def named_value_refs(self) -> tuple[str, ...]:
        """The named values the policy reads (``{{name}}``), sorted, found once."""
        from apimsync.policy import named_value_refs

        return tuple(sorted(named_value_refs(self.policy_xml)))

    @cached_property
    def marker(self) -> Marker:
        spec = short_hash(self.spec_json) if self.spec_json is not None else self.spec_hash
        return Marker(self.workspace, self.endpoint, spec, short_hash(self.settings_dict()), self.environment,
                      self.source, short_hash(self.policy_xml))

    def settings_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "path": s.path, "displayName": s.display_name, "description": s.description,
            "serviceUrl": s.service_url, "subscriptionRequired": s.subscription_required,
            "protocols": list(s.protocols),
        }


@dataclass(frozen=True)
class ActualApi:
    """One API as listed from APIM (the current revision)."""

    api_id: str
    settings: ApiSettingsView
    revision: str = "1"
    revision_description: str | None = None
    policy_xml: str | None = None  # read only for owned APIs, and only on a drift check once the marker has pol=
    policy_unread: bool = False  # not read this run (between drift checks): the marker's policy hash stands for it
    products: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    @cached_property
    def marker(self) -> Marker | None:
        return Marker.parse(self.revision_description)

    @cached_property
    def policy_form(self) -> str | None:
        """The policy as policies are compared (:func:`apimsync.policy.canonical_policy`), computed once."""
        from apimsync.policy import canonical_policy

        return None if self.policy_xml is None else canonical_policy(self.policy_xml)

    @property
    def owned(self) -> bool:
        return self.marker is not None


def api_from_arm(api_id: str, props: Mapping[str, Any]) -> ActualApi:
    """Build an ActualApi from an ARM ApiContract's properties (as JSON names)."""
    settings = ApiSettingsView(
        path=props.get("path") or "",
        display_name=props.get("displayName") or "",
        description=props.get("description") or "",
        service_url=props.get("serviceUrl") or "",
        subscription_required=bool(props.get("subscriptionRequired", True)),
        protocols=tuple(props.get("protocols") or ()),
    )
    return ActualApi(api_id=api_id, settings=settings, revision=str(props.get("apiRevision") or "1"),
                     revision_description=props.get("apiRevisionDescription"))

