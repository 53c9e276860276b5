"""The HTTP(S) plumbing both emulators share: a threaded stdlib server, a tiny request and
response pair, and fault rules that tests and benchmarks switch on per run.

An emulator is an ``app``: a callable taking a :class:`Request` and returning a
:class:`Response` (or raising :class:`DropConnection` to close the socket unanswered).
"""

from __future__ import annotations

import json
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


class DropConnection(Exception):
    """Raised by an app to close the connection without sending a response."""


@dataclass
class Request:
    method: str
    path: str  # still percent-encoded, without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    @property
    def bearer_token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and auth[7:].strip():
            return auth[7:].strip()
        return None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None  # sent chunk by chunk (Transfer-Encoding: chunked) instead of ``body``

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        body = json.dumps(payload).encode("utf-8")
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    @classmethod
    def text(cls, status: int, text: str, headers: dict[str, str] | None = None) -> Response:
        return cls(status, text.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8", **(headers or {})})


App = Callable[[Request], Response]


@dataclass
class FaultRule:
    """Answer matching requests with ``status`` (or drop them) ``count`` times (None: forever)."""

    method: str | None = None
    path: str | None = None  # a regular expression searched in the decoded path
    status: int | None = None
    count: int | None = 1
    retry_after: float | None = None
    body: str | None = None  # a plain-text body instead of the service's JSON envelope
    drop: bool = False
    delay_s: float = 0.0
    lro_fail: bool = False  # APIM: the long-running operation started by the request ends Failed

    def matches(self, request: Request, decoded_path: str) -> bool:
        if self.method and self.method.upper() != request.method:
            return False
        return not (self.path and not re.search(self.path, decoded_path))


class Faults:
    """Thread-safe fault settings: explicit rules first, then random rates."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)
        self.latency_ms = 0.0
        self.fault_rate = 0.0  # share of requests answered 500/503
        self.drop_rate = 0.0  # share of requests whose connection is dropped
        self.lro_fail_rate = 0.0  # share of long-running operations that end Failed

    def add(self, rule: FaultRule | None = None, **kwargs: Any) -> FaultRule:
        rule = rule or FaultRule(**kwargs)
        with self._lock:
            self._rules.append(rule)
        return rule

    def configure_from(self, body: Any) -> None:
        """The ``/_emulator/faults`` body: ``clear``, rates, and/or one rule's fields; ValueError when malformed."""
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        body = dict(body)
        rates = {k: body.pop(k) for k in list(body) if k in ("latency_ms", "fault_rate", "drop_rate", "lro_fail_rate")}
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in rates.values()):
            raise ValueError("rates must be non-negative numbers")
        clear = body.pop("clear", False)
        rule = None
        if body:
            rule = FaultRule(**body)
            if rule.path is not None:
                re.compile(rule.path)
            if rule.status is not None and not (isinstance(rule.status, int) and 100 <= rule.status <= 599):
                raise ValueError("status must be an HTTP status code")
        if clear:
            self.clear()
        self.configure(**rates)
        if rule is not None:
            self.add(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.latency_ms = self.fault_rate = self.drop_rate = self.lro_fail_rate = 0.0

    def configure(self, **settings: float) -> None:
        for key, value in settings.items():
            if key not in ("latency_ms", "fault_rate", "drop_rate", "lro_fail_rate"):
                raise ValueError(f"unknown fault setting {key!r}")
            setattr(self, key, float(value))

    def pick(self, request: Request, decoded_path: str) -> FaultRule | None:
        """The fault to apply to this request, if any (consumes one use of a counted rule)."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(request, decoded_path):
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            self._rules.remove(rule)
                    return rule
            roll = self._random.random()
            if roll < self.drop_rate:
                return FaultRule(drop=True, count=None)
            if roll < self.drop_rate + self.fault_rate:
                return FaultRule(status=self._random.choice((500, 503)), count=None)
            return None

    def apply(self, request: Request, decoded_path: str) -> FaultRule | None:
        """Apply latency and the matching rule's delay or dropped connection; the rule is returned so the
        emulator can answer its ``status`` in its own error envelope (or fail the operation, ``lro_fail``)."""
        rule = self.pick(request, decoded_path)
        self.sleep_latency()
        if rule is not None:
            if rule.delay_s:
                time.sleep(rule.delay_s)
            if rule.drop:
                raise DropConnection
        return rule

    def roll_lro_failure(self) -> bool:
        with self._lock:
            return self._random.random() < self.lro_fail_rate

    def sleep_latency(self) -> None:
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000.0)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: without this, delayed ACKs cost 40 ms
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines would carry nothing useful and tokens never reach them anyway."""

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            response = self.server.app(request)
        except DropConnection:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.stream is not None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in response.stream:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client went away mid-stream
                self.close_connection = True
            return
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self._ssl_context = ssl_context

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self._ssl_context is not None:
            sock.settimeout(10)
            sock = self._ssl_context.wrap_socket(sock, server_side=True)
            sock.settimeout(None)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up mid-request are normal here (fault tests); stay quiet."""


class EmulatorServer:
    """Serve an app on 127.0.0.1 in a background thread; use as a context manager."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = _Server((host, port), app, ssl_context)
        self._thread: threading.Thread | None = None
        scheme = "https" if ssl_context else "http"
        self.host = host
        self.port = self._server.server_address[1]
        self.url = f"{scheme}://{host}:{self.port}"

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"emulator:{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
