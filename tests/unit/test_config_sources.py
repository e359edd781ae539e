"""Where settings come from: the config file (every way it can be unusable) and AUREA_* vars."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aurea.config import ConfigError, build_settings, load_settings
from aurea.errors import AureaError


def test_config_error_is_an_aurea_error_and_still_a_value_error() -> None:
    err = ConfigError("server.port", "bad")
    assert isinstance(err, AureaError) and isinstance(err, ValueError)
    assert err.reason == "CONFIG_ERROR"
    assert str(err) == "config server.port: bad" and err.key == "server.port"


# --- the environment -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "AUREA_API_KEY",  # the CLI's own client variables
        "AUREA_TARGET",
        "AUREA_TOKENIZER_DIR",  # tools' and tests' variables
        "AUREA_REQUIRE_ALL",
        "AUREA_SERVICES",
        "AUREA_HOME",
        "AUREA_CONFIG",
    ],
)
def test_variables_that_are_not_server_settings_are_ignored(name: str) -> None:
    assert build_settings({}, {name: "1"}) == build_settings({}, {})


def test_serve_starts_with_the_clients_variables_set() -> None:
    env = {
        "AUREA_API_KEY": "user-key-123",
        "AUREA_TARGET": "127.0.0.1:1",
        "AUREA_TOKENIZER_DIR": "/nowhere",
        "AUREA_REQUIRE_ALL": "1",
        "AUREA_TLS": "1",
        "AUREA_TLS_CA": "/client/ca.pem",
        "AUREA_TLS_CERT": "/client/cert.pem",
        "AUREA_TLS_KEY": "/client/key.pem",
        "AUREA_SERVER_PORT": "7003",
    }
    assert load_settings(None, env).server.port == 7003


@pytest.mark.parametrize(
    ("name", "section"),
    [
        ("AUREA_SERVER_PROT", "server"),
        ("AUREA_BREAKER_THRESHOLD", "breaker"),
        ("AUREA_TLS_CERTFILE", "tls"),
        ("AUREA_LOG_", "log"),
    ],
)
def test_an_unknown_key_of_a_known_section_is_an_error_listing_the_keys(
    name: str, section: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_settings({}, {name: "1"})
    assert info.value.key == name
    assert f"[{section}]" in str(info.value) and "allowed:" in str(info.value)


@pytest.mark.parametrize(
    "name", ["AUREA_PROVIDERS_X_KIND", "AUREA_MODELS_M_QUALITY", "AUREA_AUTH_KEYS"]
)
def test_named_tables_cannot_be_set_from_the_environment(name: str) -> None:
    with pytest.raises(ConfigError, match="config file") as info:
        build_settings({}, {name: "1"})
    assert info.value.key == name


def test_every_section_can_be_set_from_the_environment() -> None:
    s = build_settings(
        {},
        {
            "AUREA_BREAKER_FAILURE_THRESHOLD": "3",
            "AUREA_CACHE_ENABLED": "false",
            "AUREA_LEDGER_DEFAULT_JOB_BUDGET_USD": "2.5",
            "AUREA_LIMITS_DEFAULT_RPM": "60",
            "AUREA_REDIS_URL": "redis://127.0.0.1:6379/0",
            "AUREA_TELEMETRY_TRACE_SAMPLE_RATIO": "0.25",
            "AUREA_SERVER_MAX_CONCURRENT_RPCS": "100",
            "AUREA_ROUTING_DENIED_MODELS": "sim-large, sim-small",
        },
    )
    assert s.breaker.failure_threshold == 3 and s.cache.enabled is False
    assert s.ledger.default_job_budget_nanos == 2_500_000_000
    assert s.limits.default_rpm == 60 and s.redis.url == "redis://127.0.0.1:6379/0"
    assert s.telemetry.trace_sample_ratio == 0.25 and s.server.max_concurrent_rpcs == 100
    assert s.routing.denied_models == ("sim-large", "sim-small")


def test_the_full_name_wins_over_the_shortcut() -> None:
    env = {"AUREA_SERVER_PORT": "7001", "AUREA_PORT": "7002"}
    assert build_settings({}, env).server.port == 7001
    assert build_settings({}, dict(reversed(env.items()))).server.port == 7001


def test_a_bad_value_from_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        build_settings({}, {"AUREA_BREAKER_OPEN_TIMEOUT_S": "nan"})
    assert info.value.key == "breaker.open_timeout_s"
    assert "AUREA_BREAKER_OPEN_TIMEOUT_S" in str(info.value)


def test_aurea_config_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "aurea.toml"
    f.write_text("[breaker]\nfailure_threshold = 9\n")
    assert load_settings(None, {"AUREA_CONFIG": str(f)}).breaker.failure_threshold == 9


# --- the file --------------------------------------------------------------------------------


def _error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    assert info.value.key == str(path)
    return info.value


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    assert "is a directory" in str(_error(tmp_path))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    assert "does not exist" in str(_error(tmp_path / "nope.toml"))


def test_a_file_under_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    assert "cannot be opened" in str(_error(tmp_path / "plain" / "aurea.toml"))


def test_an_unreadable_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests may run as root, which reads any file whatever its mode: fake the refusal instead.
    f = tmp_path / "aurea.toml"
    f.write_text("")

    def refuse(path: object, flags: int) -> int:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "open", refuse)
    assert "not readable" in str(_error(f))


def test_a_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "aurea.toml"
    f.write_bytes(b'[log]\nlevel = "\xff\xfe"\n')
    assert "not UTF-8" in str(_error(f))


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    f = tmp_path / "aurea.toml"
    f.write_text("[server]\nport = 70 00\n")
    message = str(_error(f))
    assert "not valid TOML" in message and "line 2" in message and "column" in message


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "aurea.toml"
    os.mkfifo(fifo)
    assert "not a regular file" in str(_error(fifo))


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "aurea.toml"
    f.write_text("# " + "x" * (2 << 20) + "\n")
    assert "larger than" in str(_error(f))


def test_a_deeply_nested_file_is_a_config_error(tmp_path: Path) -> None:
    f = tmp_path / "aurea.toml"
    f.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert "not valid TOML" in str(_error(f))
