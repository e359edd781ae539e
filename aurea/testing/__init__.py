"""Test helpers that ship with Aurea: an in-process server on a free port, and (in
``aurea.testing.fakes``) fake upstream providers that speak each vendor's wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from aurea.config import Settings, build_settings
from aurea.server import AureaServer

__all__ = ["RunningServer", "running_server", "test_settings"]


def test_settings(raw: Mapping[str, Any] | None = None, **env: str) -> Settings:
    """Settings for a test: port 0 on 127.0.0.1, quick simulated provider, plus ``raw``.

    ``raw`` is TOML-shaped (``{"server": {...}, "providers": {...}, "models": {...}}``);
    keyword arguments are ``AUREA_*`` environment variables.
    """
    base: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "grace_s": 5},
        # Side ports on free ports too, so tests never collide on the defaults.
        "http": {"port": 0},
        "telemetry": {"http_port": 0},
        "providers": {"simulated": {"kind": "simulated", "options": {"token_delay_ms": 1}}},
        "retry": {"backoff_base_s": 0.01, "backoff_max_s": 0.05},
    }
    for k, v in (raw or {}).items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return build_settings(base, env)


@dataclass(slots=True)
class RunningServer:
    server: AureaServer
    target: str
    channel: grpc.aio.Channel

    @property
    def settings(self) -> Settings:
        return self.server.settings

    def provider(self, name: str) -> Any:
        """The provider instance behind ``name`` (to observe its work in tests)."""
        return self.server.providers[name]


@asynccontextmanager
async def running_server(settings: Settings | None = None) -> AsyncIterator[RunningServer]:
    """Start an Aurea server on a free port with an open aio channel to it; stop both after."""
    server = AureaServer(settings or test_settings())
    port = await server.start()
    target = f"127.0.0.1:{port}"
    channel = grpc.aio.insecure_channel(target)
    try:
        yield RunningServer(server, target, channel)
    finally:
        await channel.close()
        await server.stop(grace_s=0)
