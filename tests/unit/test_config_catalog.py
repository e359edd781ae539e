"""The named tables: API keys, provider blocks and the model catalog, checked key by key."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aurea.config import (
    MAX_CONTEXT_TOKENS,
    MAX_USD_PER_MTOK,
    ConfigError,
    ModelSpec,
    build_settings,
    hash_key,
)
from aurea.pricing import cost_nanos
from aurea.providers._base import Usage

DIGEST = hash_key("user-key-123")
INT64_MAX = 2**63 - 1


def _fails(raw: dict[str, Any], key: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_settings(raw, {})
    assert info.value.key == key, info.value
    assert key in str(info.value)
    return info.value


# --- [[auth.keys]] ---------------------------------------------------------------------------


def test_a_misspelt_key_field_is_named_with_the_allowed_ones() -> None:
    err = _fails({"auth": {"keys": [{"sha256": DIGEST, "scope": ["admin"]}]}}, "auth.keys[0].scope")
    # issue 16 added the key's policy fields; the list still names every allowed field
    assert all(f in str(err) for f in ("name", "scopes", "sha256", "models", "budget_usd"))


@pytest.mark.parametrize(
    ("auth", "key"),
    [
        ({"keys": 5}, "auth.keys"),
        ({"keys": "user:abc"}, "auth.keys"),
        ({"keys": [5]}, "auth.keys[0]"),
        ({"key": []}, "auth.key"),
        ({"keys": [{"sha256": DIGEST, "scopes": "admin"}]}, "auth.keys[0].scopes"),
        ({"keys": [{"sha256": DIGEST, "scopes": ["root"]}]}, "auth.keys[0].scopes"),
        ({"keys": [{"sha256": DIGEST, "scopes": []}]}, "auth.keys[0].scopes"),
        ({"keys": [{"sha256": DIGEST, "name": 7}]}, "auth.keys[0].name"),
        ({"keys": [{"sha256": 12}]}, "auth.keys[0].sha256"),
        ({"keys": [{"name": "ops"}]}, "auth.keys[0].sha256"),
    ],
)
def test_auth_shape_errors_are_config_errors(auth: dict[str, Any], key: str) -> None:
    _fails({"auth": auth}, key)


def test_auth_must_be_a_table() -> None:
    _fails({"auth": 5}, "auth")


def test_good_keys_load() -> None:
    keys = build_settings(
        {"auth": {"keys": [{"name": "ops", "sha256": DIGEST.upper(), "scopes": ["admin", "user"]}]}}
    ).api_keys
    assert keys[0].name == "ops" and keys[0].sha256 == DIGEST
    assert keys[0].scopes == frozenset({"admin", "user"})


# --- [providers.NAME] ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"kind": "openai", "timeout_s": 5}, "providers.p.timeout_s"),
        ({"kind": "openai", "api_key": "sk-live"}, "providers.p.api_key"),
        ({"kind": "openai", "option": {"x": 1}}, "providers.p.option"),
        ({"kind": "openai", "options": 5}, "providers.p.options"),
        ({"base_url": "https://api.example"}, "providers.p.kind"),
        ({"kind": "openai", "connect_timeout_s": 0}, "providers.p.connect_timeout_s"),
        ({"kind": "openai", "idle_timeout_s": math.nan}, "providers.p.idle_timeout_s"),
        ({"kind": "openai", "total_timeout_s": math.inf}, "providers.p.total_timeout_s"),
        ({"kind": "openai", "first_byte_timeout_s": -1}, "providers.p.first_byte_timeout_s"),
        ({"kind": "openai", "max_concurrency": 0}, "providers.p.max_concurrency"),
        ({"kind": "openai", "base_url": "ftp://api.example"}, "providers.p.base_url"),
    ],
)
def test_provider_block_errors_name_the_key(block: dict[str, Any], key: str) -> None:
    _fails({"providers": {"p": block}}, key)


def test_provider_options_are_passed_through_for_the_adapter_to_check() -> None:
    spec = build_settings(
        {"providers": {"p": {"kind": "openai", "options": {"anything": {"nested": 1}}}}}
    ).providers["p"]
    assert spec.options == {"anything": {"nested": 1}}


def test_a_pasted_key_in_api_key_env_is_refused_without_echoing_it() -> None:
    err = _fails(
        {"providers": {"p": {"kind": "openai", "api_key_env": "sk-proj-AbC123"}}},
        "providers.p.api_key_env",
    )
    assert "sk-proj-AbC123" not in str(err) and "NAME" in str(err)


def test_a_bad_base_url_is_not_echoed() -> None:
    err = _fails(
        {"providers": {"p": {"kind": "openai", "base_url": "user:s3cret@api.example"}}},
        "providers.p.base_url",
    )
    assert "s3cret" not in str(err)


def test_provider_timeouts_default_to_the_provider_types_defaults() -> None:
    from aurea.providers._base import ProviderSpec, Timeouts

    spec = build_settings({"providers": {"p": {"kind": "openai"}}}).providers["p"]
    assert spec.timeouts == Timeouts()
    assert spec.max_concurrency == ProviderSpec(name="", kind="").max_concurrency


# --- [models.NAME] ---------------------------------------------------------------------------

PRICE = "models.m.input_usd_per_mtok"


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, "nan", "Infinity", "-1", -0.01, 1e30, "10000.01", True, [1], "1,5"]
)
def test_prices_must_be_finite_and_between_zero_and_ten_thousand(bad: object) -> None:
    err = _fails({"models": {"m": {"provider": "simulated", "input_usd_per_mtok": bad}}}, PRICE)
    assert "10000" in str(err) and "finite" in str(err)


def test_the_highest_price_times_the_largest_call_stays_inside_int64() -> None:
    m = build_settings(
        {
            "models": {
                "m": {
                    "provider": "simulated",
                    "input_usd_per_mtok": str(MAX_USD_PER_MTOK),
                    "cached_input_usd_per_mtok": str(MAX_USD_PER_MTOK),
                    "output_usd_per_mtok": str(MAX_USD_PER_MTOK),
                }
            }
        }
    ).models["m"]
    assert m.input_nanos_per_mtok == 10_000 * 10**9
    # A thousand times the largest context window allowed, on every kind of token.
    tokens = 1_000 * MAX_CONTEXT_TOKENS
    worst = Usage(input_tokens=tokens, cached_input_tokens=tokens // 2, output_tokens=tokens)
    assert cost_nanos(m, worst) < INT64_MAX


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("quality", 1.5),
        ("quality", -0.1),
        ("quality", math.nan),
        ("default_max_tokens", 0),
        ("default_max_tokens", MAX_CONTEXT_TOKENS + 1),
        ("context_window", -1),
        ("context_window", 10**12),
        ("rpm", -1),
        ("tpm", -1),
        ("rpm", 1.5),
        ("kind", "image"),
        ("upstream", 5),
        ("provider", "ghost"),
        ("typo_usd_per_mtok", 1),
        ("options", {"x": 1}),
    ],
)
def test_model_errors_name_the_key(field: str, bad: object) -> None:
    block = {"provider": "simulated", field: bad}
    _fails({"models": {"m": block}}, f"models.m.{field}")


def test_max_tokens_must_fit_the_context_window() -> None:
    block = {"provider": "simulated", "context_window": 100, "default_max_tokens": 200}
    _fails({"models": {"m": block}}, "models.m.default_max_tokens")


def test_a_model_without_a_provider_is_named() -> None:
    _fails({"models": {"m": {"quality": 0.5}}}, "models.m.provider")


@pytest.mark.parametrize(
    ("raw", "key"), [({"models": 5}, "models"), ({"models": {"m": 5}}, "models.m")]
)
def test_catalog_shape_errors(raw: dict[str, Any], key: str) -> None:
    _fails(raw, key)


def test_model_limits_and_window_load() -> None:
    block = {"provider": "simulated", "rpm": 60, "tpm": 90_000, "context_window": 8192}
    m = build_settings({"models": {"m": block}}).models["m"]
    assert isinstance(m, ModelSpec)
    assert (m.rpm, m.tpm, m.context_window) == (60, 90_000, 8192)


def test_cached_price_defaults_to_the_input_price() -> None:
    block = {"provider": "simulated", "input_usd_per_mtok": 0.5}
    m = build_settings({"models": {"m": block}}).models["m"]
    assert m.cached_input_nanos_per_mtok == m.input_nanos_per_mtok == 500_000_000
