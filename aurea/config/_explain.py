"""The effective configuration, key by key, with where each value came from (a default, the
file, an environment variable) and every secret masked: what ``aurea config show`` prints.

Masked: values declared ``repr=False`` (the Redis URL may hold a password), URLs' userinfo and
secret-looking query values, API keys (only their names and scopes are shown; Aurea keeps no
plaintext key anyway) and the values of the variables named by ``api_key_env`` (only whether
each is set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from aurea.config._rules import NANOS_PER_USD, budget_nanos, price_nanos, rule_of, toml_key
from aurea.config._sections import SECTIONS
from aurea.config._sources import env_overrides, read_toml
from aurea.providers._urls import safe_url

MASK = "***"


@dataclass(frozen=True, slots=True)
class Entry:
    key: str  # dotted: "server.port", "providers.openai.base_url"
    value: Any  # JSON-friendly, secrets masked
    source: str  # "default", "file aurea.toml", "env AUREA_SERVER_PORT", "built-in"


def _plain(v: Any) -> Any:
    if isinstance(v, tuple | frozenset):
        return sorted(v) if isinstance(v, frozenset) else list(v)
    return v


def _usd(nanos: int) -> str:
    return str(Decimal(nanos) / NANOS_PER_USD)


def explain(settings: Any, path: str | Path | None, env: Mapping[str, str]) -> list[Entry]:
    """Every key of ``settings`` (built from ``path`` and ``env``) with its source."""
    raw = read_toml(path) if path else {}
    origin = env_overrides(env).origin
    where_file = f"file {path}"
    out: list[Entry] = []
    for name in SECTIONS:
        section = getattr(settings, name)
        file_table = raw.get(name, {}) if isinstance(raw.get(name), Mapping) else {}
        for f in fields(section):
            rule = rule_of(f)
            if rule is None:
                continue
            key = toml_key(f, rule)
            dotted = f"{name}.{key}"
            value: Any = getattr(section, f.name)
            if rule.parse is budget_nanos or rule.parse is price_nanos:
                value = _usd(value)
            elif not f.repr:
                value = MASK if value else value
            elif isinstance(value, str) and "://" in value:
                value = safe_url(value)
            source = "default"
            if dotted in origin:
                source = f"env {origin[dotted]}"
            elif key in file_table:
                source = where_file
            out.append(Entry(dotted, _plain(value), source))
    out += _keys(settings, raw, where_file, env)
    out += _providers(settings, raw, where_file, env)
    out += _models(settings, raw, where_file)
    return out


def _keys(settings: Any, raw: Mapping[str, Any], where: str, env: Mapping[str, str]) -> list[Entry]:
    from_file = {k.get("name") for k in raw.get("auth", {}).get("keys", []) if isinstance(k, dict)}
    out = []
    for k in settings.api_keys:
        source = where if k.name in from_file else "env AUREA_API_KEYS"
        policy: dict[str, Any] = {"scopes": sorted(k.scopes), "key": MASK}
        # The policy beyond scopes, where set (the key's own limits, models, budget).
        for name, value in (
            ("tenant", k.tenant),
            ("models", sorted(k.models)),
            ("rpm", k.rpm),
            ("tpm", k.tpm),
            ("budget_nanos", k.budget_nanos),
            ("max_streams", k.max_streams),
            ("disabled", k.disabled),
        ):
            if value:
                policy[name] = value
        out.append(Entry(f"auth.keys.{k.name}", policy, source))
    return out


def _providers(
    settings: Any, raw: Mapping[str, Any], where: str, env: Mapping[str, str]
) -> list[Entry]:
    in_file = raw.get("providers", {})
    out = []
    for name, spec in settings.providers.items():
        value: dict[str, Any] = {"kind": spec.kind, "max_concurrency": spec.max_concurrency}
        if spec.base_url:
            value["base_url"] = safe_url(spec.base_url)
        if spec.api_key_env:
            state = "set" if env.get(spec.api_key_env) else "unset"
            value["api_key_env"] = f"{spec.api_key_env} ({state})"
        if spec.options:
            value["options"] = {
                k: safe_url(v) if isinstance(v, str) and "://" in v else v
                for k, v in spec.options.items()
            }
        source = where if name in in_file else "built-in"
        out.append(Entry(f"providers.{name}", value, source))
    return out


def _models(settings: Any, raw: Mapping[str, Any], where: str) -> list[Entry]:
    in_file = raw.get("models", {})
    out = []
    for name, m in settings.models.items():
        value = {
            "provider": m.provider,
            "upstream": m.upstream,
            "kind": m.kind,
            "input_usd_per_mtok": _usd(m.input_nanos_per_mtok),
            "output_usd_per_mtok": _usd(m.output_nanos_per_mtok),
        }
        source = where if name in in_file else "built-in"
        out.append(Entry(f"models.{name}", value, source))
    return out
