"""Validated settings: built-in defaults, then an optional TOML file, then ``AUREA_*`` env vars.

Environment variables name a key as ``AUREA_<SECTION>_<KEY>`` (``AUREA_SERVER_PORT=7000``,
``AUREA_LOG_LEVEL=debug``); ``AUREA_HOST``/``AUREA_PORT`` are shortcuts for the server section,
``AUREA_API_KEYS`` (``scope:key,scope:key``) adds plaintext keys, hashed at load, and
``AUREA_CONFIG`` names the file. Other ``AUREA_*`` variables belong to clients and are ignored.
A bad value raises ``ConfigError`` naming the key and what is allowed.

Each key is declared once, with its default, range and meaning, in ``_sections`` (plain sections)
or ``_catalog`` (keys, providers, models); ``reference()`` lists them all.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aurea.config._catalog import (
    DEFAULT_MODELS,
    DEFAULT_PROVIDERS,
    MODEL_KINDS,
    PROVIDER_KINDS,
    SCOPES,
    ApiKey,
    ModelSpec,
    api_keys,
    hash_key,
    models,
    providers,
)
from aurea.config._infra import InfraSettings
from aurea.config._rules import (
    MAX_BUDGET_USD,
    MAX_CONTEXT_TOKENS,
    MAX_USD_PER_MTOK,
    NANOS_PER_USD,
    ConfigError,
    Row,
    Table,
    describe,
    read_section,
    show,
)
from aurea.config._sections import (
    DEFAULT_HTTP_PORT,
    LOG_FORMATS,
    LOG_LEVELS,
    POLICIES,
    SECTIONS,
    STORES,
    BreakerSettings,
    CacheSettings,
    HttpSettings,
    InputSettings,
    LedgerSettings,
    LimitsSettings,
    LogSettings,
    RedisSettings,
    ResourcePoolSettings,
    RetrySettings,
    RoutingSettings,
    RuntimeSettings,
    ServerSettings,
    TasksSettings,
    TelemetrySettings,
    TlsSettings,
)
from aurea.config._sources import TABLE_SECTIONS, env_overrides, read_file, read_toml
from aurea.providers._base import ProviderSpec

__all__ = [
    "DEFAULT_HTTP_PORT",
    "DEFAULT_MODELS",
    "DEFAULT_PROVIDERS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MAX_BUDGET_USD",
    "MAX_CONTEXT_TOKENS",
    "MAX_USD_PER_MTOK",
    "MODEL_KINDS",
    "NANOS_PER_USD",
    "POLICIES",
    "PROVIDER_KINDS",
    "SCOPES",
    "STORES",
    "ApiKey",
    "BreakerSettings",
    "CacheSettings",
    "ConfigError",
    "HttpSettings",
    "InfraSettings",
    "InputSettings",
    "LedgerSettings",
    "LimitsSettings",
    "LogSettings",
    "ModelSpec",
    "RedisSettings",
    "ResourcePoolSettings",
    "RetrySettings",
    "RoutingSettings",
    "Row",
    "RuntimeSettings",
    "ServerSettings",
    "Settings",
    "TasksSettings",
    "TelemetrySettings",
    "TlsSettings",
    "build_settings",
    "hash_key",
    "is_loopback",
    "load_settings",
    "reference",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    log: LogSettings = field(default_factory=LogSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    tasks: TasksSettings = field(default_factory=TasksSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    input: InputSettings = field(default_factory=InputSettings)
    infra: InfraSettings = field(default_factory=InfraSettings)
    api_keys: tuple[ApiKey, ...] = ()
    providers: Mapping[str, ProviderSpec] = field(default_factory=dict)
    models: Mapping[str, ModelSpec] = field(default_factory=dict)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults, the TOML file at ``path`` (if any) and ``env``."""
    env = os.environ if env is None else env
    path = path or env.get("AUREA_CONFIG")
    return build_settings(read_toml(path) if path else {}, env)


def build_settings(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from a TOML-shaped mapping (as the file would give) and ``env``."""
    over = env_overrides({} if env is None else env)
    try:
        return _build(raw, over.tree, over.plain_keys)
    except ConfigError as exc:
        source = over.origin.get(exc.key)
        if source is None:
            raise
        raise ConfigError(exc.key, f"{exc.problem} (from {source})") from None


def _build(
    raw: Mapping[str, Any], env_tree: dict[str, dict[str, str]], plain: list[str]
) -> Settings:
    top = Table(raw, "")
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        table = top.take(name, {})
        # Checked before the merge so an env override cannot hide a malformed section.
        Table(table, name)
        sections[name] = read_section(cls, {**table, **env_tree.get(name, {})}, name)
    raw_auth, raw_providers, raw_models = (top.take(name, {}) for name in TABLE_SECTIONS)
    top.done("section")

    provider_specs = providers(_merge(DEFAULT_PROVIDERS, Table(raw_providers, "providers").raw))
    catalog = models(_merge(DEFAULT_MODELS, Table(raw_models, "models").raw), provider_specs)
    settings = Settings(
        **sections,
        api_keys=api_keys(raw_auth, plain),
        providers=provider_specs,
        models=catalog,
    )
    _check(settings)
    return settings


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        both = isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
        out[k] = _merge(out[k], v) if both else v
    return out


def _check(s: Settings) -> None:
    """Rules that tie several keys together."""
    if s.retry.backoff_base_s > s.retry.backoff_max_s:
        raise ConfigError("retry.backoff_base_s", "must not exceed retry.backoff_max_s")
    catalog = ", ".join(s.models)
    for key, name, kind in (
        ("routing.default_model", s.routing.default_model, "chat"),
        ("routing.default_embedding_model", s.routing.default_embedding_model, "embedding"),
    ):
        if key == "routing.default_model" and not name:
            continue  # '' = rank by policy
        if name not in s.models:
            raise ConfigError(key, f"{show(name)} is not in the model catalog ({catalog})")
        if s.models[name].kind != kind:
            raise ConfigError(
                key, f"{show(name)} is a {s.models[name].kind} model, not a {kind} one"
            )
    for key, names in (
        ("routing.allowed_models", s.routing.allowed_models),
        ("routing.denied_models", s.routing.denied_models),
    ):
        # A misspelt deny entry would silently deny nothing.
        for name in names:
            if name not in s.models:
                raise ConfigError(key, f"{show(name)} is not in the model catalog ({catalog})")
    _check_routing(s)
    _check_tls(s.tls)
    _check_open_mode(s)
    groups = {name for name, _ in s.routing.groups}
    for i, api_key in enumerate(s.api_keys):
        for name in sorted(api_key.models):
            if name not in s.models and name not in groups:
                raise ConfigError(
                    f"auth.keys[{i}].models", f"{show(name)} is not in the model catalog"
                )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 possibly in brackets) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_open_mode(s: Settings) -> None:
    """No API keys means every caller gets every scope: only on loopback, unless forced."""
    if s.api_keys or s.server.allow_open_on_any_interface:
        return
    for key, host, on in (
        ("server.host", s.server.host, True),
        ("http.host", s.http.host, s.http.enabled),
    ):
        if on and not is_loopback(host):
            raise ConfigError(
                key,
                f"{show(host)} is not a loopback address and no API keys are configured (open "
                "mode: every caller would have every scope, admin included). Configure keys "
                "([[auth.keys]] or AUREA_API_KEYS), listen on 127.0.0.1, or set "
                "server.allow_open_on_any_interface = true to run open on purpose",
            )


def _check_routing(s: Settings) -> None:
    """Route groups name catalog models of one kind and no model; the default weights sum to 1;
    'auto' (the best-scored model) is no model's name."""
    r = s.routing
    if "auto" in s.models:
        raise ConfigError("models.auto", "'auto' is reserved: it asks for the best-scored model")
    total = r.cost_weight + r.quality_weight + r.latency_weight
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(
            "routing.cost_weight",
            f"routing.cost_weight, quality_weight and latency_weight must sum to 1, got {total:g}",
        )
    for name, members in r.groups:
        key = f"routing.groups.{name}"
        if not name or name == "auto" or name in s.models:
            raise ConfigError(key, "a group needs a name that is neither 'auto' nor a model's")
        kinds = set()
        for model in members:
            if model not in s.models:
                raise ConfigError(key, f"{show(model)} is not in the model catalog")
            kinds.add(s.models[model].kind)
        if len(kinds) > 1:
            raise ConfigError(key, "mixes chat and embedding models")


def _check_tls(tls: TlsSettings) -> None:
    if tls.cert_file and not tls.key_file:
        raise ConfigError("tls.key_file", "is required when tls.cert_file is set")
    if tls.key_file and not tls.cert_file:
        raise ConfigError("tls.cert_file", "is required when tls.key_file is set")
    if tls.client_ca_file and not tls.cert_file:
        raise ConfigError(
            "tls.client_ca_file", "needs tls.cert_file and tls.key_file (mTLS is TLS)"
        )
    if tls.require_client_cert and not tls.client_ca_file:
        raise ConfigError("tls.require_client_cert", "needs tls.client_ca_file to check clients")
    for key, path in (
        ("tls.cert_file", tls.cert_file),
        ("tls.key_file", tls.key_file),
        ("tls.client_ca_file", tls.client_ca_file),
    ):
        # Checked at load so a bad path stops the start, not the first TLS handshake.
        if path and b"-----BEGIN " not in read_file(path, key):
            raise ConfigError(key, f"file {path} is not PEM (no -----BEGIN line)")


def reference() -> list[Row]:
    """Every documented key with its default and range (the README's settings table)."""
    rows = [row for name, cls in SECTIONS.items() for row in describe(cls, name)]
    return rows + describe(ModelSpec, "models.NAME")
