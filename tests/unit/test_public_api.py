"""The public surface is pinned: a change to it is a decision, not an accident."""

from __future__ import annotations

import subprocess
import sys

import pytest

import aurea
from aurea.errors import AureaError


def test_all_is_pinned() -> None:
    assert sorted(aurea.__all__) == [
        "AureaError",
        "AureaServer",
        "CallScope",
        "ConfigError",
        "Embedded",
        "ModelKind",
        "Policy",
        "Scope",
        "Settings",
        "build_settings",
        "load_settings",
    ]
    for name in aurea.__all__:
        assert getattr(aurea, name) is not None


def test_config_error_is_an_aurea_error() -> None:
    assert issubclass(aurea.ConfigError, AureaError)


@pytest.mark.parametrize("name", ["AureaServer", "Embedded"])
def test_server_is_exported_but_grpc_is_not_imported_by_import_aurea(name: str) -> None:
    code = (
        "import sys, aurea; print('grpc' in sys.modules); "
        f"aurea.{name}; print('grpc' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
