"""Constants and small helpers shared by the store contract tests."""

from __future__ import annotations

T0 = 1_700_000_000.0  # a wall-clock instant; tests pass times explicitly, no clock is read
RETENTION_S = 600.0  # closed-lease retention of the ledger stores under test
AGING_S = 100.0  # task stores under test: one priority level is worth 100 s of waiting
