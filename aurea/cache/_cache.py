"""The response cache: a backend (memory or Redis), the flights in progress, per-kind counters,
and the settings that say what is kept and for how long. ``CachedInference`` uses it for calls;
the decorators use it for a Python function's results; admin reads and clears it."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from aurea.cache._backend import NO_VALUE, Backend
from aurea.cache._codec import CodecError, encode
from aurea.cache._flight import FlightTable
from aurea.cache._keys import CacheKey, CacheKind, KeyFilter
from aurea.cache._memory import MemoryBackend
from aurea.config import CacheSettings, RedisSettings
from aurea.errors import Unavailable
from aurea.telemetry import metrics

if TYPE_CHECKING:  # the redis extra is imported only when [redis] url is set
    from aurea.cache._redis import RedisBackend
    from aurea.stores.redis import RedisClient

__all__ = [
    "CacheMode",
    "CacheOutcome",
    "CacheStats",
    "KindStats",
    "ResponseCache",
    "cache_outcome",
]

log = structlog.get_logger("aurea.cache")
_METRIC_TYPE = {CacheKind.LLM: "response", CacheKind.EMBEDDING: "embedding"}


class CacheMode(enum.StrEnum):
    """What one call does with the cache.

    AUTO: a cacheable call (an embedding; a generation with temperature 0 or a seed) reads the
    cache and stores its answer; any other call does neither. READ_WRITE: the same for any
    generation, deterministic or not (the caller accepts a repeated sampled answer). BYPASS:
    neither reads nor stores. REFRESH: does not read, makes the upstream call, stores the
    answer (replacing the entry)."""

    AUTO = "auto"
    READ_WRITE = "read_write"
    BYPASS = "bypass"
    REFRESH = "refresh"


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheOutcome:
    """What the cache did for the call running in this task (read by the edges after it)."""

    hit: bool = False  # answered from the cache, or by sharing an identical call in flight
    shared: bool = False  # the hit was an identical call in flight, not a stored entry
    saved_cost_nanos: int = 0  # what the answer cost when it was made


_outcome: ContextVar[CacheOutcome | None] = ContextVar("aurea_cache_outcome", default=None)
_MISS = CacheOutcome()


def cache_outcome() -> CacheOutcome:
    """The cache's outcome for the last call made in this task (a miss when it was not
    cached at all)."""
    return _outcome.get() or _MISS


@dataclass(slots=True)
class _Counters:
    hits: int = 0
    misses: int = 0
    shared: int = 0
    refreshes: int = 0
    stores: int = 0
    saved_cost_nanos: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class KindStats:
    kind: CacheKind
    hits: int
    misses: int
    shared: int  # hits served by an identical call in flight
    refreshes: int
    stores: int
    entries: int
    size_bytes: int
    saved_cost_nanos: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStats:
    """This process's counters, and what the backend holds (for Redis: every process's)."""

    enabled: bool
    backend: str
    backend_available: bool
    backend_errors: int
    evictions: int  # -1: the backend evicts on its own (Redis)
    bypassed: int  # calls that skipped the cache (bypass, or not cacheable)
    kinds: tuple[KindStats, ...] = field(default_factory=tuple)
    usage_known: bool = True  # False: the backend could not say what it holds

    @property
    def hits(self) -> int:
        return sum(k.hits for k in self.kinds)

    @property
    def misses(self) -> int:
        return sum(k.misses for k in self.kinds)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    @property
    def entries(self) -> int:
        return sum(k.entries for k in self.kinds)

    @property
    def size_bytes(self) -> int:
        return sum(k.size_bytes for k in self.kinds)


class ResponseCache:
    """``enabled`` False turns every call into a bypass (the counters still count them)."""

    def __init__(
        self,
        backend: Backend,
        *,
        enabled: bool = True,
        ttl_s: float = 3600.0,
        embedding_ttl_s: float = 86_400.0,
        namespace: str = "",
        tenants: Mapping[str, str] | None = None,
        metrics_on: bool = False,
        flight_locks: RedisBackend | None = None,
        flight_lease_s: float = 10.0,
    ) -> None:
        """``flight_locks``: the Redis backend whose entry locks make unary calls' and
        embeddings' flights single across replicas (``_replicas``); None: per process."""
        self.backend = backend
        self.enabled = enabled
        self.ttls = {CacheKind.LLM: ttl_s, CacheKind.EMBEDDING: embedding_ttl_s}
        self._namespace = namespace
        self._tenants = dict(tenants or {})  # API key name -> its tenant
        self._metrics = metrics_on
        self.flights = FlightTable()
        self.flight_locks = flight_locks
        self.flight_lease_s = flight_lease_s
        self._counters = {k: _Counters() for k in CacheKind}
        self.bypassed = 0

    @classmethod
    def memory(
        cls,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 << 20,
        ttl_s: float = 3600.0,
        embedding_ttl_s: float = 86_400.0,
        namespace: str = "",
        tenants: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> ResponseCache:
        """A standalone in-process cache (for the decorators without a server)."""
        backend = MemoryBackend(max_entries=max_entries, max_bytes=max_bytes, clock=clock)
        return cls(
            backend,
            ttl_s=ttl_s,
            embedding_ttl_s=embedding_ttl_s,
            namespace=namespace,
            tenants=tenants,
        )

    @classmethod
    def from_settings(
        cls,
        cache: CacheSettings,
        redis: RedisSettings,
        *,
        tenants: Mapping[str, str] | None = None,
        metrics_on: bool = False,
        clock: Callable[[], float] = time.monotonic,
        redis_client: RedisClient | None = None,
    ) -> ResponseCache:
        """Redis when ``[cache] redis_url`` or ``[redis] url`` is set (with ``[cache]
        shared_flight``, flights single across replicas too), else memory; bounded and
        timed by ``[cache]``. ``clock`` times memory entries' TTLs (Redis expires its own).
        ``redis_client``: the connection the shared stores use, for a cache on ``[redis] url``
        (the cache then neither opens nor closes one)."""
        backend: Backend
        locks: RedisBackend | None = None
        if cache.redis_url or redis.url:
            from aurea.cache._redis import RedisBackend
            from aurea.stores.redis import open_redis

            # A Redis of the cache's own (``[cache] redis_url``), else the shared one.
            # ``[redis] cluster`` describes ``[redis] url``; a cache's own is one server.
            client = None if cache.redis_url else redis_client
            owns = client is None
            if client is None:
                url, cluster = (
                    (cache.redis_url, False) if cache.redis_url else (redis.url, redis.cluster)
                )
                client = open_redis(url, prefix=redis.key_prefix, cluster=cluster)
            backend = RedisBackend(
                client,
                owns_client=owns,
                timeout_s=redis.timeout_s,
                retry_s=redis.retry_s,
                on_error=_redis_error if metrics_on else None,
            )
            locks = backend if cache.shared_flight else None
        else:
            backend = MemoryBackend(
                max_entries=cache.max_entries, max_bytes=cache.max_bytes, clock=clock
            )
        return cls(
            backend,
            enabled=cache.enabled and cache.max_entries > 0 and cache.max_bytes > 0,
            ttl_s=cache.ttl_s,
            embedding_ttl_s=cache.embedding_ttl_s,
            namespace=cache.namespace,
            tenants=tenants,
            metrics_on=metrics_on,
            flight_locks=locks,
            flight_lease_s=cache.flight_lease_s,
        )

    def namespace_of(self, principal: str, tenant: str = "") -> str:
        """The namespace of a caller: its API key's tenant (``tenant``, as the edge found it on
        the key; else the configured keys' map; else the key's name), unless ``[cache]
        namespace`` puts every caller in one."""
        return self._namespace or tenant or self._tenants.get(principal, principal)

    # -- entries -------------------------------------------------------------------------------
    async def get(self, key: CacheKey) -> Any:
        """The entry's value or ``NO_VALUE`` (counted by the caller: it knows what it found)."""
        return await self.backend.get(key)

    async def put(self, key: CacheKey, value: Any, *, immutable: bool = True) -> bool:
        """Store ``value`` for its kind's TTL. A value that cannot be encoded is not stored
        (logged); a mutable one is decoded afresh on every memory hit."""
        try:
            blob = encode(value)
        except CodecError as exc:
            log.warning("cache_value_unstorable", kind=key.kind.value, error=str(exc))
            return False
        stored = await self.backend.put(
            key, value if immutable else NO_VALUE, blob, self.ttls[key.kind]
        )
        if stored:
            self._counters[key.kind].stores += 1
        return stored

    async def clear(self, flt: KeyFilter | None = None) -> tuple[int, int]:
        """Remove matching entries (all without a filter); (entries, bytes) removed. Counters
        are kept."""
        return await self.backend.clear(flt or KeyFilter())

    # -- counting ------------------------------------------------------------------------------
    def hit(self, kind: CacheKind, saved_cost_nanos: int, *, shared: bool = False) -> None:
        c = self._counters[kind]
        c.hits += 1
        c.saved_cost_nanos += saved_cost_nanos
        if shared:
            c.shared += 1
        _outcome.set(CacheOutcome(hit=True, shared=shared, saved_cost_nanos=saved_cost_nanos))
        if self._metrics:
            metrics.cache_hit(_METRIC_TYPE[kind])

    def miss(self, kind: CacheKind) -> None:
        self._counters[kind].misses += 1
        _outcome.set(_MISS)
        if self._metrics:
            metrics.cache_miss(_METRIC_TYPE[kind])

    def refresh(self, kind: CacheKind) -> None:
        self._counters[kind].refreshes += 1
        _outcome.set(_MISS)

    def bypass(self) -> None:
        self.bypassed += 1
        _outcome.set(_MISS)

    async def stats(self) -> CacheStats:
        usage: dict[CacheKind, tuple[int, int]] = {}
        known = True
        try:
            usage = await self.backend.usage()
        except Unavailable:
            known = False
        kinds = tuple(
            KindStats(
                kind=kind,
                hits=c.hits,
                misses=c.misses,
                shared=c.shared,
                refreshes=c.refreshes,
                stores=c.stores,
                entries=usage.get(kind, (0, 0))[0],
                size_bytes=usage.get(kind, (0, 0))[1],
                saved_cost_nanos=c.saved_cost_nanos,
            )
            for kind, c in self._counters.items()
        )
        return CacheStats(
            enabled=self.enabled,
            backend=self.backend.name,
            backend_available=self.backend.available,
            backend_errors=self.backend.errors,
            evictions=self.backend.evictions,
            bypassed=self.bypassed,
            kinds=kinds,
            usage_known=known,
        )

    async def aclose(self) -> None:
        await self.flights.aclose()
        await self.backend.aclose()


def _redis_error() -> None:
    metrics.cache_backend_error("redis")
