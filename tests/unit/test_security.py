"""Security rules that need no server: open mode off loopback refuses to load unless forced, key
policy parsing, and input edge cases the fuzzer found."""

from __future__ import annotations

import pytest

from aurea.config import ConfigError, build_settings
from aurea.errors import InvalidRequest
from aurea.http._chat import parse_chat

DIGEST = "ab" * 32


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"server": {"host": "0.0.0.0"}}, "server.host"),
        ({"server": {"host": "::"}}, "server.host"),
        ({"server": {"host": "192.0.2.7"}}, "server.host"),
        ({"http": {"host": "0.0.0.0"}}, "http.host"),
    ],
)
def test_open_mode_off_loopback_is_a_config_error(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_settings(raw, {})
    assert info.value.key == key
    assert "allow_open_on_any_interface" in str(info.value)


def test_open_mode_off_loopback_when_forced_or_keyed() -> None:
    forced = {"server": {"host": "0.0.0.0", "allow_open_on_any_interface": True}}
    assert build_settings(forced, {}).server.host == "0.0.0.0"
    keyed = build_settings({"server": {"host": "0.0.0.0"}}, {"AUREA_API_KEYS": "user:k-12345678"})
    assert keyed.api_keys
    # a disabled HTTP door on any interface does not count
    assert build_settings({"http": {"host": "0.0.0.0", "enabled": False}}, {})
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.8.9.10"):
        assert build_settings({"server": {"host": host}}, {}).server.host == host


def test_key_policy_fields() -> None:
    raw = {
        "auth": {
            "keys": [
                {
                    "name": "team-a",
                    "sha256": DIGEST,
                    "tenant": "acme",
                    "models": ["sim-small"],
                    "rpm": 10,
                    "tpm": 1000,
                    "budget_usd": "0.25",
                    "max_streams": 2,
                }
            ]
        }
    }
    (key,) = build_settings(raw, {}).api_keys
    assert key.tenant_name == "acme" and key.models == frozenset({"sim-small"})
    assert (key.rpm, key.tpm, key.max_streams) == (10, 1000, 2)
    assert key.budget_nanos == 250_000_000 and not key.disabled


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"models": ["no-such-model"]}, "auth.keys[0].models"),
        ({"rpm": -1}, "auth.keys[0].rpm"),
        ({"budget_usd": "-1"}, "auth.keys[0].budget_usd"),
        ({"disabled": "yes"}, "auth.keys[0].disabled"),
        ({"name": ""}, "auth.keys[0].name"),
    ],
)
def test_bad_key_policy_is_named(entry: dict[str, object], key: str) -> None:
    raw = {"auth": {"keys": [{"sha256": DIGEST, **entry}]}}
    with pytest.raises(ConfigError) as info:
        build_settings(raw, {})
    assert info.value.key == key


def test_two_keys_with_one_name_or_one_secret() -> None:
    for second in ({"name": "a", "sha256": "cd" * 32}, {"name": "b", "sha256": DIGEST}):
        raw = {"auth": {"keys": [{"name": "a", "sha256": DIGEST}, second]}}
        with pytest.raises(ConfigError):
            build_settings(raw, {})


@pytest.mark.parametrize("field", ["temperature", "top_p", "max_tokens", "seed"])
def test_a_number_past_a_doubles_range_is_a_bad_field_not_a_crash(field: str) -> None:
    # Found by the HTTP fuzzer: math.isfinite(10**400) raised OverflowError (a 500).
    body = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}], field: 10**400}
    with pytest.raises(InvalidRequest) as info:
        parse_chat(body, {}, "rid", 0.0)
    assert info.value.violations[0].field in (field, "max_completion_tokens")
