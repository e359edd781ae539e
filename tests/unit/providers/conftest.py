"""Fixtures for the provider adapter tests."""

from __future__ import annotations

import pytest
from provider_helpers import KEY_ENV


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "sk-test-key-0123456789"
    monkeypatch.setenv(KEY_ENV, key)
    return key
