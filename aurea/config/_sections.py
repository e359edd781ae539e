"""The plain config sections (``[server]``, ``[log]``, ... ``[tls]``): every key, its default,
its range and its meaning, declared once. Sections that later issues fill in are reserved here
with their defaults so code can read them now."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aurea.config._infra import InfraSettings
from aurea.config._rules import (
    BUDGET_RANGE,
    NANOS_PER_USD,
    ConfigError,
    as_str,
    as_strs,
    budget_nanos,
    http_url,
    setting,
    show,
)

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
POLICIES = ("cost", "quality", "latency", "balanced")
STORES = ("memory", "sqlite")
DEFAULT_HTTP_PORT = 8080

_DAY_S = 86_400.0
_YEAR_S = 365 * _DAY_S
_MANY = 1_000_000_000  # upper bound for counts that have no natural one


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
class ServerSettings:
    """``[server]``: where the gRPC server listens, how much it takes on, how it stops."""

    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(50051, "TCP port; 0 picks a free one", lo=0, hi=65535)
    grace_s: float = setting(
        10.0, "seconds in-flight calls may run on after SIGTERM", lo=0, hi=3600
    )
    reuse_port: bool = setting(False, "set SO_REUSEPORT so several processes share the port")
    max_concurrent_rpcs: int = setting(
        10_000,
        "RPCs served at once (grpc maximum_concurrent_rpcs); more are refused",
        lo=1,
        hi=_MANY,
    )
    max_health_watches: int = setting(
        1000, "open Health.Watch streams at once; 0 refuses every Watch", lo=0, hi=_MANY
    )
    default_call_timeout_s: float = setting(
        300.0,
        "seconds one call may take in total, over all attempts, when the caller sets no deadline",
        lo=0,
        lo_open=True,
        hi=_DAY_S,
    )
    allow_open_on_any_interface: bool = setting(
        False,
        "allow open mode (no API keys: every caller has every scope) on a non-loopback address; "
        "without it such a configuration refuses to start",
    )
    max_streams_per_key: int = setting(
        1000,
        "streaming calls one API key may hold open at once (a key's max_streams overrides); "
        "0 = no limit",
        lo=0,
        hi=_MANY,
    )
    revoked_key_grace_s: float = setting(
        10.0,
        "seconds a call already running on an API key that is disabled (or whose previous "
        "secret expires after a rotation) may go on before it is ended UNAUTHENTICATED",
        lo=0,
        hi=_DAY_S,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    """``[log]``: level, format (JSON off a TTY, console on one) and PII redaction."""

    level: str = setting("info", "least severe level written", choices=LOG_LEVELS)
    format: str = setting("auto", "auto = console on a TTY, JSON otherwise", choices=LOG_FORMATS)
    redact_pii: bool = setting(
        True, "mask e-mail addresses, phone numbers, cards, IPs, keys, secrets in log lines"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySettings:
    """``[retry]``: retries of one candidate before falling back to the next."""

    max_retries: int = setting(2, "extra attempts per candidate", lo=0, hi=10)
    backoff_base_s: float = setting(
        0.1, "seconds before the first retry; doubles per retry, with jitter", lo=0, hi=60
    )
    backoff_max_s: float = setting(2.0, "most seconds between two retries", lo=0, hi=600)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeSettings:
    """``[runtime]``: the actor system."""

    mailbox_capacity: int = setting(
        1024, "messages an actor's mailbox holds; a full one is Overloaded", lo=1, hi=1_000_000
    )
    ask_timeout_s: float = setting(
        5.0, "seconds an ask waits for an actor's reply", lo=0, lo_open=True, hi=600
    )


MAX_GROUP_MODELS = 16

RouteGroups = tuple[tuple[str, tuple[str, ...]], ...]


def _route_groups(v: Any, key: str) -> RouteGroups:
    """Named route groups: a TOML table ``{fast = ["a", "b"]}`` or (from the environment) the
    same as JSON. Each name maps to 1 to 16 catalog models, tried in that order."""
    if isinstance(v, str):
        try:
            v = json.loads(v) if v.strip() else {}
        except ValueError:
            raise ConfigError(key, "must be a JSON object of name -> [models]") from None
    if not isinstance(v, dict):
        raise ConfigError(key, f"{show(v)} is not a table of name = [models]")
    out: list[tuple[str, tuple[str, ...]]] = []
    for name, models in v.items():
        where = f"{key}.{name}"
        members = as_strs(models, where) if not isinstance(models, str) else None
        if not members or not 1 <= len(members) <= MAX_GROUP_MODELS:
            raise ConfigError(where, f"must list 1 to {MAX_GROUP_MODELS} catalog models")
        if len(set(members)) != len(members):
            raise ConfigError(where, "lists a model twice")
        out.append((str(name), members))
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingSettings:
    """``[routing]``: the default policy and models, which models may be used at all, route
    groups, and how the router learns from outcomes (see ``aurea.routing``)."""

    policy: str = setting("balanced", "how models are ranked when none is named", choices=POLICIES)
    default_model: str = setting("sim-small", "chat model when none is named; '' = use policy")
    default_embedding_model: str = setting("sim-embed", "embedding model when none is named")
    allowed_models: tuple[str, ...] = setting((), "catalog models callers may use; empty = all")
    denied_models: tuple[str, ...] = setting((), "catalog models nobody may use; deny wins")
    groups: tuple[tuple[str, tuple[str, ...]], ...] = setting(
        (),
        "route groups a request may name as its model: name = [model, fallback, ...]",
        parse=_route_groups,
        allowed="a table of name = [1 to 16 catalog models]",
    )
    cost_weight: float = setting(
        0.4, "weight of cost until weights are set or optimized", lo=0, hi=1
    )
    quality_weight: float = setting(
        0.4, "weight of quality (success rate) until weights are set or optimized", lo=0, hi=1
    )
    latency_weight: float = setting(
        0.2, "weight of latency until weights are set or optimized; the three sum to 1", lo=0, hi=1
    )
    stats_store: str = setting("sqlite", "where router stats and weights live", choices=STORES)
    sqlite_path: str = setting(
        "",
        "SQLite file; '' = aurea.db in $AUREA_STATE_DIR, else $AUREA_HOME, else "
        "~/.local/share/aurea (the file the other stores share)",
    )
    stats_half_life_s: float = setting(
        300.0,
        "seconds after which an outcome counts half in recent success rate and latency",
        lo=0,
        lo_open=True,
        hi=_YEAR_S,
    )
    min_samples: int = setting(
        5,
        "recent outcomes (decayed by the half-life, to the nearest whole one) a model needs "
        "before its measured figures replace the catalog priors",
        lo=1,
        hi=_MANY,
    )
    optimize_interval_s: float = setting(
        0.0, "seconds between automatic OptimizeWeights runs; 0 = only when asked", lo=0, hi=_YEAR_S
    )
    publish_interval_s: float = setting(
        0.1,
        "least seconds between two routing tables rebuilt from new outcomes (batching)",
        lo=0.001,
        hi=60,
    )


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


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetrySettings:
    """``[telemetry]``: the Prometheus endpoint and OpenTelemetry traces."""

    metrics_enabled: bool = setting(True, "serve Prometheus metrics over HTTP")
    http_host: str = setting("127.0.0.1", "address of the metrics/health HTTP endpoint")
    http_port: int = setting(9464, "port of the metrics/health HTTP endpoint", lo=0, hi=65535)
    otlp_endpoint: str = setting(
        "",
        "OTLP collector URL (http:// or https://); '' = no traces",
        parse=http_url,
        allowed="'' or an http(s) URL",
    )
    trace_sample_ratio: float = setting(1.0, "fraction of calls traced", lo=0, hi=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsSettings:
    """``[tls]``: TLS on every port Aurea listens on (gRPC, the HTTP door, the metrics side
    port); mTLS with a client CA. Files are PEM, checked at load, read again on SIGHUP."""

    cert_file: str = setting("", "server certificate chain (PEM); '' = plaintext")
    key_file: str = setting("", "server private key (PEM); required with cert_file")
    client_ca_file: str = setting("", "CA bundle (PEM) that client certificates must chain to")
    require_client_cert: bool = setting(
        False,
        "refuse clients without a certificate that chains to client_ca_file (mTLS); without "
        "it the gRPC port asks for none and the HTTP ports check one only if offered",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class InputSettings:
    """``[input]``: the largest request each door accepts. A request over a limit is refused
    INVALID_ARGUMENT (HTTP 400, or 413 for the body's size) naming the limit's key."""

    max_request_bytes: int = setting(
        4 << 20, "largest gRPC request message, in bytes", lo=1024, hi=1 << 30
    )
    max_prompt_chars: int = setting(
        2_000_000,
        "characters of text in one call's prompt (every message, part and tool result)",
        lo=1,
        hi=1 << 30,
    )
    max_messages: int = setting(1000, "messages in one call", lo=1, hi=1_000_000)
    max_tools: int = setting(128, "tool definitions in one call", lo=0, hi=128)
    max_labels: int = setting(32, "labels on one call", lo=0, hi=10_000)
    max_label_chars: int = setting(
        256, "characters of one label's key or value", lo=1, hi=1_000_000
    )
    max_tokens: int = setting(
        1_000_000, "the largest max_tokens a call may ask for", lo=1, hi=100_000_000
    )
    max_embed_inputs: int = setting(2048, "texts in one embedding call", lo=1, hi=1_000_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSettings:
    """``[http]``: the OpenAI-compatible HTTP door (``/v1/chat/completions``, ``/v1/embeddings``,
    ``/v1/models``), served beside the gRPC server with the same keys, scopes and state."""

    enabled: bool = setting(True, "serve the OpenAI-compatible HTTP door")
    host: str = setting("127.0.0.1", "address the HTTP door listens on")
    port: int = setting(
        DEFAULT_HTTP_PORT,
        "TCP port of the HTTP door; 0 picks a free one. If the default port is taken the door "
        "is skipped with an error log line; any other port must be free or the start fails",
        lo=0,
        hi=65535,
    )
    max_body_bytes: int = setting(
        4 << 20,
        "largest request body the door reads; a larger one is refused (413)",
        lo=1024,
        hi=1 << 30,
    )
    max_concurrent_requests: int = setting(
        10_000,
        "requests the door serves at once; more are refused 503 with Retry-After",
        lo=1,
        hi=_MANY,
    )


POOL_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.")
MAX_POOL_WORKERS = 1024
DEFAULT_POOLS = ("llm=4", "tool=4", "whisper=1", "background=2", "general=4")


def _pools(v: Any, key: str) -> tuple[str, ...]:
    """Worker pools as ``name=workers`` entries: a TOML table (``{llm = 4}``), a list of
    ``"name=workers"`` strings, or (from the environment) ``"llm=4,general=2"``."""
    if isinstance(v, dict):
        v = [f"{name}={size}" for name, size in v.items()]
    entries = as_strs(v, key)
    out: dict[str, int] = {}
    for entry in entries:
        name, sep, size = entry.partition("=")
        name = name.strip().lower()
        if not sep or not name or len(name) > 64 or not set(name) <= POOL_NAME_CHARS:
            raise ConfigError(key, f"{show(entry)} is not name=workers (a name of a-z, 0-9, _ - .)")
        try:
            workers = int(size.strip())
        except ValueError:
            workers = -1
        if not 0 <= workers <= MAX_POOL_WORKERS:
            raise ConfigError(key, f"pool {name!r}: workers must be in [0, {MAX_POOL_WORKERS}]")
        if name in out:
            raise ConfigError(key, f"pool {name!r} is listed twice")
        out[name] = workers
    if not out:
        raise ConfigError(key, "needs at least one pool")
    return tuple(f"{name}={workers}" for name, workers in out.items())


def _modules(v: Any, key: str) -> tuple[str, ...]:
    names = as_strs(v, key)
    for name in names:
        if not name or not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(key, f"{show(name)} is not a Python module name")
    return names


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourcePoolSettings:
    """One ``[tasks.resource_pools.NAME]`` table: the pool NAME's tasks run in resources of
    this spec (see aurea.infra.pools)."""

    name: str
    backend: str = "local"
    cpu_millis: int = 0  # 0 = [infra] default
    memory_mib: int = 0
    image: str = ""
    autoscale: bool = False
    scale_up_queue: int = 1  # queued tasks above which (two checks running) a resource is added
    max_resources: int = 1
    idle_release_s: float = 300.0  # 0 = never release idle resources
    check_every_s: float = 1.0  # how often the autoscaler looks at queues and idle resources


_RESOURCE_POOL_KEYS = {
    "backend": str,
    "cpu_millis": int,
    "memory_mib": int,
    "image": str,
    "autoscale": bool,
    "scale_up_queue": int,
    "max_resources": int,
    "idle_release_s": float,
    "check_every_s": float,
}


def _resource_pools(v: Any, key: str) -> tuple[ResourcePoolSettings, ...]:
    if not isinstance(v, dict):
        raise ConfigError(key, "must be a table of pool name -> resource spec")
    out = []
    for name, table in v.items():
        here = f"{key}.{name}"
        if not isinstance(table, dict):
            raise ConfigError(here, "must be a table (backend, cpu_millis, max_resources, ...)")
        fields: dict[str, Any] = {}
        for k, raw in table.items():
            kind = _RESOURCE_POOL_KEYS.get(k)
            if kind is None:
                raise ConfigError(
                    f"{here}.{k}", f"unknown key; known: {', '.join(_RESOURCE_POOL_KEYS)}"
                )
            ok = isinstance(raw, kind) and (kind is bool or not isinstance(raw, bool))
            if kind is float and isinstance(raw, int) and not isinstance(raw, bool):
                raw, ok = float(raw), True
            if not ok:
                raise ConfigError(f"{here}.{k}", f"must be a {kind.__name__}")
            fields[k] = raw
        pool = ResourcePoolSettings(name=str(name).lower(), **fields)
        if pool.backend not in ("local", "docker", "proxmox"):
            raise ConfigError(f"{here}.backend", "must be one of local, docker, proxmox")
        if not 1 <= pool.max_resources <= 10_000:
            raise ConfigError(f"{here}.max_resources", "must be in [1, 10000]")
        if pool.scale_up_queue < 0 or pool.cpu_millis < 0 or pool.memory_mib < 0:
            raise ConfigError(here, "scale_up_queue, cpu_millis and memory_mib must be >= 0")
        if pool.idle_release_s < 0 or not 0.01 <= pool.check_every_s <= 3600:
            raise ConfigError(here, "idle_release_s >= 0 and check_every_s in [0.01, 3600]")
        out.append(pool)
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class TasksSettings:
    """``[tasks]``: the task queue and its worker pools (see TaskService in the protos)."""

    store: str = setting("sqlite", "where tasks live; sqlite survives a restart", choices=STORES)
    sqlite_path: str = setting(
        "", "SQLite file; '' = the ledger's file ($AUREA_HOME/aurea.db, else ~/.local/share/...)"
    )
    pools: tuple[str, ...] = setting(
        DEFAULT_POOLS,
        "worker pools and their workers, as name=workers",
        parse=_pools,
        allowed=f"name=workers entries, names of a-z 0-9 _ - ., workers in [0, {MAX_POOL_WORKERS}]",
    )
    modules: tuple[str, ...] = setting(
        (),
        "Python modules imported at start; their @task functions become task kinds",
        parse=_modules,
        allowed="list of module names",
    )
    cpu_threshold_percent: float = setting(
        90.0,
        "host CPU (last 10 s, % of all cores) at which a pool starts no new task while it has "
        "one running; 100 = no threshold",
        lo=1,
        hi=100,
    )
    queue_capacity: int = setting(
        100_000, "tasks one pool's queue holds; more are refused", lo=1, hi=_MANY
    )
    result_retention_s: float = setting(
        _DAY_S,
        "seconds a finished task (its result, its idempotency key) is kept",
        lo=1,
        hi=_YEAR_S,
    )
    aging_s_per_priority: float = setting(
        300.0,
        "seconds of waiting worth one priority level, so nothing starves",
        lo=0,
        lo_open=True,
        hi=_DAY_S,
    )
    lease_s: float = setting(
        15.0,
        "seconds a running task's lease lasts unless renewed; a dead worker's task runs again "
        "after it",
        lo=0.1,
        hi=3600,
    )
    poll_interval_s: float = setting(
        0.5,
        "seconds between queue polls of an idle pool (a submit wakes it at once)",
        lo=0.01,
        hi=60,
    )
    max_payload_bytes: int = setting(1 << 20, "largest task payload, as JSON", lo=2, hi=64 << 20)
    max_result_bytes: int = setting(
        1 << 20, "largest task result, as JSON; a bigger one fails the attempt", lo=2, hi=64 << 20
    )

    resource_pools: tuple[ResourcePoolSettings, ...] = setting(
        (),
        "pools whose tasks run in provisioned resources, as [tasks.resource_pools.NAME] tables",
        parse=_resource_pools,
        allowed="tables of backend, cpu_millis, memory_mib, image, autoscale, scale_up_queue, "
        "max_resources, idle_release_s, check_every_s",
    )

    @property
    def pool_sizes(self) -> dict[str, int]:
        """The pools as a name -> workers mapping, in configured order."""
        return {name: int(n) for name, _, n in (p.partition("=") for p in self.pools)}


SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "log": LogSettings,
    "retry": RetrySettings,
    "runtime": RuntimeSettings,
    "routing": RoutingSettings,
    "limits": LimitsSettings,
    "breaker": BreakerSettings,
    "ledger": LedgerSettings,
    "cache": CacheSettings,
    "redis": RedisSettings,
    "telemetry": TelemetrySettings,
    "tls": TlsSettings,
    "tasks": TasksSettings,
    "http": HttpSettings,
    "input": InputSettings,
    "infra": InfraSettings,
}
