"""The Redis cache backend (``redis.asyncio``, the ``redis`` extra): entries shared by every
Aurea process that uses the same ``[redis] url`` and ``key_prefix``.

Redis down never fails a call: an operation that errors or passes ``[redis] timeout_s`` counts
as a miss (a lookup) or is skipped (a store), one warning line marks the outage, a counter
counts each failure, and for ``[redis] retry_s`` the cache does not try Redis at all (so calls
do not each pay a timeout). The first operation after that probes again; when it succeeds the
cache is back, with no restart.

Each lookup and each store is one command (one round trip); entries expire by Redis's own TTL
(``PX``). Sizes are bounded by Redis's ``maxmemory`` and its eviction policy (run Redis with
``maxmemory-policy allkeys-lru`` or ``volatile-lru``), not by ``[cache] max_entries``.

On a Redis Cluster (``[redis] cluster``) entries spread over the shards by key; ``ClearCache``
and ``GetCacheStats`` scan every primary (redis-py's cluster ``scan_iter`` walks each one's
cursor) and their pipelines of ``STRLEN``/``UNLINK`` are split per shard.

Single flight across replicas (``_replicas``) keeps a lock beside an entry: ``<entry key>:flight``
(the entry's hash tag, so the same Cluster slot; never matched by the entries' ``SCAN`` glob,
which ends in the tag's ``}``), holding the token of the replica calling upstream for it, with
a lease (``PX``) that replica renews while its call runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from redis.exceptions import RedisClusterException, RedisError

from aurea.cache._backend import NO_VALUE, Usage
from aurea.cache._codec import CodecError, decode
from aurea.cache._keys import CacheKey, CacheKind, KeyFilter
from aurea.errors import Unavailable
from aurea.stores.redis import RedisClient

__all__ = ["FLIGHT_SUFFIX", "Claim", "RedisBackend"]

log = structlog.get_logger("aurea.cache")
_SCAN_BATCH = 1000
FLIGHT_SUFFIX = ":flight"

# KEYS: entry, lock; ARGV: token, lease ms. The entry if there is one, else the lock taken if it
# was free, else its holder: one atomic step, so an answer stored (and its lock deleted) between
# two separate reads can never look like "no answer and no lock".
_CLAIM = """
local blob = redis.call('GET', KEYS[1])
if blob then return {'entry', blob} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'taken', ARGV[1]} end
return {'held', redis.call('GET', KEYS[2]) or ''}
"""
# KEYS: lock; ARGV: token, lease ms. Extends the lease only while the lock is still this token's.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: lock; ARGV: token. Deletes the lock only while it is still this token's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@dataclass(frozen=True, slots=True)
class Claim:
    """What ``claim`` found: the entry's value (``value`` set), the lock taken by this token
    (``taken``), or the lock held by another (``holder``)."""

    value: Any = NO_VALUE
    taken: bool = False
    holder: str = ""


class RedisBackend:
    name = "redis"

    def __init__(
        self,
        client: RedisClient,
        *,
        timeout_s: float,
        retry_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_error: Callable[[], None] | None = None,
        owns_client: bool = True,
    ) -> None:
        # The shared stores' connection (``aurea.stores.redis``): one pool, no silent re-send.
        self._client: Any = client.redis
        self._gate = client.gate  # a cluster client queues callers here (one server: free)
        self._owner = client if owns_client else None
        self._where = client.where  # the server, without credentials
        # RedisClusterException: a cluster none of whose nodes answers (not a RedisError).
        self._failures: tuple[type[BaseException], ...] = (
            RedisError,
            RedisClusterException,
            OSError,
            TimeoutError,
        )
        self._prefix = client.prefix
        self._claim = client.script(_CLAIM)
        self._renew = client.script(_RENEW)
        self._release = client.script(_RELEASE)
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._clock = clock
        self._on_error = on_error
        self._down = False
        self._retry_at = 0.0
        self.evictions = -1  # Redis expires and evicts on its own: not seen from here
        self.errors = 0
        self.skipped = 0  # operations not tried because Redis was down

    @property
    def available(self) -> bool:
        return not self._down

    async def get(self, key: CacheKey) -> Any:
        if self._resting():
            return NO_VALUE
        try:
            async with asyncio.timeout(self._timeout_s * 2), self._gate():
                blob = await self._client.get(key.redis(self._prefix))
        except self._failures as exc:
            self._failed("get", exc)
            return NO_VALUE
        self._answered()
        if blob is None:
            return NO_VALUE
        try:
            return decode(blob)
        except (CodecError, TypeError) as exc:  # another version's entry, or damaged: a miss
            log.debug("cache_entry_unreadable", error=str(exc))
            return NO_VALUE

    async def put(self, key: CacheKey, value: Any, blob: bytes, ttl_s: float) -> bool:
        if self._resting():
            return False
        px = max(int(ttl_s * 1000), 1) if ttl_s > 0 else None
        try:
            async with asyncio.timeout(self._timeout_s * 2), self._gate():
                await self._client.set(key.redis(self._prefix), blob, px=px)
        except self._failures as exc:
            self._failed("set", exc)
            return False
        self._answered()
        return True

    # -- the cross-replica flight lock (``_replicas``) -------------------------------------------
    async def claim(self, key: CacheKey, token: str, lease_s: float) -> Claim | None:
        """The entry, or the entry's flight lock taken for ``token``, or who holds it; None
        when Redis did not answer (the caller goes on alone)."""
        if self._resting():
            return None
        entry = key.redis(self._prefix)
        try:
            async with asyncio.timeout(self._timeout_s * 2), self._gate():
                what, data = await self._claim(
                    keys=[entry, entry + FLIGHT_SUFFIX], args=[token, _ms(lease_s)]
                )
        except self._failures as exc:
            self._failed("claim", exc)
            return None
        self._answered()
        what = what.decode() if isinstance(what, bytes) else str(what)
        if what == "taken":
            return Claim(taken=True)
        if what == "held":
            return Claim(holder=data.decode() if isinstance(data, bytes) else str(data))
        try:
            return Claim(value=decode(data))
        except (CodecError, TypeError) as exc:  # unreadable: as if there were none, alone
            log.debug("cache_entry_unreadable", error=str(exc))
            return None

    async def renew(self, key: CacheKey, token: str, lease_s: float) -> bool:
        """Extend ``token``'s lock by ``lease_s``; False when it is no longer ours (or Redis
        did not answer)."""
        return await self._lock_op("renew", self._renew, key, token, _ms(lease_s))

    async def release(self, key: CacheKey, token: str) -> bool:
        """Delete the entry's flight lock if ``token`` still holds it."""
        return await self._lock_op("release", self._release, key, token)

    async def _lock_op(self, op: str, script: Any, key: CacheKey, *args: Any) -> bool:
        if self._resting():
            return False
        lock = key.redis(self._prefix) + FLIGHT_SUFFIX
        try:
            async with asyncio.timeout(self._timeout_s * 2), self._gate():
                done = await script(keys=[lock], args=list(args))
        except self._failures as exc:
            self._failed(op, exc)
            return False
        self._answered()
        return bool(done)

    async def clear(self, flt: KeyFilter) -> tuple[int, int]:
        removed = freed = 0
        try:
            async with self._gate():
                batch: list[bytes] = []
                async for key in self._client.scan_iter(
                    match=self._pattern(flt), count=_SCAN_BATCH
                ):
                    batch.append(key)
                    if len(batch) >= _SCAN_BATCH:
                        n, b = await self._unlink(batch)
                        removed, freed, batch = removed + n, freed + b, []
                if batch:
                    n, b = await self._unlink(batch)
                    removed, freed = removed + n, freed + b
        except self._failures as exc:
            self._failed("clear", exc)
            raise Unavailable(
                "the cache's Redis did not answer; nothing more was removed", retry_after_s=1.0
            ) from exc
        self._answered()
        return removed, freed

    async def usage(self) -> Usage:
        out: Usage = {}
        kinds = {k.value: k for k in CacheKind}
        start = len(self._prefix) + len(":cache:")
        try:
            async with self._gate():
                batch: list[bytes] = []
                async for key in self._client.scan_iter(
                    match=self._pattern(KeyFilter()), count=_SCAN_BATCH
                ):
                    batch.append(key)
                    if len(batch) >= _SCAN_BATCH:
                        await self._measure(batch, kinds, start, out)
                        batch = []
                if batch:
                    await self._measure(batch, kinds, start, out)
        except self._failures as exc:
            self._failed("usage", exc)
            raise Unavailable("the cache's Redis did not answer", retry_after_s=1.0) from exc
        self._answered()
        return out

    async def aclose(self) -> None:
        if self._owner is not None:
            # Closing a connection to a dead server: nothing to release.
            with contextlib.suppress(*self._failures):
                await self._owner.aclose()

    # -- pieces ------------------------------------------------------------------------------
    def _pattern(self, flt: KeyFilter) -> str:
        escaped = _glob_escape(self._prefix)
        return escaped + flt.pattern(self._prefix)[len(self._prefix) :]

    async def _unlink(self, keys: list[bytes]) -> tuple[int, int]:
        pipe = self._client.pipeline(transaction=False)
        for k in keys:
            pipe.strlen(k)
        for k in keys:
            # Not ``pipe.unlink``: a cluster pipeline's is a coroutine (its multi-key split)
            # that never joins the pipeline.
            pipe.execute_command("UNLINK", k)
        results = await pipe.execute()
        sizes, gone = results[: len(keys)], results[len(keys) :]
        removed = sum(int(g) for g in gone)
        freed = sum(int(s) + len(k) for s, g, k in zip(sizes, gone, keys, strict=True) if g)
        return removed, freed

    async def _measure(
        self, keys: list[bytes], kinds: dict[str, CacheKind], start: int, out: Usage
    ) -> None:
        pipe = self._client.pipeline(transaction=False)
        for k in keys:
            pipe.strlen(k)
        sizes = await pipe.execute()
        for k, size in zip(keys, sizes, strict=True):
            if not size:  # expired between the scan and the read
                continue
            kind = kinds.get(k[start:].split(b":", 1)[0].decode("ascii", "replace"))
            if kind is None:
                continue
            entries, total = out.get(kind, (0, 0))
            out[kind] = (entries + 1, total + int(size) + len(k))

    def _resting(self) -> bool:
        if self._down and self._clock() < self._retry_at:
            self.skipped += 1
            return True
        return False

    def _failed(self, op: str, exc: BaseException) -> None:
        self.errors += 1
        if self._on_error is not None:
            self._on_error()
        self._retry_at = self._clock() + self._retry_s
        if not self._down:
            self._down = True
            log.warning(
                "cache_backend_unavailable",
                backend="redis",
                server=self._where,
                operation=op,
                error=f"{type(exc).__name__}: {exc}"[:300],
                hint=f"calls are served without the cache; Redis is tried again every "
                f"{self._retry_s:g} s",
            )

    def _answered(self) -> None:
        if self._down:
            self._down = False
            log.info("cache_backend_recovered", backend="redis")
