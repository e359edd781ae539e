"""The Redis ledger's values on the wire: each operation as its job script reads it, each
answer back as the ledger's result, and ``_Call``, one job's script in a store call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aurea.stores.ledger import (
    ChargeOp,
    ExtendOp,
    LeaseEnd,
    LedgerOp,
    LedgerResult,
    ReleaseOp,
    Reservation,
    ReserveOp,
    ReserveStatus,
    SettleOp,
    Spend,
    UsageTotals,
)
from aurea.stores.redis._client import fmt, text

_SEP = "\x1f"
_JOB_FIELDS = ("budget", "spent", "reserved", "active", "created_at", "updated_at")
_JOB_KEYS = ("", "exp", "l", "la", "closed", "m", "sum", "seen")
_SWEEP_JOBS = 500  # due jobs one expire visits; the rest wait for the next tick
_INDEXED_MAX = 100_000  # job ids this process remembers having indexed
_LEASE_SLACK_S = 3600  # how much longer than its lease a lease's job is named


def _budget(value: int | None) -> str:
    return "" if value is None else str(value)


def _spend(s: Spend) -> list[str]:
    return [str(s.cost_nanos), str(s.input_tokens), str(s.output_tokens), str(s.calls)]


def _encode(op: LedgerOp) -> list[str]:
    """One job's operation as the script reads it (the job itself is the script's)."""
    match op:
        case ReserveOp():
            return [
                "R",
                op.lease_id,
                str(op.amount_nanos),
                fmt(op.ttl_s),
                fmt(op.now),
                _budget(op.default_budget_nanos),
                op.model,
                op.provider,
            ]
        case ExtendOp():
            return ["X", op.lease_id, str(op.add_nanos), fmt(op.ttl_s), fmt(op.now)]
        case SettleOp():
            return ["S", op.lease_id, *_spend(op.spend), fmt(op.now)]
        case ReleaseOp():
            return ["L", op.lease_id, fmt(op.now)]
        case ChargeOp():
            return [
                "C",
                *_spend(op.spend),
                fmt(op.now),
                _budget(op.default_budget_nanos),
                op.model,
                op.provider,
            ]
    raise ValueError(f"not a job's ledger operation: {op!r}")  # pragma: no cover


def _consume(lease_id: str, op: ChargeOp) -> list[str]:
    return [
        "K",
        lease_id,
        *_spend(op.spend),
        fmt(op.now),
        _budget(op.default_budget_nanos),
        op.model,
        op.provider,
    ]


_UNKNOWN_LEASE = Reservation(
    status=ReserveStatus.LEASE_CLOSED,
    job_id="",
    budget_nanos=None,
    spent_nanos=0,
    reserved_nanos=0,
    lease_nanos=0,
)


@dataclass
class _Call:
    """One job's script in a store call: its arguments, and which operation each row answers
    (an index into the sequence; an expire visit answers part of its ``ExpireOp``)."""

    job: str
    args: list[str] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    claimed: str | None = None  # for an expire visit: the last reserve the claim saw, if claimed


def _decode(row: list[Any]) -> LedgerResult:
    kind = text(row[0])
    if kind == "r":
        status, job, budget, spent, reserved, lease = (text(v) for v in row[1:7])
        return Reservation(
            status=ReserveStatus(status),
            job_id=job,
            budget_nanos=None if budget == "" else int(budget),
            spent_nanos=int(spent),
            reserved_nanos=int(reserved),
            lease_nanos=int(lease),
        )
    if kind == "e":
        return LeaseEnd(text(row[1]))
    if kind == "n":
        return int(row[1])
    return None


def _totals(raw: dict[Any, Any]) -> list[UsageTotals]:
    """Rows of a ``model SEP provider SEP field -> int`` hash (a job's or a bucket's)."""
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for k, v in raw.items():
        model, provider, field = text(k).rsplit(_SEP, 2)
        rows.setdefault((model, provider), {})[field] = int(v)
    return [
        UsageTotals(
            model=m,
            provider=p,
            calls=f.get("calls", 0),
            input_tokens=f.get("input", 0),
            output_tokens=f.get("output", 0),
            cost_nanos=f.get("cost", 0),
        )
        for (m, p), f in rows.items()
    ]
