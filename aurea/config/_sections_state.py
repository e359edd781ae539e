"""The state config sections (``[limits]``, ``[breaker]``, ``[ledger]``, ``[cache]``,
``[redis]``): rate limits, the breaker, spending and where shared state lives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aurea.config._rules import (
    BUDGET_RANGE,
    NANOS_PER_USD,
    ConfigError,
    as_str,
    budget_nanos,
    setting,
)
from aurea.config._sections_core import _DAY_S, _MANY, _YEAR_S, STORES


def _redis_url(v: Any, key: str) -> str:
    # The URL may carry a password: never echo it.
    url = as_str(v, key)
    if not url:
        return url
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 - parses the host part, raising on a malformed one
    except ValueError:
        raise ConfigError(key, "is not a valid URL") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(key, "must start with redis://, rediss:// or unix://")
    if parts.scheme == "unix" and not parts.path:
        raise ConfigError(key, "a unix:// URL needs the socket's path (unix:///run/redis.sock)")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(key, "needs a host (redis://host:6379/0)")
    return url


def _key_prefix(v: Any, key: str) -> str:
    prefix = as_str(v, key)
    # Aurea adds its own {hash tags} so keys work on Redis Cluster; braces here would break them.
    if not prefix or len(prefix) > 64 or any(c.isspace() or c in "{}" for c in prefix):
        raise ConfigError(key, "must be 1 to 64 characters without spaces or braces")
    return prefix


def _cache_namespace(v: Any, key: str) -> str:
    name = as_str(v, key)
    if name and (len(name) > 64 or any(c.isspace() or c in "{}" for c in name)):
        raise ConfigError(key, "must be '' or 1 to 64 characters without spaces or braces")
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsSettings:
    """``[limits]``: Aurea's own rate limits per model, unless the model sets ``rpm``/``tpm``."""

    default_rpm: int = setting(0, "requests per minute per model; 0 = unlimited", lo=0, hi=_MANY)
    default_tpm: int = setting(
        0, "tokens (input + output) per minute per model; 0 = unlimited", lo=0, hi=1e12
    )
    max_wait_s: float = setting(
        0.5,
        "seconds a call over its last candidate's limit may wait for room (never past its "
        "deadline) before it ends RESOURCE_EXHAUSTED; 0 = never wait",
        lo=0,
        hi=60,
    )
    upstream_hold_max_s: float = setting(
        60.0,
        "most seconds an upstream's 429 Retry-After or exhausted rate-limit headers keep a model "
        "from being called; 0 = never hold",
        lo=0,
        hi=3600,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerSettings:
    """``[breaker]``: a provider's circuit breaker."""

    failure_threshold: int = setting(
        5, "consecutive failed calls that open the breaker", lo=1, hi=1_000_000
    )
    open_timeout_s: float = setting(
        30.0, "seconds the breaker stays open before one trial call", lo=0, lo_open=True, hi=_DAY_S
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerSettings:
    """``[ledger]``: job budgets and where spending is recorded."""

    default_job_budget_nanos: int = setting(
        10 * NANOS_PER_USD,
        "USD a job may spend unless it sets a budget (kept as integer nano-dollars)",
        key="default_job_budget_usd",
        parse=budget_nanos,
        allowed=BUDGET_RANGE,
    )
    store: str = setting("sqlite", "where ledger entries live", choices=STORES)
    sqlite_path: str = setting(
        "", "SQLite file; '' = $AUREA_HOME/aurea.db, else ~/.local/share/aurea/aurea.db"
    )
    lease_ttl_s: float = setting(
        60.0,
        "seconds a reservation lives unless renewed (a dead replica's leases expire)",
        lo=0,
        lo_open=True,
        hi=_DAY_S,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSettings:
    """``[cache]``: the response cache. Both size caps always apply; nothing is unbounded."""

    enabled: bool = setting(True, "cache answers to cacheable calls")
    ttl_s: float = setting(3600.0, "seconds a generation stays; 0 = no age limit", lo=0, hi=_YEAR_S)
    embedding_ttl_s: float = setting(
        86_400.0, "seconds an embedding stays; 0 = no age limit", lo=0, hi=_YEAR_S
    )
    max_entries: int = setting(10_000, "most entries; 0 = cache nothing", lo=0, hi=_MANY)
    max_bytes: int = setting(
        64 << 20, "most bytes of cached data; 0 = cache nothing", lo=0, hi=1 << 40
    )
    namespace: str = setting(
        "",
        "'' = each API key its own namespace (tenant-safe); a name = every call shares it",
        parse=_cache_namespace,
        allowed="'' or 1 to 64 characters, no spaces or braces",
    )
    redis_url: str = setting(
        "",
        "'' = [redis] url; a Redis of the cache's own (one that may evict: allkeys-lru)",
        parse=_redis_url,
        allowed="'' or a redis://, rediss://, unix:// URL",
        repr=False,
    )
    shared_flight: bool = setting(
        True,
        "on Redis: identical unary calls and embeddings missing on several replicas at once "
        "make one upstream call (a lock beside the entry); streams share within a process only",
    )
    flight_lease_s: float = setting(
        10.0,
        "seconds a replica's flight lock lasts unless renewed (every third of it, while its "
        "call runs): how long a crashed replica keeps the others waiting",
        lo=0.1,
        hi=3600,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisSettings:
    """``[redis]``: shared state for several replicas. Unset, everything stays in-process."""

    url: str = setting(
        "",
        "redis://, rediss:// or unix:// URL; '' = no Redis",
        parse=_redis_url,
        allowed="'' or a redis://, rediss://, unix:// URL",
        repr=False,
    )
    key_prefix: str = setting(
        "aurea",
        "prefix of every key Aurea writes",
        parse=_key_prefix,
        allowed="1 to 64 characters, no spaces or braces",
    )
    timeout_s: float = setting(
        0.5, "seconds one Redis operation may take before it counts as failed", lo=0.01, hi=60
    )
    retry_s: float = setting(
        1.0, "after a failed operation, seconds before Redis is tried again", lo=0, hi=300
    )
    cluster: bool = setting(
        False,
        "url names one node of a Redis Cluster: the client finds the others and sends each "
        "key's command to its shard (url must be redis:// or rediss://, database 0)",
    )

    def __post_init__(self) -> None:
        if not (self.cluster and self.url):
            return
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            raise ConfigError("redis.cluster", "needs a redis:// or rediss:// url (one node's)")
        if parts.path.strip("/") not in ("", "0"):
            raise ConfigError(
                "redis.cluster", "needs database 0 in redis.url (a cluster has no other)"
            )
