"""What the cached calls share: the rules for what may be cached and what a follower retries, the
stream opener, and the base class that records a hit (``_Facade``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from aurea.cache._cache import ResponseCache
from aurea.edge import current_scope
from aurea.errors import (
    BudgetExceeded,
    DeadlineExceeded,
    PermissionDenied,
    RateLimited,
)
from aurea.inference import (
    CallKind,
    CallOutcome,
    CallRecord,
    EmbedCall,
    Emit,
    FallbackEvent,
    Final,
    GenerateCall,
    Inference,
    RecordSink,
    Started,
)
from aurea.inference.calls import current_record

log = structlog.get_logger("aurea.cache")
_ROUNDS = 3  # a follower joins or leads at most this many flights, then calls alone
_HIT = "cache hit"
_SHARED = "cache hit: shared an identical call in flight"
# Errors of the leader's own call, not of the request: a follower retries on its own.
_LEADERS_OWN: tuple[type[BaseException], ...] = (
    BudgetExceeded,
    RateLimited,
    DeadlineExceeded,
    PermissionDenied,
    asyncio.CancelledError,
)


class _Retry(Exception):
    """A follower's flight ended in a way that belongs to its leader: try again."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _Opening:
    """Opens one stream exactly once: ``started`` the first time; if a follower that already
    sent output must start over, a ``fallback`` with ``restart`` in its place."""

    __slots__ = ("emit", "model", "output")

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.model: str | None = None  # the model the client was told about; None: not yet
        self.output = False  # answer events were sent

    async def open(self, started: Started) -> None:
        if self.model is None:
            await self.emit(started)
        else:
            await self.emit(
                FallbackEvent(
                    from_model=self.model,
                    to_model=started.model,
                    to_provider=started.provider,
                    cause="SHARED_CALL_ENDED",
                    message="the identical call this stream shared ended early; "
                    "the answer starts over",
                    attempt=started.attempt,
                    restart=True,
                )
            )
        self.model = started.model


def _bound(deadline: float | None, clock: Callable[[], float]) -> asyncio.Timeout:
    return asyncio.timeout(None if deadline is None else max(deadline - clock(), 0.0))


def _expired(shared: bool = True) -> DeadlineExceeded:
    if shared:
        return DeadlineExceeded("the call's deadline passed while it waited for an identical call")
    return DeadlineExceeded("the call's deadline passed before its answer was complete")


def _tenant(call: GenerateCall | EmbedCall) -> str:
    """The caller's tenant as the edge found it on its key ("" when unknown: the cache's map
    from configuration, then the key's name, decide)."""
    scope = current_scope.get()
    if scope is None or scope.principal != _principal(call):
        return ""
    return scope.tenant


def _principal(call: GenerateCall | EmbedCall) -> str:
    """The caller's API key name: on the call, or (gRPC leaves it off the call) where the edge
    left it. Never guessed: a call without either is an open-mode or in-process call."""
    if call.principal:
        return call.principal
    scope = current_scope.get()
    return scope.principal if scope is not None else ""


def _deterministic(call: GenerateCall) -> bool:
    return call.temperature == 0 or call.seed is not None


class _Facade:
    """The state every side of ``CachedInference`` reads, and how a hit's record is reported."""

    core: Inference
    cache: ResponseCache | None
    _sinks: tuple[RecordSink, ...]
    _clock: Callable[[], float]

    def _record_hit(
        self,
        request_id: str,
        kind: CallKind,
        job_id: str,
        labels: Any,
        final: Final,
        latency: float,
    ) -> None:
        record = CallRecord(
            request_id=request_id,
            kind=kind,
            job_id=job_id,
            labels=labels,
            model=final.model,
            provider=final.provider,
            ttft_s=final.ttft_s,
            latency_s=latency,
            outcome=CallOutcome.OK,
            finish_reason=final.finish_reason,
            cache_hit=True,
        )
        self._finish(record)

    def _finish(self, record: CallRecord) -> None:
        current_record.set(record)
        for sink in self._sinks:
            try:
                sink(record)
            except Exception as err:  # a sink must never fail the call it reports
                log.error("record_sink_failed", error=repr(err), exc_info=err)
