"""``aurea top``: a live terminal view of one server, refreshed from its admin RPCs (calls per
second, latency, cost, breaker states, actor mailboxes). Sampling is three unary calls per
refresh (GetMetricsSummary, GetSystemMetrics, ListProviders); rates are the difference between
two samples over the monotonic time between them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

_STATE_STYLE = {"CLOSED": "green", "HALF_OPEN": "yellow", "OPEN": "bold red"}


@dataclass(frozen=True, slots=True)
class Sample:
    at_s: float  # monotonic
    summary: Any  # GetMetricsSummaryResponse
    system: Any  # GetSystemMetricsResponse
    providers: Any  # ListProvidersResponse


def sample(admin: Any, pb: Any, metadata: Sequence[tuple[str, str]], timeout_s: float) -> Sample:
    """One snapshot of the server through its AdminService stub (raises grpc.RpcError)."""
    md = list(metadata)
    return Sample(
        at_s=time.monotonic(),
        summary=admin.GetMetricsSummary(
            pb.GetMetricsSummaryRequest(), metadata=md, timeout=timeout_s
        ),
        system=admin.GetSystemMetrics(pb.GetSystemMetricsRequest(), metadata=md, timeout=timeout_s),
        providers=admin.ListProviders(pb.ListProvidersRequest(), metadata=md, timeout=timeout_s),
    )


def _rate(now: int, before: int | None, seconds: float) -> str:
    if before is None or seconds <= 0:
        return "-"
    return f"{max(now - before, 0) / seconds:.1f}"


def _usd(nanos: int) -> str:
    return f"${nanos / 1e9:.6f}"


def render(target: str, now: Sample, before: Sample | None) -> Group:
    """One frame: the totals line, then models, breakers and actors."""
    elapsed = now.at_s - before.at_s if before is not None else 0.0
    t = now.summary.total
    prev_t = before.summary.total if before is not None else None
    sys_m = now.system
    head = Text.assemble(
        ("aurea top ", "bold"),
        f"{target}  ",
        ("calls/s ", "dim"),
        _rate(t.requests, prev_t.requests if prev_t is not None else None, elapsed),
        ("  calls ", "dim"),
        str(t.requests),
        ("  errors ", "dim"),
        str(t.errors),
        ("  p50/p95/p99 ", "dim"),
        f"{t.p50_latency_ms:.1f}/{t.p95_latency_ms:.1f}/{t.p99_latency_ms:.1f} ms",
        ("  cost ", "dim"),
        _usd(t.cost_nanos),
        ("  cpu ", "dim"),
        f"{sys_m.cpu_percent:.0f}%",
        ("  rss ", "dim"),
        f"{sys_m.memory_rss_bytes / 2**20:.0f} MiB",
    )
    models = Table(title="models", title_justify="left", expand=True)
    for col in (
        "model",
        "provider",
        "calls",
        "calls/s",
        "errors",
        "p50 ms",
        "p99 ms",
        "tokens in/out",
        "cost",
    ):
        models.add_column(col, justify="left" if col in ("model", "provider") else "right")
    prev_models = {m.model: m.metrics for m in before.summary.models} if before is not None else {}
    for m in now.summary.models:
        mm, prev = m.metrics, prev_models.get(m.model)
        models.add_row(
            m.model,
            m.provider,
            str(mm.requests),
            _rate(mm.requests, prev.requests if prev is not None else None, elapsed),
            str(mm.errors),
            f"{mm.p50_latency_ms:.1f}",
            f"{mm.p99_latency_ms:.1f}",
            f"{mm.input_tokens}/{mm.output_tokens}",
            _usd(mm.cost_nanos),
        )
    breakers = Table(title="breakers", title_justify="left", expand=True)
    for col in ("provider", "model", "state"):
        breakers.add_column(col)
    for p in now.providers.providers:
        for b in p.breakers:
            state = _state_name(b.state)
            breakers.add_row(p.name, b.model, Text(state, style=_STATE_STYLE.get(state, "")))
    actors = Table(title="actors", title_justify="left", expand=True)
    for col in ("actor", "mailbox", "processed", "restarts", "avg ms"):
        actors.add_column(col, justify="left" if col == "actor" else "right")
    for a in sys_m.actors:
        actors.add_row(
            a.name,
            f"{a.mailbox_depth}/{a.mailbox_capacity}",
            str(a.processed),
            str(a.restarts),
            f"{a.avg_handling_ms:.2f}",
        )
    return Group(head, models, breakers, actors)


def _state_name(value: int) -> str:
    from aurea.v1 import admin_pb2

    return str(admin_pb2.CircuitState.Name(value)).removeprefix("CIRCUIT_STATE_")


def frames(take: Callable[[], Sample], interval_s: float) -> Iterator[tuple[Sample, Sample | None]]:
    """Samples ``interval_s`` apart, each with the one before it (None for the first)."""
    before: Sample | None = None
    while True:
        now = take()
        yield now, before
        before = now
        time.sleep(interval_s)
