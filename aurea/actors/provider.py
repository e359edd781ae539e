"""The ProviderActor: one per configured provider. It owns the adapter (and so its HTTP pool),
caps concurrency, starts each upstream call as a child task, and keeps the provider's stats.

Streams come back as a ``StreamHandle``: a bounded queue the child task fills with provider
events. Cancelling the handle cancels the child task, which closes the upstream request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, assert_never

import structlog

from aurea.errors import AureaError, Overloaded, ProviderError, ProviderServerError
from aurea.providers._base import (
    Completion,
    Embeddings,
    EmbedRequest,
    Provider,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
)
from aurea.runtime import Actor

log = structlog.get_logger("aurea.provider")
_QUEUE_DEPTH = 64
R = TypeVar("R")


_NOTHING: Any = object()


@dataclass(slots=True)
class StreamHandle:
    """The caller's end of one upstream stream: events, then ``None`` or a ProviderError."""

    queue: asyncio.Queue[ProviderEvent | BaseException | None]
    task: asyncio.Task[None]
    _held: Any = _NOTHING  # an item taken by more_text() that was not text

    async def next(self) -> ProviderEvent | None:
        """The next event, or None at the end; raises the ProviderError that ended the stream."""
        item: ProviderEvent | BaseException | None
        if self._held is not _NOTHING:
            item, self._held = self._held, _NOTHING
        else:
            item = await self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def more_text(self) -> list[str]:
        """The text of deltas already queued, without waiting (so a slow reader gets them in
        fewer, larger messages); stops at the first event that is not text."""
        texts: list[str] = []
        q = self.queue
        while self._held is _NOTHING and not q.empty():
            item = q.get_nowait()
            if isinstance(item, TextDelta):
                texts.append(item.text)
            else:
                self._held = item
        return texts

    def cancel(self) -> None:
        self.task.cancel()


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenStream:
    request: ProviderRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenComplete:
    request: ProviderRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class StartEmbed:
    request: EmbedRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFinished:
    """Told by the pipeline when a call through this provider ends (for stats)."""

    ok: bool | None  # None: the client cancelled it, neither a success nor a failure
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    latency_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStats:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderStats:
    name: str
    kind: str
    requests: int
    successes: int
    failures: int
    cancelled: int
    input_tokens: int
    output_tokens: int
    cost_nanos: int
    total_latency_s: float
    in_flight: int
    last_request_unix_s: float | None  # wall clock, for display only
    last_ok: bool | None  # the outcome of the latest finished call; None before any


ProviderMsg = OpenStream | OpenComplete | StartEmbed | CallFinished | GetStats


@dataclass(slots=True)
class _Counters:
    requests: int = 0
    successes: int = 0
    failures: int = 0
    cancelled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0
    total_latency_s: float = 0.0
    last_request_unix_s: float | None = None
    last_ok: bool | None = None
    children: set[asyncio.Task[Any]] = field(default_factory=set)


class ProviderActor(Actor[ProviderMsg]):
    def __init__(
        self,
        *,
        provider: Provider,
        kind: str,
        max_concurrency: int,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.kind = kind
        self.max_concurrency = max_concurrency
        self._wall = wall_clock
        self._c = _Counters()
        self._warming: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        # Providers with a process to run (the local model) start now, in the background, so
        # the first call does not pay for loading a model; calls before it is ready wait.
        start = getattr(self.provider, "start", None)
        if start is not None:
            # Kept apart from call tasks: warming up is not a call and takes no concurrency slot.
            self._warming = asyncio.create_task(
                self._warm_up(start), name=f"start:{self.provider.name}"
            )

    async def _warm_up(self, start: Callable[[], Awaitable[None]]) -> None:
        try:
            await start()
        except Exception as exc:  # the next call retries the start and reports the error
            log.warning("provider_start_failed", provider=self.provider.name, error=str(exc))

    async def on_stop(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
        for t in list(self._c.children):
            t.cancel()
        await self.provider.aclose()

    def _admit(self) -> None:
        # The adapter's HTTP layer has a semaphore of the same size that makes callers wait;
        # this check comes first and refuses instead, so a saturated provider answers
        # UNAVAILABLE with RetryInfo (and the pipeline moves to the next candidate at once)
        # rather than queueing callers without bound.
        if len(self._c.children) >= self.max_concurrency:
            raise Overloaded(
                f"provider {self.provider.name} is at its concurrency cap "
                f"({self.max_concurrency} calls)",
                retry_after_s=0.1,
            )
        self._c.requests += 1
        self._c.last_request_unix_s = self._wall()

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._c.children.add(task)
        task.add_done_callback(self._c.children.discard)

    async def receive(self, msg: ProviderMsg) -> Any:
        match msg:
            case OpenStream(request=req):
                self._admit()
                q: asyncio.Queue[ProviderEvent | BaseException | None] = asyncio.Queue(_QUEUE_DEPTH)
                task = asyncio.create_task(self._pump(req, q), name=f"stream:{req.request_id}")
                self._track(task)
                return StreamHandle(q, task)
            case OpenComplete(request=req):
                self._admit()
                ctask: asyncio.Task[Completion] = asyncio.create_task(
                    self._guard(self.provider.complete(req)), name=f"complete:{req.request_id}"
                )
                self._track(ctask)
                return ctask
            case StartEmbed(request=req):
                self._admit()
                etask: asyncio.Task[Embeddings] = asyncio.create_task(
                    self._guard(self.provider.embed(req)), name=f"embed:{req.request_id}"
                )
                self._track(etask)
                return etask
            case CallFinished():
                c = self._c
                if msg.ok is None:
                    c.cancelled += 1
                else:
                    c.last_ok = msg.ok
                    if msg.ok:
                        c.successes += 1
                    else:
                        c.failures += 1
                c.input_tokens += msg.input_tokens
                c.output_tokens += msg.output_tokens
                c.cost_nanos += msg.cost_nanos
                c.total_latency_s += msg.latency_s
                return None
            case GetStats():
                c = self._c
                return ProviderStats(
                    name=self.provider.name,
                    kind=self.kind,
                    requests=c.requests,
                    successes=c.successes,
                    failures=c.failures,
                    cancelled=c.cancelled,
                    input_tokens=c.input_tokens,
                    output_tokens=c.output_tokens,
                    cost_nanos=c.cost_nanos,
                    total_latency_s=c.total_latency_s,
                    in_flight=len(c.children),
                    last_request_unix_s=c.last_request_unix_s,
                    last_ok=c.last_ok,
                )
            case _:
                assert_never(msg)

    async def _pump(
        self, req: ProviderRequest, q: asyncio.Queue[ProviderEvent | BaseException | None]
    ) -> None:
        # Runs as a child task: the mailbox loop never awaits the upstream.
        try:
            gen = self.provider.stream(req)
            try:
                async for event in gen:
                    await q.put(event)
            finally:
                await gen.aclose()  # type: ignore[attr-defined]
            await q.put(None)
        except ProviderError as exc:
            await q.put(exc)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:  # an adapter bug: report it as a server error, keep serving
            err = ProviderServerError(
                f"provider {self.provider.name} failed unexpectedly: {type(exc).__name__}",
                provider=self.provider.name,
            )
            err.__cause__ = exc
            await q.put(err)

    async def _guard(self, call: Awaitable[R]) -> R:
        try:
            return await call
        except (ProviderError, asyncio.CancelledError):
            raise
        except AureaError:
            raise
        except Exception as exc:  # an adapter bug: report it as a server error, keep serving
            raise ProviderServerError(
                f"provider {self.provider.name} failed unexpectedly: {type(exc).__name__}",
                provider=self.provider.name,
            ) from exc
