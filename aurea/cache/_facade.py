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

On Redis (``[cache] shared_flight``) unary calls' and embeddings' flights are single across
replicas too (``_replicas``): a flight waiting for another replica's answer is a shared hit for
its leader as for its followers. Streams share within a process only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aurea.cache._cache import CacheMode, ResponseCache, _outcome
from aurea.cache._common import (
    _HIT,
    _ROUNDS,
    _SHARED,
    _deterministic,
    _Opening,
    _principal,
    _Retry,
    _tenant,
)
from aurea.cache._entry import STORABLE, Answer, answer_events
from aurea.cache._flight import Flight
from aurea.cache._keys import CacheKey, CacheKind, embed_key, generate_key
from aurea.cache._streams import _StreamSide
from aurea.cache._unary import _UnarySide
from aurea.errors import AureaError, Unavailable
from aurea.inference import (
    CallKind,
    CallOutcome,
    CallRecord,
    EmbedCall,
    EmbedResult,
    Emit,
    Final,
    GenerateCall,
    Inference,
    RecordSink,
)
from aurea.providers._base import Usage

__all__ = ["CachedInference"]

_C = TypeVar("_C", GenerateCall, EmbedCall)


def _deadline(call: _C, deadline: float | None) -> _C:
    return call if call.deadline == deadline else dataclasses.replace(call, deadline=deadline)


class CachedInference(_StreamSide, _UnarySide):
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
        ns = cache.namespace_of(_principal(call), _tenant(call))
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
                # A flight others may join runs with no deadline of its own (see _unary).
                # Streams take no cross-replica lock (``_replicas``): a stream waiting for
                # another replica's answer would see no token until all of it existed.
                shared = fkey if cache.flights.get(fkey) is None else None
                run = call if shared is None else _deadline(call, None)
                started: Flight[Final] = cache.flights.start(
                    shared,
                    lambda f: self.core.stream(run, f.push),  # noqa: B023 (returns below)
                    lambda f: self._store_answer(cache, call, ns, f, streamed=True),
                )
                return await self._lead_stream(started, opening, call.deadline)
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
        ns = cache.namespace_of(_principal(call), _tenant(call))

        def hit(value: Any) -> Final | None:
            return value.unary() if isinstance(value, Answer) else None

        result, how = await self._unary(
            cache,
            key,
            read,
            (key, CallKind.UNARY),
            hit,
            lambda d: self.core.generate(_deadline(call, d)),
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
        ns = cache.namespace_of(_principal(call), _tenant(call))
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
            lambda d: self.core.embed(_deadline(call, d)),
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
        key = generate_key(call, cache.namespace_of(_principal(call), _tenant(call)), model)
        return cache, key, mode is not CacheMode.REFRESH

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
