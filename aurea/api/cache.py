"""The response cache at the gRPC edge: a request's cache mode, the cache fields of answers,
and AdminService's GetCacheStats and ClearCache (proto <-> the cache's domain types)."""

from __future__ import annotations

from aurea.cache import CacheKind, CacheMode, CacheOutcome, CacheStats, KeyFilter, ResponseCache
from aurea.v1 import admin_pb2 as apb
from aurea.v1 import inference_pb2 as pb

__all__ = ["cache_mode", "clear_cache", "final_cache_fields", "stats_pb"]

_MODES: dict[int, CacheMode] = {
    pb.CACHE_MODE_UNSPECIFIED: CacheMode.AUTO,
    pb.CACHE_MODE_AUTO: CacheMode.AUTO,
    pb.CACHE_MODE_READ_WRITE: CacheMode.READ_WRITE,
    pb.CACHE_MODE_BYPASS: CacheMode.BYPASS,
    pb.CACHE_MODE_REFRESH: CacheMode.REFRESH,
}
_KINDS_PB: dict[CacheKind, apb.CacheKind] = {
    CacheKind.LLM: apb.CACHE_KIND_LLM,
    CacheKind.EMBEDDING: apb.CACHE_KIND_EMBEDDING,
}
_KINDS: dict[int, CacheKind] = {v: k for k, v in _KINDS_PB.items()}


def cache_mode(value: int) -> CacheMode:
    """A request's ``cache_mode`` (an unknown future value reads as AUTO)."""
    return _MODES.get(value, CacheMode.AUTO)


def final_cache_fields(final: pb.StreamFinal, outcome: CacheOutcome) -> pb.StreamFinal:
    if outcome.hit:
        final.cache_hit = True
        final.cache_saved_cost_nanos = outcome.saved_cost_nanos
    return final


def stats_pb(stats: CacheStats) -> apb.GetCacheStatsResponse:
    return apb.GetCacheStatsResponse(
        enabled=stats.enabled,
        hits=stats.hits,
        misses=stats.misses,
        hit_rate=stats.hit_rate,
        entries=stats.entries,
        size_bytes=stats.size_bytes,
        evictions=stats.evictions,
        total_requests=stats.hits + stats.misses,
        kinds=[
            apb.CacheKindStats(
                kind=_KINDS_PB[k.kind],
                hits=k.hits,
                misses=k.misses,
                hit_rate=k.hit_rate,
                shared=k.shared,
                refreshes=k.refreshes,
                entries=k.entries,
                size_bytes=k.size_bytes,
                saved_cost_nanos=k.saved_cost_nanos,
            )
            for k in stats.kinds
        ],
        backend=stats.backend,
        backend_available=stats.backend_available,
        backend_errors=stats.backend_errors,
        bypassed=stats.bypassed,
        saved_cost_nanos=sum(k.saved_cost_nanos for k in stats.kinds),
    )


async def clear_cache(
    cache: ResponseCache | None, request: apb.ClearCacheRequest
) -> apb.ClearCacheResponse:
    if cache is None:
        return apb.ClearCacheResponse()
    flt = KeyFilter(
        kind=_KINDS.get(request.kind),
        namespace=request.namespace if request.HasField("namespace") else None,
        model=request.model or None,
    )
    removed, freed = await cache.clear(flt)
    return apb.ClearCacheResponse(entries_removed=removed, bytes_freed=freed)
