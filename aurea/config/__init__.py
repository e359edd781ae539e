"""Validated settings: built-in defaults, then an optional TOML file, then ``AUREA_*`` env vars.

Environment variables name a key as ``AUREA_<SECTION>_<KEY>`` (``AUREA_SERVER_PORT=7000``,
``AUREA_LOG_LEVEL=debug``); ``AUREA_HOST``/``AUREA_PORT`` are shortcuts for the server section and
``AUREA_API_KEYS`` (``scope:key,scope:key``) adds plaintext keys, hashed at load. A bad value raises
``ConfigError`` naming the key and what is allowed.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from aurea.providers._base import ProviderSpec, Timeouts

SCOPES = ("user", "admin")
PROVIDER_KINDS = ("simulated", "openai", "anthropic", "gemini", "http", "lambda", "runpod", "local")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
POLICIES = ("cost", "quality", "latency", "balanced")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key and what is allowed."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config {key}: {problem}")
        self.key = key


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 50051
    grace_s: float = 10.0  # how long in-flight calls may run on after SIGTERM
    reuse_port: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    level: str = "info"
    format: str = "auto"
    redact_pii: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySettings:
    max_retries: int = 2  # extra attempts per candidate before falling back
    backoff_base_s: float = 0.1
    backoff_max_s: float = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeSettings:
    mailbox_capacity: int = 1024
    ask_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingSettings:
    policy: str = "balanced"
    default_model: str = "sim-small"
    default_embedding_model: str = "sim-embed"
    allowed_models: tuple[str, ...] = ()  # empty = all
    denied_models: tuple[str, ...] = ()  # deny wins over allow


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    name: str
    sha256: str  # hex digest of the key; the key itself is never kept
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """One catalog entry. Prices are integer nano-dollars per million tokens."""

    name: str
    provider: str
    upstream: str
    kind: str = "chat"  # chat | embedding
    input_nanos_per_mtok: int = 0
    cached_input_nanos_per_mtok: int = 0
    output_nanos_per_mtok: int = 0
    quality: float = 0.5  # prior in [0, 1]
    default_max_tokens: int = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    log: LogSettings = field(default_factory=LogSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    api_keys: tuple[ApiKey, ...] = ()
    providers: Mapping[str, ProviderSpec] = field(default_factory=dict)
    models: Mapping[str, ModelSpec] = field(default_factory=dict)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _usd_per_mtok(v: Any, key: str) -> int:
    try:
        nanos = Decimal(str(v)) * Decimal(1_000_000_000)
    except InvalidOperation:
        raise ConfigError(key, f"{v!r} is not a price in USD per million tokens") from None
    if nanos < 0:
        raise ConfigError(key, "must be >= 0")
    return int(nanos)


DEFAULT_PROVIDERS: dict[str, dict[str, Any]] = {
    "simulated": {"kind": "simulated", "options": {"token_delay_ms": 20}},
}
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "sim-small": {
        "provider": "simulated",
        "input_usd_per_mtok": "0.15",
        "output_usd_per_mtok": "0.60",
        "quality": 0.55,
    },
    "sim-large": {
        "provider": "simulated",
        "input_usd_per_mtok": "2.50",
        "output_usd_per_mtok": "10.00",
        "quality": 0.85,
    },
    "sim-embed": {"provider": "simulated", "kind": "embedding", "input_usd_per_mtok": "0.02"},
}


class _Reader:
    """Typed access to one TOML table, raising ConfigError with the dotted key."""

    def __init__(self, table: Mapping[str, Any], prefix: str) -> None:
        self.table, self.prefix = table, prefix
        known = {k for k in table if not isinstance(table[k], dict)}
        self.unused = set(known)

    def _key(self, k: str) -> str:
        return f"{self.prefix}.{k}" if self.prefix else k

    def _get(self, k: str, default: Any) -> Any:
        self.unused.discard(k)
        return self.table.get(k, default)

    def get_int(self, k: str, default: int, lo: int, hi: int) -> int:
        v = self._get(k, default)
        try:
            iv = (
                int(v) if not isinstance(v, bool) and str(v).strip().lstrip("-").isdigit() else None
            )
        except ValueError:
            iv = None
        if iv is None or not lo <= iv <= hi:
            raise ConfigError(self._key(k), f"{v!r} is not an integer in [{lo}, {hi}]")
        return iv

    def get_float(self, k: str, default: float, lo: float, hi: float) -> float:
        v = self._get(k, default)
        try:
            fv = float(v)
        except (TypeError, ValueError):
            raise ConfigError(self._key(k), f"{v!r} is not a number in [{lo}, {hi}]") from None
        if not lo <= fv <= hi:
            raise ConfigError(self._key(k), f"{v!r} is not a number in [{lo}, {hi}]")
        return fv

    def get_bool(self, k: str, default: bool) -> bool:
        v = self._get(k, default)
        if isinstance(v, bool):
            return v
        s = str(v).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ConfigError(self._key(k), f"{v!r} is not a boolean (true/false)")

    def get_str(self, k: str, default: str, choices: tuple[str, ...] = ()) -> str:
        v = self._get(k, default)
        s = str(v).strip()
        if choices and s.lower() not in choices:
            raise ConfigError(self._key(k), f"{v!r} is not one of {', '.join(choices)}")
        return s.lower() if choices else s

    def get_strs(self, k: str) -> tuple[str, ...]:
        v = self._get(k, ())
        if isinstance(v, str):
            return tuple(s.strip() for s in v.split(",") if s.strip())
        if not isinstance(v, list | tuple) or not all(isinstance(s, str) for s in v):
            raise ConfigError(self._key(k), f"{v!r} is not a list of strings")
        return tuple(v)

    def done(self) -> None:
        if self.unused:
            k = sorted(self.unused)[0]
            raise ConfigError(self._key(k), "unknown key")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_SECTIONS = ("server", "log", "retry", "runtime", "routing")


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    tree: dict[str, Any] = {}
    keys: list[str] = []
    shortcuts = {"AUREA_HOST": ("server", "host"), "AUREA_PORT": ("server", "port")}
    for name, value in env.items():
        if not name.startswith("AUREA_") or name in ("AUREA_CONFIG", "AUREA_HOME"):
            continue
        if name == "AUREA_API_KEYS":
            keys = [k for k in value.split(",") if k.strip()]
            continue
        if name in shortcuts:
            sec, key = shortcuts[name]
        else:
            rest = name[len("AUREA_") :].lower()
            sec, _, key = rest.partition("_")
            if sec not in _SECTIONS or not key:
                raise ConfigError(name, f"unknown setting; sections are {', '.join(_SECTIONS)}")
        tree.setdefault(sec, {})[key] = value
    return tree, keys


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults, the TOML file at ``path`` (if any) and ``env``."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    path = path or env.get("AUREA_CONFIG")
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError("--config", f"file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    return build_settings(raw, env)


def build_settings(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from a TOML-shaped mapping (as the file would give) and ``env``."""
    over, plain_keys = _env_overrides({} if env is None else env)
    raw = _merge(dict(raw), over)
    unknown = set(raw) - {*_SECTIONS, "auth", "providers", "models"}
    if unknown:
        raise ConfigError(sorted(unknown)[0], "unknown section")

    r = _Reader(raw.get("server", {}), "server")
    server = ServerSettings(
        host=r.get_str("host", "127.0.0.1"),
        port=r.get_int("port", 50051, 0, 65535),
        grace_s=r.get_float("grace_s", 10.0, 0.0, 3600.0),
        reuse_port=r.get_bool("reuse_port", False),
    )
    r.done()
    r = _Reader(raw.get("log", {}), "log")
    log = LogSettings(
        level=r.get_str("level", "info", LOG_LEVELS),
        format=r.get_str("format", "auto", LOG_FORMATS),
        redact_pii=r.get_bool("redact_pii", False),
    )
    r.done()
    r = _Reader(raw.get("retry", {}), "retry")
    retry = RetrySettings(
        max_retries=r.get_int("max_retries", 2, 0, 10),
        backoff_base_s=r.get_float("backoff_base_s", 0.1, 0.0, 60.0),
        backoff_max_s=r.get_float("backoff_max_s", 2.0, 0.0, 600.0),
    )
    r.done()
    r = _Reader(raw.get("runtime", {}), "runtime")
    runtime = RuntimeSettings(
        mailbox_capacity=r.get_int("mailbox_capacity", 1024, 1, 1_000_000),
        ask_timeout_s=r.get_float("ask_timeout_s", 5.0, 0.001, 600.0),
    )
    r.done()

    providers = _providers(_merge(DEFAULT_PROVIDERS, raw.get("providers", {})))
    models = _models(_merge(DEFAULT_MODELS, raw.get("models", {})), providers)

    r = _Reader(raw.get("routing", {}), "routing")
    routing = RoutingSettings(
        policy=r.get_str("policy", "balanced", POLICIES),
        default_model=r.get_str("default_model", "sim-small"),
        default_embedding_model=r.get_str("default_embedding_model", "sim-embed"),
        allowed_models=r.get_strs("allowed_models"),
        denied_models=r.get_strs("denied_models"),
    )
    r.done()
    for key, name in (
        *((("routing.default_model", routing.default_model),) if routing.default_model else ()),
        ("routing.default_embedding_model", routing.default_embedding_model),
    ):
        if name not in models:
            raise ConfigError(key, f"{name!r} is not in the model catalog ({', '.join(models)})")

    return Settings(
        server=server,
        log=log,
        retry=retry,
        runtime=runtime,
        routing=routing,
        api_keys=_api_keys(raw.get("auth", {}), plain_keys),
        providers=providers,
        models=models,
    )


def _api_keys(auth: Mapping[str, Any], plain: list[str]) -> tuple[ApiKey, ...]:
    keys: list[ApiKey] = []
    for i, entry in enumerate(auth.get("keys", [])):
        where = f"auth.keys[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(where, "must be a table with name, sha256, scopes")
        digest = str(entry.get("sha256", "")).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ConfigError(f"{where}.sha256", "must be the 64-hex-digit SHA-256 of the key")
        scopes = frozenset(entry.get("scopes", ["user"]))
        if not scopes or not scopes <= set(SCOPES):
            raise ConfigError(f"{where}.scopes", f"must be a non-empty subset of {SCOPES}")
        keys.append(ApiKey(name=str(entry.get("name", f"key{i}")), sha256=digest, scopes=scopes))
    for i, item in enumerate(plain):
        scope, sep, key = item.strip().partition(":")
        if not sep or scope not in SCOPES or len(key) < 8:
            raise ConfigError(
                "AUREA_API_KEYS",
                "expected scope:key,... with scope user or admin and keys of at least 8 characters",
            )
        scopes = frozenset(SCOPES) if scope == "admin" else frozenset({"user"})
        keys.append(ApiKey(name=f"env{i}", sha256=hash_key(key), scopes=scopes))
    return tuple(keys)


def _providers(table: Mapping[str, Any]) -> dict[str, ProviderSpec]:
    out: dict[str, ProviderSpec] = {}
    for name, block in table.items():
        if not isinstance(block, dict):
            raise ConfigError(f"providers.{name}", "must be a table")
        r = _Reader(block, f"providers.{name}")
        options = block.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"providers.{name}.options", "must be a table")
        base_url = r.get_str("base_url", "")
        if base_url and not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"providers.{name}.base_url", f"{base_url!r} is not an http(s) URL")
        out[name] = ProviderSpec(
            name=name,
            kind=r.get_str("kind", "", PROVIDER_KINDS),
            base_url=base_url.rstrip("/"),
            api_key_env=r.get_str("api_key_env", ""),
            timeouts=Timeouts(
                connect_s=r.get_float("connect_timeout_s", 10.0, 0.001, 600.0),
                first_byte_s=r.get_float("first_byte_timeout_s", 60.0, 0.001, 3600.0),
                idle_s=r.get_float("idle_timeout_s", 30.0, 0.001, 3600.0),
                total_s=r.get_float("total_timeout_s", 600.0, 0.001, 86400.0),
            ),
            max_concurrency=r.get_int("max_concurrency", 64, 1, 100_000),
            options=options,
        )
        r.done()
    return out


def _models(
    table: Mapping[str, Any], providers: Mapping[str, ProviderSpec]
) -> dict[str, ModelSpec]:
    out: dict[str, ModelSpec] = {}
    for name, block in table.items():
        key = f"models.{name}"
        if not isinstance(block, dict):
            raise ConfigError(key, "must be a table")
        r = _Reader(block, key)
        provider = r.get_str("provider", "")
        if provider not in providers:
            raise ConfigError(
                f"{key}.provider",
                f"{provider!r} is not a configured provider ({', '.join(providers)})",
            )

        def price(k: str, r: _Reader = r, key: str = key) -> int:
            return _usd_per_mtok(r._get(k, 0), f"{key}.{k}")

        out[name] = ModelSpec(
            name=name,
            provider=provider,
            upstream=r.get_str("upstream", name),
            kind=r.get_str("kind", "chat", ("chat", "embedding")),
            input_nanos_per_mtok=price("input_usd_per_mtok"),
            cached_input_nanos_per_mtok=price("cached_input_usd_per_mtok")
            if "cached_input_usd_per_mtok" in block
            else price("input_usd_per_mtok"),
            output_nanos_per_mtok=price("output_usd_per_mtok"),
            quality=r.get_float("quality", 0.5, 0.0, 1.0),
            default_max_tokens=r.get_int("default_max_tokens", 256, 1, 1_000_000),
        )
        r.done()
    return out
