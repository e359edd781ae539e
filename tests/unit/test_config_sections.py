"""The plain sections: documented defaults declared once, ranges enforced, unknown keys refused."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from aurea.config import (
    ConfigError,
    ModelSpec,
    Settings,
    build_settings,
    reference,
)
from aurea.config._catalog import DEFAULT_CAPABILITIES
from aurea.config._sections import SECTIONS


def _fails(raw: dict[str, Any], key: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build_settings(raw, {})
    assert info.value.key == key, info.value
    assert key in str(info.value)
    return info.value


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_an_empty_file_gives_each_sections_dataclass_defaults(name: str) -> None:
    # The dataclass is the only place a default is written: the parser must agree with it.
    assert getattr(build_settings({}, {}), name) == SECTIONS[name]()
    assert getattr(Settings(), name) == SECTIONS[name]()


@pytest.mark.parametrize(
    ("path", "default"),
    [
        ("server.max_concurrent_rpcs", 10_000),
        ("server.max_health_watches", 1000),
        ("server.default_call_timeout_s", 300.0),
        ("limits.default_rpm", 0),
        ("limits.default_tpm", 0),
        ("breaker.failure_threshold", 5),
        ("breaker.open_timeout_s", 30.0),
        ("ledger.default_job_budget_nanos", 10_000_000_000),
        ("ledger.store", "sqlite"),
        ("ledger.sqlite_path", ""),
        ("ledger.lease_ttl_s", 60.0),
        ("cache.enabled", True),
        ("cache.ttl_s", 3600.0),
        ("cache.embedding_ttl_s", 86_400.0),
        ("cache.max_entries", 10_000),
        ("cache.max_bytes", 64 * 1024 * 1024),
        ("redis.url", ""),
        ("redis.key_prefix", "aurea"),
        ("telemetry.metrics_enabled", True),
        ("telemetry.http_host", "127.0.0.1"),
        ("telemetry.http_port", 9464),
        ("telemetry.otlp_endpoint", ""),
        ("telemetry.trace_sample_ratio", 1.0),
        ("tls.cert_file", ""),
        ("tls.key_file", ""),
        ("tls.client_ca_file", ""),
        ("tls.require_client_cert", False),
    ],
)
def test_reserved_settings_have_their_documented_names_and_defaults(
    path: str, default: object
) -> None:
    section, attr = path.split(".")
    assert getattr(getattr(build_settings({}, {}), section), attr) == default


def test_every_key_is_documented_with_a_range() -> None:
    rows = reference()
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys))
    declared = sum(len(dataclasses.fields(cls)) for cls in SECTIONS.values())
    assert len([k for k in keys if not k.startswith("models.")]) == declared
    assert {"models.NAME.rpm", "models.NAME.tpm", "models.NAME.input_usd_per_mtok"} <= set(keys)
    assert all(r.doc and r.allowed and r.default for r in rows), [r for r in rows if not r.doc]
    budget = next(r for r in rows if r.key == "ledger.default_job_budget_usd")
    assert budget.default == '"10"'
    assert next(r for r in rows if r.key == "server.port").allowed == "[0, 65535]"


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_each_section_refuses_unknown_keys_and_lists_the_allowed_ones(name: str) -> None:
    err = _fails({name: {"bogus": 1}}, f"{name}.bogus")
    assert "allowed:" in str(err)


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_each_section_must_be_a_table(name: str) -> None:
    _fails({name: 5}, name)


def test_a_subtable_inside_a_section_is_an_unknown_key() -> None:
    _fails({"server": {"tls": {"cert_file": "x"}}}, "server.tls")


def test_an_unknown_section_is_named() -> None:
    err = _fails({"breakers": {}}, "breakers")
    assert "unknown section" in str(err) and "breaker" in str(err)


_FLOATS = [
    (name, f.name)
    for name, cls in SECTIONS.items()
    for f in dataclasses.fields(cls)
    if isinstance(f.default, float)
]


@pytest.mark.parametrize(("section", "key"), _FLOATS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "nan", "inf", "1e400", True])
def test_every_float_setting_refuses_nan_and_infinity(section: str, key: str, bad: object) -> None:
    err = _fails({section: {key: bad}}, f"{section}.{key}")
    assert "finite" in str(err)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"server": {"max_concurrent_rpcs": 0}}, "server.max_concurrent_rpcs"),
        ({"server": {"max_health_watches": -1}}, "server.max_health_watches"),
        ({"server": {"default_call_timeout_s": 0}}, "server.default_call_timeout_s"),
        ({"server": {"port": 1.5}}, "server.port"),
        ({"server": {"host": 5}}, "server.host"),
        ({"limits": {"default_rpm": -1}}, "limits.default_rpm"),
        ({"limits": {"default_tpm": "lots"}}, "limits.default_tpm"),
        ({"breaker": {"failure_threshold": 0}}, "breaker.failure_threshold"),
        ({"breaker": {"open_timeout_s": 0}}, "breaker.open_timeout_s"),
        ({"breaker": {"open_timeout_s": -5}}, "breaker.open_timeout_s"),
        ({"ledger": {"default_job_budget_usd": "-1"}}, "ledger.default_job_budget_usd"),
        ({"ledger": {"default_job_budget_usd": "nan"}}, "ledger.default_job_budget_usd"),
        ({"ledger": {"default_job_budget_usd": 1e30}}, "ledger.default_job_budget_usd"),
        ({"ledger": {"default_job_budget_usd": "ten"}}, "ledger.default_job_budget_usd"),
        ({"ledger": {"store": "redis"}}, "ledger.store"),
        ({"ledger": {"lease_ttl_s": 0}}, "ledger.lease_ttl_s"),
        ({"cache": {"enabled": "maybe"}}, "cache.enabled"),
        ({"cache": {"ttl_s": -1}}, "cache.ttl_s"),
        ({"cache": {"max_entries": -1}}, "cache.max_entries"),
        ({"cache": {"max_bytes": 1 << 50}}, "cache.max_bytes"),
        ({"redis": {"url": "http://127.0.0.1:6379"}}, "redis.url"),
        ({"redis": {"url": "redis://"}}, "redis.url"),
        ({"redis": {"url": "redis://[::1"}}, "redis.url"),
        ({"redis": {"url": "unix://"}}, "redis.url"),
        ({"redis": {"key_prefix": ""}}, "redis.key_prefix"),
        ({"redis": {"key_prefix": "a{b}"}}, "redis.key_prefix"),
        ({"telemetry": {"http_port": 65536}}, "telemetry.http_port"),
        ({"telemetry": {"trace_sample_ratio": 1.5}}, "telemetry.trace_sample_ratio"),
        ({"telemetry": {"otlp_endpoint": "collector:4317"}}, "telemetry.otlp_endpoint"),
        ({"retry": {"backoff_base_s": 5, "backoff_max_s": 1}}, "retry.backoff_base_s"),
        ({"routing": {"denied_models": ["sim-lage"]}}, "routing.denied_models"),
        ({"routing": {"allowed_models": ["ghost"]}}, "routing.allowed_models"),
        ({"routing": {"default_embedding_model": "sim-small"}}, "routing.default_embedding_model"),
        ({"routing": {"default_model": "sim-embed"}}, "routing.default_model"),
    ],
)
def test_out_of_range_values_name_the_key(raw: dict[str, Any], key: str) -> None:
    _fails(raw, key)


def test_reserved_sections_accept_good_values() -> None:
    s = build_settings(
        {
            "server": {"max_concurrent_rpcs": 5, "max_health_watches": 0},
            "ledger": {"default_job_budget_usd": "0.000000001", "store": "MEMORY"},
            "cache": {"ttl_s": 0, "max_bytes": 0},
            "redis": {"url": "unix:///run/redis.sock", "key_prefix": "team-a"},
            "telemetry": {"otlp_endpoint": "http://127.0.0.1:4318", "http_port": 0},
        },
        {},
    )
    assert s.server.max_health_watches == 0 and s.ledger.default_job_budget_nanos == 1
    assert s.ledger.store == "memory" and s.cache.max_bytes == 0
    assert s.redis.key_prefix == "team-a" and s.telemetry.http_port == 0
    assert build_settings({"ledger": {"default_job_budget_usd": 25}}, {}).ledger == (
        dataclasses.replace(s.ledger, default_job_budget_nanos=25_000_000_000, store="sqlite")
    )


def test_a_redis_password_is_never_echoed_or_kept_in_repr() -> None:
    s = build_settings({"redis": {"url": "rediss://:hunter22@cache.internal:6380/1"}}, {})
    assert s.redis.url.endswith("/1") and "hunter22" not in repr(s)
    err = _fails({"redis": {"url": "https://:hunter22@cache.internal"}}, "redis.url")
    assert "hunter22" not in str(err)


# --- [tls] -----------------------------------------------------------------------------------

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name in ("cert", "key", "ca"):
        (tmp_path / f"{name}.pem").write_text(PEM)
        out[name] = str(tmp_path / f"{name}.pem")
    return out


def test_tls_with_readable_pem_files_loads(pems: dict[str, str]) -> None:
    tls = {
        "cert_file": pems["cert"],
        "key_file": pems["key"],
        "client_ca_file": pems["ca"],
        "require_client_cert": True,
    }
    s = build_settings({"tls": tls}, {})
    assert s.tls.cert_file == pems["cert"] and s.tls.require_client_cert is True


@pytest.mark.parametrize(
    ("tls", "key", "says"),
    [
        ({"cert_file": "cert"}, "tls.key_file", "is required"),
        ({"key_file": "key"}, "tls.cert_file", "is required"),
        ({"client_ca_file": "ca"}, "tls.client_ca_file", "needs tls.cert_file"),
        (
            {"cert_file": "cert", "key_file": "key", "require_client_cert": True},
            "tls.require_client_cert",
            "client_ca_file",
        ),
        ({"cert_file": "missing", "key_file": "key"}, "tls.cert_file", "does not exist"),
        ({"cert_file": "cert", "key_file": "dir"}, "tls.key_file", "is a directory"),
        ({"cert_file": "cert", "key_file": "text"}, "tls.key_file", "not PEM"),
    ],
)
def test_tls_problems_name_the_key(
    pems: dict[str, str], tmp_path: Path, tls: dict[str, Any], key: str, says: str
) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "text").write_text("not a certificate")
    paths = {**pems, "missing": str(tmp_path / "nope.pem"), "dir": str(tmp_path / "dir")}
    paths["text"] = str(tmp_path / "text")
    resolved = {k: paths[v] if isinstance(v, str) else v for k, v in tls.items()}
    err = _fails({"tls": resolved}, key)
    assert says in str(err)


def test_models_keep_declared_defaults() -> None:
    m = build_settings({"models": {"m": {"provider": "simulated"}}}, {}).models["m"]
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(ModelSpec)
        if f.name not in ("name", "provider", "upstream", "capabilities")
    }
    assert {k: getattr(m, k) for k in defaults} == defaults
    assert m.upstream == "m"
    # Unset, the capabilities are its provider kind's (issue 15).
    assert m.capabilities == DEFAULT_CAPABILITIES["simulated"]


def test_model_capabilities_listed_or_by_provider_kind() -> None:
    settings = build_settings(
        {
            "providers": {"g": {"kind": "gemini"}, "h": {"kind": "http", "base_url": "http://x"}},
            "models": {
                "listed": {"provider": "g", "capabilities": ["tools", "reasoning"]},
                "none": {"provider": "g", "capabilities": []},
                "gem": {"provider": "g"},
                "custom": {"provider": "h"},
            },
        },
        {},
    )
    models = settings.models
    assert models["listed"].capabilities == {"tools", "reasoning"}
    assert models["none"].capabilities == frozenset()
    assert models["gem"].capabilities == {"tools", "json_schema", "images"}
    assert models["custom"].capabilities == frozenset()
    with pytest.raises(ConfigError, match=r"models\.m\.capabilities: 'telepathy' is not one of"):
        build_settings(
            {"models": {"m": {"provider": "simulated", "capabilities": ["telepathy"]}}}, {}
        )
