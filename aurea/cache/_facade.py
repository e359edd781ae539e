"""``CachedInference``: the inference API the edges call (gRPC servicers, the HTTP door,
``aurea.Embedded``), the core's ``stream``/``generate``/``embed`` with the response cache
around the whole call. A hit skips routing's attempt loop and every guard: no limiter slot, no
budget reservation, no provider.

What is cached (``CacheMode.AUTO``): embeddings always; generations when sampling is
deterministic (temperature 0, or a seed) or the call asks for it (``READ_WRITE``). Only whole
answers are kept (finish stop, length or tool calls), under the model that produced them alone
(a stream continued or restarted on another model mid-answer is not kept).

Single flight: identical cacheable calls that miss together share one upstream call (one per
form: streams, unary calls and embeddings have their own flights, and streams only share with
streams of the same mid-stream failover mode). The caller that found no flight leads it: it
receives every event (usage included) and pays. The others are followers: they receive the
answer's events as they arrive, pay nothing, and see a hit (``started.cache_hit``, zero usage
and cost, the saved cost). When the shared call fails:

* with an error that belongs to the leader's call rather than the request (its budget, its
  rate limit, its deadline, its permissions, its cancellation), or when the leader's budget cut
  the answer short, each follower tries again on its own (joining or leading a new flight, at
  most twice, then alone): a follower that had already received text first gets a ``fallback``
  event with ``restart`` (when its failover mode allows restarts; otherwise it ends UNAVAILABLE
  with a message saying to retry);
* with any other error (the upstream's or the request's: retrying at once would repeat the
  same call the flight exists to avoid), every follower ends with that same error.

The leader leaving (its client cancelled) does not end the flight while followers remain: the
shared call runs in its own task, and is cancelled only when its last subscriber leaves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

import structlog

from aurea.cache._backend import NO_VALUE
from aurea.cache._cache import CacheMode, ResponseCache, _outcome
from aurea.cache._entry import STORABLE, Answer, answer_events, is_content
from aurea.cache._flight import Flight
from aurea.cache._keys import CacheKey, CacheKind, embed_key, generate_key
from aurea.edge import current_scope
from aurea.errors import (
    AureaError,
    BudgetExceeded,
    DeadlineExceeded,
    PermissionDenied,
    RateLimited,
    Unavailable,
)
from aurea.inference import (
    CallKind,
    CallOutcome,
    CallRecord,
    EmbedCall,
    EmbedResult,
    Emit,
    FallbackEvent,
    Final,
    GenerateCall,
    Inference,
    RecordSink,
    Started,
    UsageUpdate,
)
from aurea.inference.calls import current_record
from aurea.providers._base import FinishReason, Usage

__all__ = ["CachedInference"]

log = structlog.get_logger("aurea.cache")
T = TypeVar("T")
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


def _expired() -> DeadlineExceeded:
    return DeadlineExceeded("the call's deadline passed while it waited for an identical call")


def _principal(call: GenerateCall | EmbedCall) -> str:
    """The caller's API key name: on the call, or (gRPC leaves it off the call) where the edge
    left it. Never guessed: a call without either is an open-mode or in-process call."""
    if call.principal:
        return call.principal
    scope = current_scope.get()
    return scope.principal if scope is not None else ""


def _deterministic(call: GenerateCall) -> bool:
    return call.temperature == 0 or call.seed is not None


class CachedInference:
    """Same calls as ``Inference``; ``mode`` says what each does with the cache. Without a
    cache (or with it disabled) every call goes straight to the core."""

    def __init__(
        self,
        core: Inference,
        cache: ResponseCache | None,
        *,
        sinks: Sequence[RecordSink] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.core = core
        self.cache = cache
        self._sinks = tuple(sinks)  # who reads a hit's record (the core's own sinks)
        self._clock = clock

    # -- the three calls -----------------------------------------------------------------------
    async def stream(
        self, call: GenerateCall, emit: Emit, *, mode: CacheMode = CacheMode.AUTO
    ) -> Final:
        _outcome.set(None)
        plan = self._plan_generate(call, mode)
        if plan is None:
            return await self.core.stream(call, emit)
        cache, key, read = plan
        ns = cache.namespace_of(_principal(call))
        fkey = (key, CallKind.STREAM, call.failover)
        opening = _Opening(emit)
        for _ in range(_ROUNDS):
            t0 = self._clock()
            flight = cache.flights.get(fkey) if read else None
            if flight is None and read:
                value = await cache.get(key)
                events = value.stream() if isinstance(value, Answer) else None
                if events is not None:
                    assert isinstance(value, Answer)
                    return await self._replay(call, opening, value.final, events, t0)
                flight = cache.flights.get(fkey)
            if flight is None:
                if read:
                    cache.miss(CacheKind.LLM)
                else:
                    cache.refresh(CacheKind.LLM)
                started: Flight[Final] = cache.flights.start(
                    fkey if cache.flights.get(fkey) is None else None,
                    lambda f: self.core.stream(call, f.push),
                    lambda f: self._store_answer(cache, call, ns, f, streamed=True),
                )
                return await self._lead_stream(started, opening)
            try:
                return await self._follow_stream(call, flight, opening, t0)
            except _Retry as retry:
                if opening.output and not call.failover.restarts:
                    raise Unavailable(
                        f"the identical call this stream shared ended early ({retry.why}) "
                        "after text was sent; retry the call",
                        retry_after_s=0.0,
                    ) from None
        return await self._alone_stream(call, opening)

    async def generate(self, call: GenerateCall, *, mode: CacheMode = CacheMode.AUTO) -> Final:
        _outcome.set(None)
        plan = self._plan_generate(call, mode)
        if plan is None:
            return await self.core.generate(call)
        cache, key, read = plan
        ns = cache.namespace_of(_principal(call))

        def hit(value: Any) -> Final | None:
            return value.unary() if isinstance(value, Answer) else None

        result, how = await self._unary(
            cache,
            key,
            read,
            (key, CallKind.UNARY),
            hit,
            lambda: self.core.generate(call),
            lambda f: self._store_answer(cache, call, ns, f, streamed=False),
            call.deadline,
        )
        if how is None:
            return result
        latency = self._clock() - how[0]
        cache.hit(CacheKind.LLM, result.cost_nanos, shared=how[1])
        out = dataclasses.replace(
            result,
            usage=Usage(),
            cost_nanos=0,
            latency_s=latency,
            ttft_s=latency,
            attempts=0,
            route_reason=_SHARED if how[1] else _HIT,
        )
        self._record_hit(call.request_id, CallKind.UNARY, call.job_id, call.labels, out, latency)
        return out

    async def embed(self, call: EmbedCall, *, mode: CacheMode = CacheMode.AUTO) -> EmbedResult:
        _outcome.set(None)
        cache = self.cache
        if cache is None or not cache.enabled:
            return await self.core.embed(call)
        if mode is CacheMode.BYPASS:
            cache.bypass()
            return await self.core.embed(call)
        try:
            model = self.core._route(call.model, "embedding", None, ())[0].model.name
        except AureaError:  # the core raises it again, as it would without the cache
            return await self.core.embed(call)
        ns = cache.namespace_of(_principal(call))
        key = embed_key(call, ns, model)
        read = mode is not CacheMode.REFRESH

        def hit(value: Any) -> EmbedResult | None:
            return value if isinstance(value, EmbedResult) else None

        async def store(f: Flight[EmbedResult]) -> None:
            r = f.result
            if r is not None:
                await cache.put(embed_key(call, ns, r.model), r)

        result, how = await self._unary(
            cache,
            key,
            read,
            (key, CallKind.EMBED),
            hit,
            lambda: self.core.embed(call),
            store,
            call.deadline,
        )
        if how is None:
            return result
        latency = self._clock() - how[0]
        cache.hit(CacheKind.EMBEDDING, result.cost_nanos, shared=how[1])
        record = CallRecord(
            request_id=call.request_id,
            kind=CallKind.EMBED,
            job_id=call.job_id,
            labels=call.labels,
            model=result.model,
            provider=result.provider,
            latency_s=latency,
            outcome=CallOutcome.OK,
            cache_hit=True,
        )
        self._finish(record)
        return dataclasses.replace(result, usage=Usage(), cost_nanos=0, attempts=0)

    # -- planning ------------------------------------------------------------------------------
    def _plan_generate(
        self, call: GenerateCall, mode: CacheMode
    ) -> tuple[ResponseCache, CacheKey, bool] | None:
        """(cache, key, whether to read) for a call the cache takes part in, else None."""
        cache = self.cache
        if cache is None or not cache.enabled:
            return None
        if call.cache_bypass or mode is CacheMode.BYPASS:
            cache.bypass()
            return None
        if mode is CacheMode.AUTO and not _deterministic(call):
            cache.bypass()
            return None
        try:
            # The router's published table, as the core reads it (no ask): the key names the
            # model that will answer, so a re-ranked policy never serves another model's answer.
            model = self.core._route(call.model, "chat", call, call.fallbacks)[0].model.name
        except AureaError:  # the core raises it again, as it would without the cache
            return None
        key = generate_key(call, cache.namespace_of(_principal(call)), model)
        return cache, key, mode is not CacheMode.REFRESH

    # -- streams -------------------------------------------------------------------------------
    async def _replay(
        self,
        call: GenerateCall,
        opening: _Opening,
        final: Final,
        events: tuple[Any, ...],
        t0: float,
    ) -> Final:
        """A stored answer as a stream: ``started`` (a hit), its events, a final that costs
        nothing and says what it saved."""
        assert self.cache is not None
        await opening.open(
            Started(
                request_id=call.request_id,
                model=final.model,
                provider=final.provider,
                attempt=0,
                reason=_HIT,
                cache_hit=True,
            )
        )
        ttft: float | None = None
        emit = opening.emit
        for ev in events:
            await emit(ev)
            if ttft is None:
                ttft = self._clock() - t0
        latency = self._clock() - t0
        self.cache.hit(CacheKind.LLM, final.cost_nanos)
        out = dataclasses.replace(
            final,
            text="",
            usage=Usage(),
            cost_nanos=0,
            latency_s=latency,
            ttft_s=latency if ttft is None else ttft,
            attempts=0,
            route_reason=_HIT,
        )
        self._record_hit(call.request_id, CallKind.STREAM, call.job_id, call.labels, out, latency)
        return out

    async def _lead_stream(self, flight: Flight[Final], opening: _Opening) -> Final:
        """The leader's side: every event of its own call, as the core emitted it."""
        emit = opening.emit
        flight.subscribe()
        try:
            i = 0
            while True:
                events = flight.events
                while i < len(events):
                    ev = events[i]
                    i += 1
                    if type(ev) is Started:
                        assert isinstance(ev, Started)
                        await opening.open(ev)
                    else:
                        await emit(ev)
                if flight.done:
                    break
                await flight.changed()
        finally:
            flight.unsubscribe()
            if flight.record is not None:  # the canonical log line reads the call's record
                current_record.set(flight.record)
        if flight.error is not None:
            raise flight.error
        assert flight.result is not None
        return flight.result

    async def _follow_stream(
        self, call: GenerateCall, flight: Flight[Final], opening: _Opening, t0: float
    ) -> Final:
        """A follower's side: the answer's events as they arrive, opened as a hit."""
        assert self.cache is not None
        emit = opening.emit
        model = provider = ""
        ttft: float | None = None
        content = False  # this flight's answer events reached the client
        flight.subscribe()
        try:
            async with _bound(call.deadline, self._clock):
                i = 0
                while True:
                    events = flight.events
                    while i < len(events):
                        ev = events[i]
                        i += 1
                        t = type(ev)
                        if t is Started:
                            assert isinstance(ev, Started)
                            model, provider = ev.model, ev.provider
                        elif t is UsageUpdate:
                            pass  # the leader's spend, not this caller's
                        elif t is FallbackEvent:
                            assert isinstance(ev, FallbackEvent)
                            if content:
                                await emit(ev)  # mid-answer: the client must hear of it
                            else:
                                model, provider = ev.to_model, ev.to_provider
                        elif is_content(ev):
                            if not content:
                                await self._open_shared(call, opening, model, provider)
                                content = True
                                opening.output = True
                                ttft = self._clock() - t0
                            await emit(ev)
                    if flight.done:
                        break
                    await flight.changed()
        except TimeoutError:
            raise _expired() from None
        finally:
            flight.unsubscribe()
        error = flight.error
        if error is not None:
            if isinstance(error, _LEADERS_OWN):
                raise _Retry(type(error).__name__)
            raise error
        final = flight.result
        assert final is not None
        if final.finish_reason is FinishReason.BUDGET_EXCEEDED:
            raise _Retry("the leader's budget cut the answer")
        if not content:  # an answer without events (empty text)
            await self._open_shared(call, opening, final.model, final.provider)
        latency = self._clock() - t0
        self.cache.hit(CacheKind.LLM, final.cost_nanos, shared=True)
        out = dataclasses.replace(
            final,
            usage=Usage(),
            cost_nanos=0,
            latency_s=latency,
            ttft_s=latency if ttft is None else ttft,
            attempts=0,
            route_reason=_SHARED,
        )
        self._record_hit(call.request_id, CallKind.STREAM, call.job_id, call.labels, out, latency)
        return out

    async def _open_shared(
        self, call: GenerateCall, opening: _Opening, model: str, provider: str
    ) -> None:
        started = Started(
            request_id=call.request_id,
            model=model,
            provider=provider,
            attempt=0,
            reason=_SHARED,
            cache_hit=True,
        )
        await opening.open(started)

    async def _alone_stream(self, call: GenerateCall, opening: _Opening) -> Final:
        """After repeated failed flights: this caller's own call, not shared, not stored."""

        async def emit(ev: Any) -> None:
            if type(ev) is Started:
                await opening.open(ev)
            else:
                await opening.emit(ev)

        return await self.core.stream(call, emit)

    # -- unary calls (generate and embed) --------------------------------------------------------
    async def _unary(
        self,
        cache: ResponseCache,
        key: CacheKey,
        read: bool,
        fkey: Hashable,
        hit: Callable[[Any], T | None],
        call_core: Callable[[], Awaitable[T]],
        store: Callable[[Flight[T]], Awaitable[None]],
        deadline: float | None,
    ) -> tuple[T, tuple[float, bool] | None]:
        """The result, and (start, shared) when it is a hit (None: this caller's own call)."""
        for _ in range(_ROUNDS):
            t0 = self._clock()
            flight = cache.flights.get(fkey) if read else None
            if flight is None and read:
                value = await cache.get(key)
                found = hit(value) if value is not NO_VALUE else None
                if found is not None:
                    return found, (t0, False)
                flight = cache.flights.get(fkey)
            if flight is None:
                if read:
                    cache.miss(key.kind)
                else:
                    cache.refresh(key.kind)
                led: Flight[T] = cache.flights.start(
                    fkey if cache.flights.get(fkey) is None else None,
                    lambda f: call_core(),
                    store,
                )
                return await self._lead_unary(led), None
            try:
                return await self._follow_unary(flight, deadline), (t0, True)
            except _Retry:
                continue
        return await call_core(), None

    async def _lead_unary(self, flight: Flight[T]) -> T:
        flight.subscribe()
        try:
            while not flight.done:
                await flight.changed()
        finally:
            flight.unsubscribe()
            if flight.record is not None:
                current_record.set(flight.record)
        if flight.error is not None:
            raise flight.error
        assert flight.result is not None
        return flight.result

    async def _follow_unary(self, flight: Flight[T], deadline: float | None) -> T:
        flight.subscribe()
        try:
            async with _bound(deadline, self._clock):
                while not flight.done:
                    await flight.changed()
        except TimeoutError:
            raise _expired() from None
        finally:
            flight.unsubscribe()
        error = flight.error
        if error is not None:
            if isinstance(error, _LEADERS_OWN):
                raise _Retry(type(error).__name__)
            raise error
        result = flight.result
        assert result is not None
        if isinstance(result, Final) and result.finish_reason is FinishReason.BUDGET_EXCEEDED:
            raise _Retry("the leader's budget cut the answer")
        return result

    # -- storing and records ---------------------------------------------------------------------
    async def _store_answer(
        self,
        cache: ResponseCache,
        call: GenerateCall,
        namespace: str,
        flight: Flight[Final],
        *,
        streamed: bool,
    ) -> None:
        """Keep a whole answer under the model that produced it (all of it)."""
        final = flight.result
        if final is None or final.finish_reason not in STORABLE:
            return
        if streamed:
            events = answer_events(flight.events)
            if events is None:
                return
            answer = Answer(final=final, events=events)
        else:
            answer = Answer(final=final)
        await cache.put(generate_key(call, namespace, final.model), answer)

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
