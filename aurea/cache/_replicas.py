"""Single flight across replicas: before a process's flight calls upstream for a unary call or
an embedding, it claims the entry's lock in Redis; when another replica holds it, the flight
waits for that replica's answer to appear in the cache instead of making a call of its own.

The protocol (``RedisBackend.claim``/``renew``/``release``, ``<entry key>:flight``):

* claim, in one atomic step: the entry if it exists (a hit, shared); else the lock taken for a
  fresh token (``SET NX PX lease``); else the holder's token;
* the holder calls upstream, renewing its lease every third of it, and deletes the lock (only
  while it is still its own: compare-and-delete) once the answer is stored or the call failed;
* a waiting flight claims again with a backoff from 10 ms to 200 ms: the answer appears (a hit),
  or the lock is gone without one (the holder failed, died and its lease ran out, or its answer
  was not cacheable) and the claim takes it. After following ``_ROUNDS`` holders it calls alone.

Redis not answering never blocks or fails a call: the flight calls upstream without a lock (the
backend counts the failure and logs the outage once, as for lookups). A waiting flight has no
deadline of its own, like every shared flight: its subscribers stop waiting at theirs, and the
last one leaving cancels it. Streams do not take part: a stream waiting for another replica
would see no token until the whole answer existed, so streams share within a process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aurea.cache._backend import NO_VALUE
from aurea.cache._common import _ROUNDS
from aurea.cache._keys import CacheKey

if TYPE_CHECKING:  # the redis extra is imported only when the cache is on Redis
    from aurea.cache._redis import RedisBackend

__all__ = ["ReplicaFlight"]

T = TypeVar("T")
_FIRST_WAIT_S = 0.01
_LAST_WAIT_S = 0.2
_REPLICA = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # this process, in lock tokens


class ReplicaFlight:
    """One flight's side of the cross-replica lock for ``key``. ``run`` makes the call or
    waits for another replica's answer; ``release`` gives the lock back (idempotent)."""

    __slots__ = ("_backend", "_held", "_key", "_lease_s", "remote")

    def __init__(self, backend: RedisBackend, key: CacheKey, lease_s: float) -> None:
        self._backend = backend
        self._key = key
        self._lease_s = lease_s
        self._held: str | None = None  # the token of the lock this flight holds
        self.remote = False  # the result is another replica's answer, read from the cache

    async def run(self, call: Callable[[], Awaitable[T]], hit: Callable[[Any], T | None]) -> T:
        """``call()``'s result, or (``remote`` set) another replica's answer as ``hit`` reads
        it. On an error or cancellation the lock is released before it propagates."""
        holders: set[str] = set()
        wait_s = _FIRST_WAIT_S
        while True:
            token = f"{_REPLICA}-{uuid.uuid4().hex}"
            claim = await self._backend.claim(self._key, token, self._lease_s)
            if claim is None:  # Redis did not answer: the call goes ahead, alone
                return await call()
            if claim.taken:
                self._held = token
                try:
                    async with self._renewing(token):
                        return await call()
                except BaseException:
                    await self.release()
                    raise
            if claim.value is not NO_VALUE:  # the answer is there
                found = hit(claim.value)
                if found is None:  # an entry this form cannot serve (a stream's tool calls)
                    return await call()
                self.remote = True
                return found
            holders.add(claim.holder)
            if len(holders) > _ROUNDS:  # holders keep failing: stop waiting for others
                return await call()
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 1.5, _LAST_WAIT_S)

    async def release(self) -> None:
        token, self._held = self._held, None
        if token is not None:
            await self._backend.release(self._key, token)

    @contextlib.asynccontextmanager
    async def _renewing(self, token: str) -> AsyncIterator[None]:
        async def renew() -> None:
            while True:
                await asyncio.sleep(self._lease_s / 3)
                if not await self._backend.renew(self._key, token, self._lease_s):
                    return  # lost (expired during an outage, or Redis down): the call goes on

        task = asyncio.ensure_future(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
