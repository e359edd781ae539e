"""The edge config sections (``[telemetry]``, ``[tls]``, ``[input]``, ``[http]``, ``[tasks]``):
what Aurea serves and accepts, and its task queue with its worker and resource pools."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aurea.config._rules import ConfigError, as_strs, http_url, setting, show
from aurea.config._sections_core import _DAY_S, _MANY, _YEAR_S, DEFAULT_HTTP_PORT, STORES


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
