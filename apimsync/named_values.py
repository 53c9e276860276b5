"""The named values the policies read, decided once each, for each API as it is planned.

Those apimsync keeps (each workspace's token, its service principal's id and secret) are planned: their source is
read now and their state in APIM once. Any other a policy references must already exist in APIM. An API whose
policy reads a named value that cannot be resolved or does not exist fails alone, with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from apimsync.config import NamedValueSource, Settings
from apimsync.desired import kept_named_values, named_value_change
from apimsync.errors import ApimsyncError, ConfigError
from apimsync.model import DesiredApi
from apimsync.plan import Failure, NamedValueChange
from apimsync.target import ApimTarget


class NamedValues:
    """Thread-safe: the plan's workers ask for each API as it is built."""

    def __init__(self, settings: Settings, apim: ApimTarget, env: Mapping[str, str] | None) -> None:
        self._settings = settings
        self._apim = apim
        self._env = env
        self._lock = threading.Lock()
        # name -> its change; None: it exists in APIM and is not apimsync's; a string: why it cannot be used
        self._decided: dict[tuple[str, str], NamedValueChange | str | None] = {}

    def check(self, d: DesiredApi) -> DesiredApi | Failure:
        """``d``, or its failure when a named value its policy reads cannot be used."""
        for _name, decided in self._for(d):
            if isinstance(decided, str):
                return Failure(d.workspace, d.endpoint, "policy", decided, d.api_id)
        return d

    def of(self, d: DesiredApi) -> tuple[NamedValueChange, ...]:
        """The changes to the named values apimsync keeps that ``d``'s policy reads."""
        return tuple(c for _, c in self._for(d) if isinstance(c, NamedValueChange))

    def used(self, desired: Iterable[DesiredApi]) -> list[NamedValueChange]:
        """Every planned named value the APIs read, by name."""
        changes = {c.name: c for d in desired for c in self.of(d)}
        return [changes[name] for name in sorted(changes)]

    def _for(self, d: DesiredApi) -> list[tuple[str, NamedValueChange | str | None]]:
        kept = kept_named_values([d], self._settings)
        return [(name, self._decide(name, kept.get(name))) for name in d.named_value_refs]

    def _decide(self, name: str, kept: tuple[NamedValueSource, str] | None) -> NamedValueChange | str | None:
        from apimsync.secrets import resolve_named_value

        decision = (name, repr(kept))  # one name may be kept for one workspace and read by another's policy
        with self._lock:  # a few names, each decided once: one at a time is fine
            if decision not in self._decided:
                try:
                    if kept is None:
                        if self._apim.get_named_value(name) is None:
                            raise ConfigError(f"the policy references named value '{name}', which does not exist "
                                              "in APIM")
                        self._decided[decision] = None
                    else:
                        source, key = kept
                        want = resolve_named_value(source, env=self._env, key=key)
                        self._decided[decision] = named_value_change(
                            want, self._apim.get_named_value(name), source, f"{self._apim.service_id}/namedValues/"
                                                                             f"{name}")
                except ApimsyncError as exc:
                    self._decided[decision] = str(exc)
            return self._decided[decision]
