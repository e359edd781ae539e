"""The plain config sections (``[server]``, ``[log]``, ... ``[tls]``) gathered into ``SECTIONS``.
Each key, its default, range and meaning is declared once in ``_sections_core``,
``_sections_state`` or ``_sections_edge``; every name is re-exported here."""

from __future__ import annotations

from aurea.config._infra import InfraSettings
from aurea.config._sections_core import (
    DEFAULT_HTTP_PORT,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_GROUP_MODELS,
    POLICIES,
    STORES,
    LogSettings,
    RetrySettings,
    RouteGroups,
    RoutingSettings,
    RuntimeSettings,
    ServerSettings,
)
from aurea.config._sections_edge import (
    DEFAULT_POOLS,
    MAX_POOL_WORKERS,
    POOL_NAME_CHARS,
    HttpSettings,
    InputSettings,
    ResourcePoolSettings,
    TasksSettings,
    TelemetrySettings,
    TlsSettings,
)
from aurea.config._sections_state import (
    BreakerSettings,
    CacheSettings,
    LedgerSettings,
    LimitsSettings,
    RedisSettings,
)

__all__ = [
    "DEFAULT_HTTP_PORT",
    "DEFAULT_POOLS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MAX_GROUP_MODELS",
    "MAX_POOL_WORKERS",
    "POLICIES",
    "POOL_NAME_CHARS",
    "SECTIONS",
    "STORES",
    "BreakerSettings",
    "CacheSettings",
    "HttpSettings",
    "InputSettings",
    "LedgerSettings",
    "LimitsSettings",
    "LogSettings",
    "RedisSettings",
    "ResourcePoolSettings",
    "RetrySettings",
    "RouteGroups",
    "RoutingSettings",
    "RuntimeSettings",
    "ServerSettings",
    "TasksSettings",
    "TelemetrySettings",
    "TlsSettings",
]


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
