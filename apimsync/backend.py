"""Where APIM may send the Databricks credential: the backend allow-list.

The workspace's answers choose each API's backend URL (``endpoint_url`` of route-optimized endpoints), and the
policy attaches a credential to every call to it, so the URL is checked before it becomes a backend: https, and
the workspace's own host or a Databricks data-plane host of the same cloud, or a host the configuration allows.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

# The DNS zones of Databricks workspaces and their data planes, per cloud (databricks-sdk environments.py; route-
# optimized endpoints answer on <id>.<shard>.serving.azuredatabricks.net: Databricks docs, "Query route-optimized
# serving endpoints")
CLOUD_ZONES = (".azuredatabricks.net", ".databricks.azure.us", ".databricks.azure.cn", ".cloud.databricks.com",
               ".gcp.databricks.com")


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost: the emulators, where plain http is allowed."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# what a host may be made of: DNS labels, or an IP literal (IPv6 in brackets); parsers disagree on anything else
# ("evil.com\.azuredatabricks.net" is one host to Python and evil.com to a WHATWG or .NET parser)
_CLEAN_AUTHORITY = re.compile(r"^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def insecure_url_problem(url: str) -> str | None:
    """Why a URL that will carry a credential is not acceptable: not https (loopback aside), not a plain URL."""
    if any(ch in url for ch in "\\ \t\r\n") or not url.isprintable():
        return f"'{url}' contains a backslash, whitespace or a control character"
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        return f"'{url}' is not a valid URL ({exc})"
    if not parts.hostname:
        return f"'{url}' has no host"
    if parts.username or parts.password or "@" in parts.netloc:
        return f"'{url}' carries credentials"
    if not _CLEAN_AUTHORITY.match(parts.netloc):
        return f"'{url}' has a host that is not a plain DNS name or IP address"
    if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.hostname)):
        return f"'{url}' is not https (plain http is accepted for loopback hosts only)"
    return None


def backend_problem(url: str, workspace_url: str, extra_hosts: Sequence[str] = ()) -> str | None:
    """Why ``url`` may not be an API's backend for this workspace, or None when it may."""
    problem = insecure_url_problem(url)
    if problem:
        return f"backend {problem}"
    parts, workspace = urlsplit(url), urlsplit(workspace_url)
    host, port = (parts.hostname or "").lower(), _port(parts.scheme, parts.port)
    workspace_host = (workspace.hostname or "").lower()
    # the workspace's own host means its own port too (on loopback, another port is another service)
    if host == workspace_host and port == _port(workspace.scheme, workspace.port):
        return None
    zone = next((z for z in CLOUD_ZONES if workspace_host.endswith(z)), None)
    if zone is not None and host.endswith(zone) and port == 443:
        return None
    for pattern in extra_hosts:
        want_host, _, want_port = pattern.lower().partition(":")
        if fnmatch.fnmatchcase(host, want_host) and port == (int(want_port) if want_port else 443):
            return None
    where = host if port == 443 else f"{host}:{port}"
    return (f"backend host '{where}' is neither the workspace's host nor a Databricks data-plane host of its cloud; "
            "the credential would go there (allow it with apis.backend_hosts if it is yours)")


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else (80 if scheme == "http" else 443)
