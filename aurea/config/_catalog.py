"""The named config tables: API keys (``[[auth.keys]]``), providers (``[providers.NAME]``) and the
model catalog (``[models.NAME]``), each checked key by key. Provider ``options`` are passed through
untouched: each adapter validates its own."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aurea.config._rules import (
    MAX_CONTEXT_TOKENS,
    PRICE_RANGE,
    ConfigError,
    Rule,
    Table,
    as_int,
    as_str,
    as_strs,
    budget_nanos,
    http_url,
    price_nanos,
    read_fields,
    setting,
    show,
)
from aurea.providers._base import Capability, ProviderSpec, Timeouts

SCOPES = ("user", "admin")
PROVIDER_KINDS = ("simulated", "openai", "anthropic", "gemini", "http", "lambda", "runpod", "local")
MODEL_KINDS = ("chat", "embedding")
# What a chat model of each provider kind can do when its catalog entry lists no capabilities
# (reasoning always needs saying: not every model of a kind takes a reasoning effort).
_C = Capability
DEFAULT_CAPABILITIES: dict[str, frozenset[Capability]] = {
    "simulated": frozenset({_C.TOOLS, _C.JSON_SCHEMA, _C.STRICT_SCHEMA, _C.IMAGES}),
    "openai": frozenset({_C.TOOLS, _C.JSON_SCHEMA, _C.STRICT_SCHEMA, _C.IMAGES}),
    "anthropic": frozenset({_C.TOOLS, _C.JSON_SCHEMA, _C.IMAGES}),
    "gemini": frozenset({_C.TOOLS, _C.JSON_SCHEMA, _C.IMAGES}),
    # llama.cpp turns a JSON schema into a grammar: the answer cannot leave it.
    "local": frozenset({_C.JSON_SCHEMA, _C.STRICT_SCHEMA}),
}


def capability_set(v: Any, key: str) -> frozenset[Capability]:
    names = as_strs(v, key)
    known = {c.value for c in Capability}
    for name in names:
        if name not in known:
            raise ConfigError(key, f"{show(name)} is not one of {', '.join(sorted(known))}")
    return frozenset(Capability(n) for n in names)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """One API key and its policy (``[[auth.keys]]``); see ``aurea.edge`` for how each part is
    enforced. 0 or empty means "no limit of the key's own"."""

    name: str
    sha256: str  # hex digest of the key; the key itself is never kept
    scopes: frozenset[str]
    tenant: str = ""  # "" = the key's name; the cache namespace and reports use it
    models: frozenset[str] = frozenset()  # catalog models (or route groups) the key may use
    rpm: int = 0  # requests per minute over all models
    tpm: int = 0  # tokens per minute over all models
    budget_nanos: int | None = None  # the budget of its default job; None = [ledger] default
    max_streams: int = 0  # streams open at once; 0 = [server] max_streams_per_key
    disabled: bool = False

    @property
    def tenant_name(self) -> str:
        return self.tenant or self.name


KEY_NAME_MAX = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """One catalog entry (``[models.NAME]``). Prices are integer nano-dollars per million tokens;
    the file gives them in USD per million tokens (``input_usd_per_mtok = "0.15"``)."""

    name: str
    provider: str  # a configured provider's name
    upstream: str  # the provider's id for the model; defaults to the catalog name
    kind: str = setting("chat", "what the model serves", choices=MODEL_KINDS)
    input_nanos_per_mtok: int = setting(
        0,
        "USD per million input tokens",
        key="input_usd_per_mtok",
        parse=price_nanos,
        allowed=PRICE_RANGE,
    )
    cached_input_nanos_per_mtok: int = setting(
        0,
        "USD per million cached input tokens; defaults to the input price",
        key="cached_input_usd_per_mtok",
        parse=price_nanos,
        allowed=PRICE_RANGE,
    )
    output_nanos_per_mtok: int = setting(
        0,
        "USD per million output tokens",
        key="output_usd_per_mtok",
        parse=price_nanos,
        allowed=PRICE_RANGE,
    )
    reasoning_nanos_per_mtok: int = setting(
        0,
        "USD per million reasoning (hidden output) tokens; defaults to the output price",
        key="reasoning_usd_per_mtok",
        parse=price_nanos,
        allowed=PRICE_RANGE,
    )
    quality: float = setting(0.5, "the router's prior for answer quality", lo=0, hi=1)
    default_max_tokens: int = setting(
        256, "output tokens when the request sets none", lo=1, hi=MAX_CONTEXT_TOKENS
    )
    context_window: int = setting(
        0, "tokens the model accepts, prompt + output; 0 = unknown", lo=0, hi=MAX_CONTEXT_TOKENS
    )
    connect_timeout_s: float = setting(
        0.0, "seconds to connect; 0 = the provider's connect_timeout_s", lo=0, hi=600
    )
    ttft_timeout_s: float = setting(
        0.0,
        "seconds from an attempt's start to its first token; past it the call moves to the "
        "next candidate; 0 = the provider's first_byte_timeout_s",
        lo=0,
        hi=3600,
    )
    stall_timeout_s: float = setting(
        0.0,
        "most seconds of silence between two chunks of a stream; 0 = the provider's idle_timeout_s",
        lo=0,
        hi=3600,
    )
    total_timeout_s: float = setting(
        0.0, "seconds for one attempt; 0 = the provider's total_timeout_s", lo=0, hi=86_400
    )
    accepts_prefill: bool = setting(
        False,
        "continues a partial answer sent as a trailing assistant message, so a stream cut "
        "mid-answer elsewhere can continue here seamlessly",
    )
    rpm: int = setting(0, "requests per minute; 0 = [limits] default_rpm", lo=0, hi=1e9)
    tpm: int = setting(0, "tokens per minute; 0 = [limits] default_tpm", lo=0, hi=1e12)
    max_concurrency: int = setting(
        0, "calls in flight at once on this model, per server process; 0 = no limit", lo=0, hi=1e6
    )
    capabilities: frozenset[Capability] = setting(
        frozenset(),
        "what the model can do beyond plain text: tools, json_schema, strict_schema, images, "
        "reasoning; calls that need one are routed only to models listing it. Unset: by its "
        "provider's kind (openai and simulated: all but reasoning; anthropic and gemini: tools, "
        "json_schema, images; local: json_schema, strict_schema; others: none)",
        parse=capability_set,
        allowed="list of capability names",
    )


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


def api_keys(raw_auth: Any, plain: list[str]) -> tuple[ApiKey, ...]:
    """Keys from ``[[auth.keys]]`` (hashed already) and from ``AUREA_API_KEYS`` (hashed here)."""
    auth = Table({} if raw_auth is None else raw_auth, "auth")
    entries = auth.take("keys", [])
    auth.done()
    if not isinstance(entries, list):
        raise ConfigError(
            "auth.keys", "must be an array of tables ([[auth.keys]] with name, sha256, scopes)"
        )
    keys = [_api_key(i, entry) for i, entry in enumerate(entries)]
    for i, item in enumerate(plain):
        scope, sep, key = item.strip().partition(":")
        if not sep or scope not in SCOPES or len(key) < 8:
            raise ConfigError(
                "AUREA_API_KEYS",
                "expected scope:key,... with scope user or admin and keys of at least 8 characters",
            )
        scopes = frozenset(SCOPES) if scope == "admin" else frozenset({"user"})
        keys.append(ApiKey(name=f"env{i}", sha256=hash_key(key), scopes=scopes))
    seen_names: set[str] = set()
    seen_hashes: set[str] = set()
    for i, k in enumerate(keys):
        if k.name in seen_names:
            raise ConfigError(f"auth.keys[{i}].name", f"{show(k.name)} names two keys")
        if k.sha256 in seen_hashes:
            raise ConfigError(f"auth.keys[{i}].sha256", "the same key is configured twice")
        seen_names.add(k.name)
        seen_hashes.add(k.sha256)
    return tuple(keys)


def _api_key(i: int, entry: Any) -> ApiKey:
    t = Table(entry, f"auth.keys[{i}]")
    name = as_str(t.take("name", f"key{i}"), t.key("name"))
    digest = t.require("sha256", "the SHA-256 of the key, in hex")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        raise ConfigError(t.key("sha256"), "must be the 64-hex-digit SHA-256 of the key")
    scopes = t.take("scopes", ["user"])
    if (
        not isinstance(scopes, list)
        or not scopes
        or not all(isinstance(s, str) and s in SCOPES for s in scopes)
    ):
        raise ConfigError(t.key("scopes"), f"must be a non-empty list of {', '.join(SCOPES)}")
    if not 0 < len(name) <= KEY_NAME_MAX or not name.isprintable():
        raise ConfigError(t.key("name"), f"must be 1 to {KEY_NAME_MAX} printable characters")
    tenant = as_str(t.take("tenant", ""), t.key("tenant"))
    if len(tenant) > KEY_NAME_MAX or not tenant.isprintable():
        raise ConfigError(t.key("tenant"), f"must be at most {KEY_NAME_MAX} printable characters")
    models = as_strs(t.take("models", []), t.key("models"))
    rpm = as_int(t.take("rpm", 0), t.key("rpm"), Rule(doc="", lo=0, hi=1e9))
    tpm = as_int(t.take("tpm", 0), t.key("tpm"), Rule(doc="", lo=0, hi=1e12))
    streams = as_int(t.take("max_streams", 0), t.key("max_streams"), Rule(doc="", lo=0, hi=1e9))
    budget = t.take("budget_usd")
    disabled = t.take("disabled", False)
    if not isinstance(disabled, bool):
        raise ConfigError(t.key("disabled"), "must be true or false")
    t.done()
    return ApiKey(
        name=name,
        sha256=digest.lower(),
        scopes=frozenset(scopes),
        tenant=tenant,
        models=frozenset(models),
        rpm=rpm,
        tpm=tpm,
        budget_nanos=None if budget is None else budget_nanos(budget, t.key("budget_usd")),
        max_streams=streams,
        disabled=disabled,
    )


_TIMEOUT = Timeouts()  # the defaults live with the type, in aurea.providers._base
_CONCURRENCY = ProviderSpec(name="", kind="").max_concurrency


def _timeout(doc: str, hi: float) -> Rule:
    return Rule(doc=doc, lo=0, lo_open=True, hi=hi)


_PROVIDER_TIMEOUTS = {  # TOML key -> (Timeouts field, rule)
    "connect_timeout_s": ("connect_s", _timeout("seconds to connect", 600)),
    "first_byte_timeout_s": ("first_byte_s", _timeout("seconds to the first byte", 3600)),
    "idle_timeout_s": ("idle_s", _timeout("seconds between two chunks", 3600)),
    "total_timeout_s": ("total_s", _timeout("seconds for one attempt", 86_400)),
}
_CONCURRENCY_RULE = Rule(doc="calls in flight at once", lo=1, hi=100_000)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def providers(raw: Any) -> dict[str, ProviderSpec]:
    return {name: _provider(name, block) for name, block in Table(raw, "providers").raw.items()}


def _provider(name: str, block: Any) -> ProviderSpec:
    t = Table(block, f"providers.{name}")
    kind = t.require("kind", f"one of {', '.join(PROVIDER_KINDS)}")
    kind = as_str(kind, t.key("kind"), PROVIDER_KINDS)
    base_url = http_url(t.take("base_url", ""), t.key("base_url"))
    api_key_env = as_str(t.take("api_key_env", ""), t.key("api_key_env"))
    if api_key_env and not _ENV_NAME.fullmatch(api_key_env):
        # Most likely the key itself was pasted here: say so without echoing it.
        raise ConfigError(
            t.key("api_key_env"),
            "must be the NAME of the environment variable that holds the key (letters, digits, _)",
        )
    timeouts = {
        attr: t.read(k, getattr(_TIMEOUT, attr), rule)
        for k, (attr, rule) in _PROVIDER_TIMEOUTS.items()
    }
    concurrency = t.read("max_concurrency", _CONCURRENCY, _CONCURRENCY_RULE)
    options = t.take("options", {})
    if not isinstance(options, Mapping):
        raise ConfigError(t.key("options"), f"must be a table, not {show(options)}")
    t.done()
    return ProviderSpec(
        name=name,
        kind=kind,
        base_url=base_url.rstrip("/"),
        api_key_env=api_key_env,
        timeouts=Timeouts(**timeouts),
        max_concurrency=concurrency,
        options=options,
    )


def models(raw: Any, known_providers: Mapping[str, ProviderSpec]) -> dict[str, ModelSpec]:
    table = Table(raw, "models")
    return {name: _model(name, block, known_providers) for name, block in table.raw.items()}


def _model(name: str, block: Any, known_providers: Mapping[str, ProviderSpec]) -> ModelSpec:
    t = Table(block, f"models.{name}")
    provider = as_str(t.require("provider", "a configured provider"), t.key("provider"))
    if provider not in known_providers:
        raise ConfigError(
            t.key("provider"),
            f"{show(provider)} is not a configured provider ({', '.join(known_providers)})",
        )
    upstream = as_str(t.take("upstream", name), t.key("upstream")) or name
    values = read_fields(ModelSpec, t)
    if not t.has("cached_input_usd_per_mtok"):
        values["cached_input_nanos_per_mtok"] = values["input_nanos_per_mtok"]
    if not t.has("reasoning_usd_per_mtok"):
        values["reasoning_nanos_per_mtok"] = values["output_nanos_per_mtok"]
    if not t.has("capabilities"):
        kind = known_providers[provider].kind
        values["capabilities"] = DEFAULT_CAPABILITIES.get(kind, frozenset())
    t.done()
    window = values["context_window"]
    if window and values["default_max_tokens"] > window:
        raise ConfigError(t.key("default_max_tokens"), f"must not exceed context_window ({window})")
    return ModelSpec(name=name, provider=provider, upstream=upstream, **values)
