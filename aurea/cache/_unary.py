"""The unary side of ``CachedInference`` (generate and embed): a lookup, then leading or following
a shared call, retrying as a follower at most a few times. On Redis (``[cache] shared_flight``)
a leader's flight is single across replicas too (``_replicas``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from aurea.cache._backend import NO_VALUE
from aurea.cache._cache import ResponseCache
from aurea.cache._common import _LEADERS_OWN, _ROUNDS, _bound, _expired, _Facade, _Retry
from aurea.cache._flight import Flight
from aurea.cache._keys import CacheKey
from aurea.cache._replicas import ReplicaFlight
from aurea.inference import Final
from aurea.inference.calls import current_record
from aurea.providers._base import FinishReason

T = TypeVar("T")


class _UnarySide(_Facade):
    # -- unary calls (generate and embed) --------------------------------------------------------
    async def _unary(
        self,
        cache: ResponseCache,
        key: CacheKey,
        read: bool,
        fkey: Hashable,
        hit: Callable[[Any], T | None],
        call_core: Callable[[float | None], Awaitable[T]],
        store: Callable[[Flight[T]], Awaitable[None]],
        deadline: float | None,
    ) -> tuple[T, tuple[float, bool] | None]:
        """The result, and (start, shared) when it is a hit (None: this caller's own call).

        ``call_core(deadline)`` runs the core with that deadline: a flight others may join runs
        with none of its own (the server's default bound), since it serves every subscriber and
        each one, its leader too, stops waiting at its own deadline; when the last one has
        left, the flight is cancelled."""
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
                shared = fkey if cache.flights.get(fkey) is None else None
                if shared is not None and read and cache.flight_locks is not None:
                    return await self._lead_replicas(
                        cache, key, shared, hit, call_core, store, deadline, t0
                    )
                if read:
                    cache.miss(key.kind)
                else:
                    cache.refresh(key.kind)
                led: Flight[T] = cache.flights.start(
                    shared,
                    lambda f: call_core(None if shared is not None else deadline),  # noqa: B023
                    store,
                )
                return await self._lead_unary(led, deadline), None
            try:
                return await self._follow_unary(flight, deadline), (t0, True)
            except _Retry:
                continue
        return await call_core(deadline), None

    async def _lead_replicas(
        self,
        cache: ResponseCache,
        key: CacheKey,
        fkey: Hashable,
        hit: Callable[[Any], T | None],
        call_core: Callable[[float | None], Awaitable[T]],
        store: Callable[[Flight[T]], Awaitable[None]],
        deadline: float | None,
        t0: float,
    ) -> tuple[T, tuple[float, bool] | None]:
        """Lead a flight that is single across replicas too: its task claims the entry's lock
        in Redis and calls upstream, or waits for the replica holding it (``_replicas``). An
        answer another replica made is a shared hit here, for this caller as for its
        followers; anything else is this caller's miss (counted once the flight has ended)."""
        assert cache.flight_locks is not None
        replica = ReplicaFlight(cache.flight_locks, key, cache.flight_lease_s)

        async def after(f: Flight[T]) -> None:
            try:
                if not replica.remote:  # (another replica stored it)
                    await store(f)
            finally:
                await replica.release()  # after the store: nobody sees "no lock, no answer"

        led: Flight[T] = cache.flights.start(
            fkey, lambda f: replica.run(lambda: call_core(None), hit), after
        )
        try:
            result = await self._lead_unary(led, deadline)
        except BaseException:
            cache.miss(key.kind)
            raise
        if replica.remote:
            return result, (t0, True)
        cache.miss(key.kind)
        return result, None

    async def _lead_unary(self, flight: Flight[T], deadline: float | None) -> T:
        flight.subscribe()
        try:
            async with _bound(deadline, self._clock):
                while not flight.done:
                    await flight.changed()
        except TimeoutError:
            raise _expired(shared=False) from None
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
