"""TLS for every port Aurea listens on, from the ``[tls]`` files, and their reload on SIGHUP.

One ``TlsFiles`` per server: it reads the PEM files once, hands gRPC dynamic credentials (the
fetcher gives grpc a new certificate configuration, once, after a reload; grpc asks before each
new connection's handshake) and hands the HTTP ports one ``ssl.SSLContext`` whose certificate is
replaced in place on reload (OpenSSL copies a context's certificate into each new connection, so
new connections get the new certificate, open ones keep theirs).

A reload that fails (a missing file, a key that does not match its certificate) changes nothing
and raises ``ConfigError``: the server keeps serving with the files it had.

Client CAs: gRPC gets the whole new bundle on reload; the HTTP context can only add to its trust
store, so a CA removed from ``client_ca_file`` stays trusted on the HTTP ports until a restart.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
from dataclasses import dataclass

import grpc

from aurea.config import ConfigError, TlsSettings
from aurea.config._sources import read_file

__all__ = ["TlsFiles"]


@dataclass(frozen=True, slots=True)
class _Pem:
    cert: bytes
    key: bytes
    client_ca: bytes | None


class TlsFiles:
    """The server's certificate, key and client CA, as grpc credentials and an SSL context."""

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self.require_client_cert = settings.require_client_cert
        self._lock = threading.Lock()  # grpc calls the fetcher from its own threads
        self._pem = self._read()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self.reloads = 0
        self._context: ssl.SSLContext | None = None

    def _read(self) -> _Pem:
        s = self.settings
        pem = _Pem(
            cert=read_file(s.cert_file, "tls.cert_file"),
            key=read_file(s.key_file, "tls.key_file"),
            client_ca=read_file(s.client_ca_file, "tls.client_ca_file")
            if s.client_ca_file
            else None,
        )
        _check_pair(pem)  # a mismatched pair is refused here, not at the first handshake
        return pem

    def _grpc_config(self, pem: _Pem) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(pem.key, pem.cert)], root_certificates=pem.client_ca
        )

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_config(self._pem),
            self._fetch,
            require_client_authentication=self.require_client_cert,
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def ssl_context(self) -> ssl.SSLContext:
        """The HTTP ports' context (one, shared: a reload updates it for all of them)."""
        if self._context is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            _load_chain(ctx, self._pem)
            if self._pem.client_ca is not None:
                ctx.load_verify_locations(cadata=self._pem.client_ca.decode("ascii", "replace"))
                ctx.verify_mode = (
                    ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_OPTIONAL
                )
            self._context = ctx
        return self._context

    def reload(self) -> None:
        """Read the files again; new connections use them. Raises ConfigError (and changes
        nothing) when they are unreadable or do not fit together."""
        pem = self._read()
        config = self._grpc_config(pem)
        if self._context is not None:
            _load_chain(self._context, pem)
            if pem.client_ca is not None:
                self._context.load_verify_locations(cadata=pem.client_ca.decode("ascii", "replace"))
        with self._lock:
            self._pem = pem
            self._pending = config
        self.reloads += 1


def _load_chain(ctx: ssl.SSLContext, pem: _Pem) -> None:
    # ``load_cert_chain`` reads paths only; the bytes already read (and checked) are written to
    # a private temporary directory, so the context holds exactly what grpc holds.
    with tempfile.TemporaryDirectory(prefix="aurea-tls-") as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        for path, data in ((cert, pem.cert), (key, pem.key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                "tls.key_file", f"does not fit tls.cert_file, or is not a usable key ({exc})"
            ) from None


def _check_pair(pem: _Pem) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(ctx, pem)
    if pem.client_ca is not None:
        try:
            ctx.load_verify_locations(cadata=pem.client_ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                "tls.client_ca_file", f"holds no usable CA certificate ({exc})"
            ) from None
