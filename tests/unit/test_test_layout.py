"""The suite's own layout: pytest (default import mode) needs every test module's basename to be
unique across tests/, or collection fails with an import-file mismatch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_test_module_basenames_are_unique() -> None:
    root = Path(__file__).resolve().parents[1]
    names = Counter(p.name for p in root.rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1]
