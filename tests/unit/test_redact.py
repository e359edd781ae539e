"""PII redaction: every kind of personal data and secret is masked, nested values too, and the
values Aurea needs in its lines (counts, ids, timestamps, dates, versions) survive."""

from __future__ import annotations

from typing import Any

import pytest

from aurea.telemetry.redact import redact_event, redact_text

PII = {
    "email": "jane.doe+canary@example.co.uk",
    "phone_us": "(555) 867-5309",
    "phone_us_dashes": "555-867-5309",
    "phone_intl": "+44 20 7946 0958",
    "ssn": "078-05-1120",
    "card_spaced": "4111 1111 1111 1111",
    "card_plain": "5500005555555559",
    "card_dashed": "3782-822463-10005",
    "ipv4": "203.0.113.77",
    "ipv6": "2001:db8:85a3::8a2e:370:7334",
    "openai_key": "sk-proj-CANARYabcdefghijklmnop0123",
    "aws_key": "AKIAIOSFODNN7CANARY1",
    "github_token": "ghp_CANARYabcdefghijklmnopqrstuvwx",
}


@pytest.mark.parametrize("kind", sorted(PII))
def test_each_kind_is_masked_inside_text(kind: str) -> None:
    secret = PII[kind]
    out = redact_text(f"user said: my {kind} is {secret}, thanks")
    assert secret not in out
    assert "user said: my" in out and "thanks" in out


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.CANARY.sig",
        "password=hunter2CANARY",
        'api_key: "CANARYvalue"',
        "client_secret=CANARYvalue&x=1",
        "token: CANARYvalue",
    ],
)
def test_secrets_in_key_value_text_are_masked(text: str) -> None:
    assert "CANARY" not in redact_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails the Luhn check: an id, not a card
        "request 4bf92f3577b34da6a3ce929d0e0e4736 took 12.5 ms",
        "2026-11-30T17:34:47Z",
        "at 12:30:45",
        "version 1.2.3",
        "count 1234567",
        "input_tokens",
    ],
)
def test_ordinary_values_survive(text: str) -> None:
    assert redact_text(text) == text


def test_nested_values_and_secret_keys() -> None:
    event: dict[str, Any] = {
        "event": "upstream_error",
        "input_tokens": 12,  # a count under a token-ish name stays
        "latency_ms": 3.5,
        "api_key": "user",  # Aurea logs the key's *name* here
        "headers": {
            "Authorization": "Basic dXNlcjpwYXNz",
            "x-api-key": "k",
            "cookie": "sid=1",
        },
        "labels": {"customer": PII["email"], "nested": [PII["ipv4"], (PII["ssn"],)]},
        "password": "hunter2",
        "access_token": "t",
        "body": b'{"error": "card 4111111111111111 declined"}',
    }
    out = redact_event(dict(event))
    flat = repr(out)
    for secret in ("dXNlcjpwYXNz", "sid=1", "hunter2", PII["email"], PII["ipv4"], PII["ssn"]):
        assert secret not in flat
    assert "4111111111111111" not in flat
    assert out["input_tokens"] == 12 and out["latency_ms"] == 3.5
    assert out["api_key"] == "user"
    assert out["headers"]["x-api-key"] == "[redacted]"
    assert out["access_token"] == "[redacted]"


def test_message_of_a_stdlib_line_is_masked() -> None:
    # stdlib records put their message under "event": it is scanned like any value
    out = redact_event({"event": f"connection from {PII['ipv4']} closed"})
    assert PII["ipv4"] not in out["event"]


def test_aureas_own_addresses_are_configuration_not_pii() -> None:
    out = redact_event(
        {
            "event": "server_started",
            "host": "10.1.2.3",
            "base_url": "http://192.0.2.10:8000/v1",
            "peer": "10.1.2.3",
            "configured_host": f"{PII['email']}",
        }
    )
    assert out["host"] == "10.1.2.3" and out["base_url"] == "http://192.0.2.10:8000/v1"
    assert out["peer"] == "[ip]"
    assert PII["email"] not in out["configured_host"]  # other kinds are still masked there
