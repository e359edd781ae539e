"""The stream side of ``CachedInference``: a stored answer replayed as a stream, and a shared
stream's leader and followers."""

from __future__ import annotations

import dataclasses
from typing import Any

from aurea.cache._common import (
    _HIT,
    _LEADERS_OWN,
    _SHARED,
    _bound,
    _expired,
    _Facade,
    _Opening,
    _Retry,
)
from aurea.cache._entry import is_content
from aurea.cache._flight import Flight
from aurea.cache._keys import CacheKind
from aurea.inference import (
    CallKind,
    FallbackEvent,
    Final,
    GenerateCall,
    Started,
    UsageUpdate,
)
from aurea.inference.calls import current_record
from aurea.providers._base import FinishReason, Usage


class _StreamSide(_Facade):
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

    async def _lead_stream(
        self, flight: Flight[Final], opening: _Opening, deadline: float | None
    ) -> Final:
        """The leader's side: every event of its own call, as the core emitted it, until its
        own deadline (the flight itself runs on for the others who joined it)."""
        emit = opening.emit
        flight.subscribe()
        try:
            async with _bound(deadline, self._clock):
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
        except TimeoutError:
            raise _expired(shared=False) from None
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
