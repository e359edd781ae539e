"""The response cache: answers and embeddings kept by a key over everything that changes them,
in memory (an LRU bounded by entries and bytes) or in Redis (shared by replicas), with
single-flight for identical concurrent misses. ``CachedInference`` puts it around every call;
the decorators put it around a Python function."""

from aurea.cache._backend import NO_VALUE, Backend
from aurea.cache._cache import (
    CacheMode,
    CacheOutcome,
    CacheStats,
    KindStats,
    ResponseCache,
    cache_outcome,
)
from aurea.cache._codec import CodecError
from aurea.cache._decorators import cache_embedding, cache_llm_response
from aurea.cache._entry import Answer
from aurea.cache._facade import CachedInference
from aurea.cache._keys import CacheKey, CacheKind, KeyFilter, embed_key, generate_key
from aurea.cache._memory import MemoryBackend

__all__ = [
    "NO_VALUE",
    "Answer",
    "Backend",
    "CacheKey",
    "CacheKind",
    "CacheMode",
    "CacheOutcome",
    "CacheStats",
    "CachedInference",
    "CodecError",
    "KeyFilter",
    "KindStats",
    "MemoryBackend",
    "ResponseCache",
    "cache_embedding",
    "cache_llm_response",
    "cache_outcome",
    "embed_key",
    "generate_key",
]
