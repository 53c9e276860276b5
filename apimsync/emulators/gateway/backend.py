"""Forwarding to a backend (loopback only, redirects passed on, chunked answers streamed) and reading its answer."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from apimsync.emulators._server import Response
from apimsync.emulators.gateway.call import PolicyFailure

LOOPBACK = ("127.0.0.1", "localhost", "::1")
HOP_BY_HOP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"}


class _Refuse(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is the answer (urllib raises it as an HTTPError, handled below)


_NO_REDIRECTS = urllib.request.build_opener(_Refuse)


def send(method: str, url: str, headers: dict[str, str], body: bytes, *, timeout: float,
          stream: bool = False) -> Response:
    """Call a backend (loopback only); ``stream``: a chunked answer is passed on as it arrives, not read whole."""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise PolicyFailure(f"backend host '{host}' is not on this machine; the emulated gateway forwards only to "
                            "loopback addresses")
    request = urllib.request.Request(url, data=body if method not in ("GET", "HEAD") else None, method=method,
                                     headers=headers)
    try:
        # APIM passes a backend's redirect to the caller; it never follows one with the credential it attached
        answer = _NO_REDIRECTS.open(request, timeout=timeout)  # loopback only, checked above
        if stream and answer.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return Response(answer.status, b"", response_headers(answer.headers), stream=relay(answer))
        with answer:
            return Response(answer.status, answer.read(), response_headers(answer.headers))
    except urllib.error.HTTPError as answer:
        return Response(answer.code, answer.read(), response_headers(answer.headers))
    except OSError as exc:
        raise PolicyFailure(f"the backend {url} could not be reached ({exc})") from None


def relay(answer: Any) -> Iterator[bytes]:
    """A backend's chunks as they arrive."""
    with answer:
        while chunk := answer.read1(65536):
            yield chunk


def then(chunks: Iterator[bytes], response: Response, hooks: list[Any]) -> Iterator[bytes]:
    """Pass a streamed answer on, then run the hooks (token counting) on the whole of it."""
    seen = []
    for chunk in chunks:
        seen.append(chunk)
        yield chunk
    response.body = b"".join(seen)
    for hook in hooks:
        hook(response)


def token_usage(response: Response | None) -> dict[str, int]:
    """The ``usage`` token counts of an OpenAI-shaped JSON answer (empty when there are none)."""
    if response is None or response.status >= 300:
        return {}
    try:
        text = response.body.decode("utf-8")
        if text.startswith("data:"):  # a stream: the last event that carries usage
            events = [json.loads(line[5:]) for line in text.splitlines()
                      if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]")]
            usage = next((e.get("usage") for e in reversed(events) if e.get("usage")), None)
        else:
            usage = json.loads(text).get("usage")
    except (ValueError, AttributeError):
        return {}
    if not isinstance(usage, dict):
        return {}
    return {k: int(v) for k, v in usage.items() if k.endswith("_tokens") and isinstance(v, int)}


def json_problem(body: bytes, schema: dict[str, Any]) -> str | None:
    """Why a JSON body does not match a request schema (None when it does)."""
    from jsonschema import Draft4Validator
    from jsonschema.exceptions import SchemaError, _RefResolutionError

    try:
        value = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError) as exc:
        return f"The body is not JSON ({exc}). Line: 1, Position: 1"
    try:  # OpenAPI 3.0's schema dialect is JSON Schema draft 4's (nullable aside)
        error = next(iter(Draft4Validator(schema).iter_errors(value)), None)
    except (SchemaError, RecursionError, _RefResolutionError):
        return None
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}{f' at {where}' if where else ''}. Line: 1, Position: 1"


def response_headers(headers: Any) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}


