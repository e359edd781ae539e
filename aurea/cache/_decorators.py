"""Decorators for Python code that embeds Aurea: cache an async function's results in the same
response cache the server uses (``aurea.Embedded(...).cache``), or in a standalone one.

    llm_cache = ResponseCache.memory()            # or: embedded.cache, or a zero-arg callable

    @cache_llm_response(llm_cache)
    async def summarize(text: str, model: str = "gpt-4o-mini") -> str: ...

    @cache_embedding(lambda: embedded.cache)       # resolved at call time
    async def embed(texts: list[str]) -> list[list[float]]: ...

The key is the SHA-256 of the function's qualified name and its arguments (which must be
JSON-like values, bytes, or Aurea's domain types); entries live under the kind ``llm`` or
``embedding`` with that kind's TTL, in the namespace given (default: the cache's configured
namespace, else ``python``), filed under the model name ``fn:<module>.<qualname>``. Concurrent
calls with equal arguments share one run of the function; an exception from it reaches every
caller of that run and is not cached. Values must be encodable to be stored (JSON-like values,
tuples, bytes, Aurea's domain types); others are returned uncached, with a warning.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from aurea.cache._backend import NO_VALUE
from aurea.cache._cache import ResponseCache
from aurea.cache._codec import CodecError, digest
from aurea.cache._flight import Flight
from aurea.cache._keys import CacheKey, CacheKind

__all__ = ["CacheSource", "cache_embedding", "cache_llm_response"]

P = ParamSpec("P")
R = TypeVar("R")
# A cache, something with a ``cache`` attribute (``aurea.Embedded``), or a callable returning
# one (resolved at each call, so the decorator can be applied before the server starts).
CacheSource = ResponseCache | Callable[[], ResponseCache] | Any
_DEFAULT: list[ResponseCache] = []


def _default() -> ResponseCache:
    if not _DEFAULT:
        _DEFAULT.append(ResponseCache.memory())
    return _DEFAULT[0]


def _resolve(source: CacheSource | None) -> ResponseCache:
    if source is None:
        return _default()
    if isinstance(source, ResponseCache):
        return source
    held = getattr(source, "cache", None)
    if isinstance(held, ResponseCache):
        return held
    if callable(source):
        got = source()
        if isinstance(got, ResponseCache):
            return got
    raise TypeError(f"not a response cache, nor something that holds one: {source!r}")


def _decorator(
    kind: CacheKind, source: CacheSource | None, namespace: str | None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    def wrap(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"{fn.__qualname__} must be an async function to be cached")
        name = f"fn:{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        async def cached(*args: P.args, **kwargs: P.kwargs) -> R:
            cache = _resolve(source)
            if not cache.enabled:
                return await fn(*args, **kwargs)
            try:
                d = digest("fn/v1", name, list(args), dict(kwargs))
            except CodecError as exc:
                raise TypeError(
                    f"cannot cache {fn.__qualname__}: its arguments must be JSON-like values, "
                    f"bytes or Aurea's types ({exc})"
                ) from exc
            ns = namespace if namespace is not None else cache.namespace_of("") or "python"
            key = CacheKey(kind, ns, name, d)
            flight = cache.flights.get(key)
            if flight is None:
                value = await cache.get(key)
                if value is not NO_VALUE:
                    cache.hit(kind, 0)
                    return cast(R, value)
                flight = cache.flights.get(key)
            shared = flight is not None
            if flight is None:
                cache.miss(kind)

                async def store(f: Flight[Any]) -> None:
                    await cache.put(key, f.result, immutable=False)

                flight = cache.flights.start(key, lambda f: fn(*args, **kwargs), store)
            flight.subscribe()
            try:
                while not flight.done:
                    await flight.changed()
            finally:
                flight.unsubscribe()
            if flight.error is not None:
                raise flight.error
            if shared:
                cache.hit(kind, 0, shared=True)
            return cast(R, flight.result)

        return cached

    return wrap


def cache_llm_response(
    cache: CacheSource | None = None, *, namespace: str | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Cache an async function's results as ``llm`` entries (``[cache] ttl_s``)."""
    return _decorator(CacheKind.LLM, cache, namespace)


def cache_embedding(
    cache: CacheSource | None = None, *, namespace: str | None = None
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Cache an async function's results as ``embedding`` entries (``[cache] embedding_ttl_s``)."""
    return _decorator(CacheKind.EMBEDDING, cache, namespace)
