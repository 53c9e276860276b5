"""A throw-away certificate authority for the APIM emulator (trustme does the X.509 work)."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


class LocalCA:
    """A CA and one server certificate for 127.0.0.1 and localhost."""

    def __init__(self) -> None:
        self._ca = trustme.CA(organization_name="apimsync emulator")
        self._cert = self._ca.issue_cert("127.0.0.1", "localhost", "::1")

    @property
    def pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def write_pem(self, path: str | Path) -> Path:
        """Write the CA certificate (what clients pass as ``connection_verify``)."""
        path = Path(path)
        path.write_bytes(self.pem)
        return path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._cert.configure_cert(ctx)
        return ctx
