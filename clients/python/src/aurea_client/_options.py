"""How a client connects and retries: the target and key (from the environment by default),
TLS, and the retry policy for ``UNAVAILABLE``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from aurea_client._errors import AureaError, Unavailable

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retries of a call that failed ``UNAVAILABLE`` (Aurea overloaded or draining, every
    candidate provider down). The server's ``RetryInfo`` delay wins over the backoff; a delay
    longer than ``max_retry_delay_s`` or past the call's deadline is not waited for: the error
    is raised with its ``retry_delay_s``. A stream is retried only before its first event."""

    max_attempts: int = 3  # 1 = no retries
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    max_retry_delay_s: float = 60.0

    def delay_s(self, attempt: int, err: AureaError, jitter: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None: do not retry."""
        if not isinstance(err, Unavailable) or attempt >= self.max_attempts:
            return None
        if err.retry_delay_s is not None:
            return err.retry_delay_s if err.retry_delay_s <= self.max_retry_delay_s else None
        backoff = min(self.initial_backoff_s * 2.0 ** (attempt - 1), self.max_backoff_s)
        return backoff * (0.5 + jitter / 2)


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tls:
    """TLS to the server: ``root_certificates`` (PEM; None = the system's roots), and a client
    certificate for mTLS. ``server_name`` overrides the name checked against the certificate."""

    root_certificates: bytes | None = None
    private_key: bytes | None = None
    certificate_chain: bytes | None = None
    server_name: str | None = None

    @classmethod
    def from_files(
        cls,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        server_name: str | None = None,
    ) -> Tls:
        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return cls(
            root_certificates=read(ca),
            certificate_chain=read(cert),
            private_key=read(key),
            server_name=server_name,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def resolve(target: str | None, api_key: str | None) -> tuple[str, str | None]:
    """The target and key to use: the arguments, else $AUREA_TARGET / $AUREA_API_KEY."""
    target = target or os.environ.get("AUREA_TARGET") or DEFAULT_TARGET
    if api_key is None:
        api_key = os.environ.get("AUREA_API_KEY") or None
    return target, api_key


def metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()
