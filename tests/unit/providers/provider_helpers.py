"""Helpers for the provider adapter tests: collecting a stream, building requests and specs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aurea.providers._base import (
    ChatMessage,
    Finish,
    ProviderEvent,
    ProviderRequest,
    ProviderSpec,
    Role,
    TextDelta,
    Timeouts,
    Usage,
    UsageReport,
)

KEY_ENV = "AUREA_TEST_PROVIDER_KEY"
FAST = Timeouts(connect_s=2.0, first_byte_s=2.0, idle_s=2.0, total_s=10.0)


@dataclass
class Collected:
    events: list[ProviderEvent] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TextDelta))

    @property
    def usage(self) -> Usage:
        reports = [e for e in self.events if isinstance(e, UsageReport)]
        assert len(reports) == 1, self.events
        return reports[0].usage

    @property
    def finish(self) -> Finish:
        assert isinstance(self.events[-1], Finish), self.events
        assert sum(isinstance(e, Finish) for e in self.events) == 1
        assert isinstance(self.events[-2], UsageReport), "the UsageReport comes right before Finish"
        return self.events[-1]


async def collect(stream: AsyncIterator[ProviderEvent]) -> Collected:
    out = Collected()
    async for event in stream:
        out.events.append(event)
    return out


def chat(
    *texts: str, model: str = "test-model", system: str | None = None, **kwargs: Any
) -> ProviderRequest:
    messages = [ChatMessage(Role.SYSTEM, system)] if system else []
    messages += [ChatMessage(Role.USER, t) for t in texts]
    return ProviderRequest(model=model, messages=tuple(messages), **kwargs)


def make_spec(
    kind: str,
    base_url: str,
    *,
    timeouts: Timeouts = FAST,
    key_env: str = KEY_ENV,
    **options: Any,
) -> ProviderSpec:
    return ProviderSpec(
        name=f"{kind}-test",
        kind=kind,
        base_url=base_url,
        api_key_env=key_env,
        timeouts=timeouts,
        options=options,
    )


def closed_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def wait_for_abort(fake: Any) -> None:
    await asyncio.wait_for(fake.stream_aborted.wait(), timeout=5)
