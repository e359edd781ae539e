"""The core config sections (``[server]``, ``[log]``, ``[retry]``, ``[runtime]``, ``[routing]``)
and the constants the other section modules share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aurea.config._rules import ConfigError, as_strs, setting, show

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
POLICIES = ("cost", "quality", "latency", "balanced")
STORES = ("memory", "sqlite")
DEFAULT_HTTP_PORT = 8080

_DAY_S = 86_400.0
_YEAR_S = 365 * _DAY_S
_MANY = 1_000_000_000  # upper bound for counts that have no natural one


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
