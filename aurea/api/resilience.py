"""The AdminService parts about resilience, proto <-> domain: circuit breakers as providers
report them, and per-model rate limits (``SetModelLimits``, ``ListModelLimits``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from google.protobuf import timestamp_pb2

from aurea.actors.breaker import BreakerState, BreakerView
from aurea.limits import LimitsTable, ModelLimits
from aurea.v1 import admin_pb2 as pb

__all__ = ["breakers_pb", "list_model_limits", "set_model_limits"]

_STATE = {
    BreakerState.CLOSED: pb.CIRCUIT_STATE_CLOSED,
    BreakerState.OPEN: pb.CIRCUIT_STATE_OPEN,
    BreakerState.HALF_OPEN: pb.CIRCUIT_STATE_HALF_OPEN,
}
_SEVERITY = (pb.CIRCUIT_STATE_OPEN, pb.CIRCUIT_STATE_HALF_OPEN)


def _ts(unix_s: float) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(unix_s * 1e9))
    return t


def breakers_pb(
    views: Iterable[BreakerView],
    models: Iterable[str],
    *,
    wall_clock: Callable[[], float] = time.time,
) -> tuple[pb.CircuitState, list[pb.ModelBreaker]]:
    """The provider's aggregate state and one entry per model: every catalog model of the
    provider (CLOSED until its first call), plus any other model its breakers know."""
    by_model = {v.model: v for v in views if v.model}
    out: list[pb.ModelBreaker] = []
    now = wall_clock()
    for name in sorted(set(models) | set(by_model)):
        view = by_model.get(name)
        if view is None:
            out.append(pb.ModelBreaker(model=name, state=pb.CIRCUIT_STATE_CLOSED))
            continue
        msg = pb.ModelBreaker(
            model=name,
            state=_STATE[view.state],
            consecutive_failures=min(view.consecutive_failures, 2**31 - 1),
            times_opened=view.times_opened,
        )
        if view.last_transition_unix_s is not None:
            msg.last_transition_time.CopyFrom(_ts(view.last_transition_unix_s))
        if view.half_open_in_s is not None:
            msg.half_open_time.CopyFrom(_ts(now + view.half_open_in_s))
        out.append(msg)
    states = {b.state for b in out}
    worst = next((s for s in _SEVERITY if s in states), pb.CIRCUIT_STATE_CLOSED)
    return worst, out


def _limits_pb(limits: ModelLimits) -> pb.ModelLimits:
    return pb.ModelLimits(
        model=limits.model,
        rpm=limits.rpm,
        tpm=limits.tpm,
        max_concurrency=limits.max_concurrency,
        overridden=limits.overridden,
    )


def set_model_limits(
    table: LimitsTable, request: pb.SetModelLimitsRequest
) -> pb.SetModelLimitsResponse:
    """Validated by the table (INVALID_ARGUMENT naming the field, NOT_FOUND for a model
    outside the catalog); unset fields keep their values."""
    now, previous = table.set(
        request.model,
        rpm=request.rpm if request.HasField("rpm") else None,
        tpm=request.tpm if request.HasField("tpm") else None,
        max_concurrency=(request.max_concurrency if request.HasField("max_concurrency") else None),
    )
    return pb.SetModelLimitsResponse(limits=_limits_pb(now), previous_limits=_limits_pb(previous))


def list_model_limits(
    table: LimitsTable, request: pb.ListModelLimitsRequest
) -> pb.ListModelLimitsResponse:
    items = [table.get(request.model)] if request.model else table.all()
    return pb.ListModelLimitsResponse(limits=[_limits_pb(m) for m in items])
