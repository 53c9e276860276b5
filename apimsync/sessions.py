"""requests sessions that read the environment once per host, not once per request.

requests merges the proxy and CA-bundle environment into every request (``Session.merge_environment_settings``
walks ``os.environ`` twice for the proxies and their ``no_proxy`` exceptions): about a fifth of apimsync's CPU in
a large sync, measured with yappi. The answer depends only on the URL's scheme and host and on the request's own
settings, and the environment does not change during a run, so it is kept per host.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit


def read_environment_once(session: Any) -> Any:
    """``session`` (a ``requests.Session``), its environment settings computed once per host and settings."""
    merge = session.merge_environment_settings
    known: dict[tuple[Any, ...], dict[str, Any]] = {}
    lock = threading.Lock()

    def merged(url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        if proxies:  # a request's own proxies: as requests does it
            return dict(merge(url, proxies, stream, verify, cert))
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream, verify, cert if not isinstance(cert, list) else tuple(cert))
        with lock:
            if key not in known:
                known[key] = merge(url, proxies, stream, verify, cert)
            settings = known[key]
        return {**settings, "proxies": dict(settings["proxies"])}

    session.merge_environment_settings = merged
    return session


def databricks_session(client: Any) -> None:
    """The same for a databricks-sdk ``WorkspaceClient``'s session, where this SDK version keeps it (its
    ``_BaseClient._session``); a version that keeps it elsewhere is left as it is."""
    session = getattr(getattr(getattr(client, "api_client", None), "_api_client", None), "_session", None)
    if session is not None and hasattr(session, "merge_environment_settings"):
        read_environment_once(session)
