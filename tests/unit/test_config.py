"""Settings: defaults, TOML, env precedence, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from aurea.config import ConfigError, build_settings, hash_key, load_settings


def test_zero_config_has_the_simulated_provider_and_catalog() -> None:
    s = load_settings(None, env={})
    assert s.server.host == "127.0.0.1" and s.server.port == 50051
    assert s.providers["simulated"].kind == "simulated"
    assert {"sim-small", "sim-large", "sim-embed"} <= set(s.models)
    assert s.models["sim-small"].input_nanos_per_mtok == 150_000_000  # $0.15 per Mtok
    assert s.api_keys == ()


def test_env_wins_over_file(tmp_path: Path) -> None:
    f = tmp_path / "aurea.toml"
    f.write_text('[server]\nport = 7000\n[log]\nlevel = "debug"\n')
    s = load_settings(f, env={"AUREA_SERVER_PORT": "7001"})
    assert s.server.port == 7001 and s.log.level == "debug"
    assert load_settings(f, env={"AUREA_PORT": "7002"}).server.port == 7002


@pytest.mark.parametrize(
    ("raw", "env", "key"),
    [
        ({}, {"AUREA_SERVER_PORT": "abc"}, "server.port"),
        ({"server": {"port": 70000}}, {}, "server.port"),
        ({"log": {"level": "loud"}}, {}, "log.level"),
        ({"server": {"prot": 1}}, {}, "server.prot"),
        ({"providers": {"x": {"kind": "nope"}}}, {}, "providers.x.kind"),
        ({"models": {"m": {"provider": "missing"}}}, {}, "models.m.provider"),
        (
            {"models": {"m": {"provider": "simulated", "input_usd_per_mtok": "-1"}}},
            {},
            "models.m.input_usd_per_mtok",
        ),
        ({"routing": {"default_model": "ghost"}}, {}, "routing.default_model"),
        ({}, {"AUREA_SERVER_BOGUS": "1"}, "AUREA_SERVER_BOGUS"),
        (
            {"providers": {"x": {"kind": "openai", "base_url": "api.example"}}},
            {},
            "providers.x.base_url",
        ),
        ({}, {"AUREA_API_KEYS": "root:secretsecret"}, "AUREA_API_KEYS"),
        ({"auth": {"keys": [{"sha256": "xyz"}]}}, {}, "auth.keys[0].sha256"),
    ],
)
def test_bad_values_name_the_key(raw: dict[str, object], env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_settings(raw, env)
    assert info.value.key == key
    assert key in str(info.value)


def test_api_keys_are_kept_hashed_only() -> None:
    s = build_settings({}, {"AUREA_API_KEYS": "user:user-key-123,admin:admin-key-456"})
    assert [k.scopes for k in s.api_keys] == [frozenset({"user"}), frozenset({"user", "admin"})]
    assert s.api_keys[0].sha256 == hash_key("user-key-123")
    assert "user-key-123" not in repr(s)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


async def test_adapter_option_errors_stop_the_server_as_config_errors() -> None:
    from aurea.server import AureaServer

    settings = build_settings({"providers": {"rp": {"kind": "runpod"}}})
    with pytest.raises(ConfigError) as info:
        await AureaServer(settings).start()
    assert info.value.key == "providers.rp" and "endpoint_id" in str(info.value)
