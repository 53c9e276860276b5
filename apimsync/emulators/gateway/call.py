"""One call through the emulated gateway: the state its policy runs against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apimsync.emulators._server import Response


class PolicyFailure(Exception):
    """A policy the gateway cannot run: 500, with the reason in the message."""



@dataclass
class Call:
    """The request as the policy changes it, its variables, and the backend's answer."""

    method: str
    path: str  # operation-relative URL, after rewrite-uri
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    template_values: dict[str, str]
    backend_url: str
    variables: dict[str, Any] = field(default_factory=dict)
    response: Response | None = None
    api_id: str = ""
    operation: str = ""
    subscription: str = ""  # the id of the subscription whose key was sent
    request_schema: dict[str, Any] | None = None
    after_response: list[Any] = field(default_factory=list)  # hooks run on the backend's answer
    forwarded: bool = False  # the backend was called


