"""Call metrics since the server started, for ``AdminService.GetMetricsSummary``: requests,
errors and latency from every call's ``CallRecord`` (a record sink), tokens and cost from the
ledger's settled spend (the very figures the ledger store records, abandoned attempts included).

Latency percentiles come from a fixed histogram (buckets growing by 10 %, 0.1 ms to about 20
minutes), interpolated within a bucket: memory stays constant however many calls are counted.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from aurea.inference.calls import CallOutcome, CallRecord
from aurea.providers._base import FinishReason
from aurea.stores import UsageTotals

__all__ = ["CallMetrics", "CallMetricsBook", "LatencyHistogram", "ModelMetrics"]

_FIRST_BOUND_S = 1e-4
_GROWTH = 1.1
_BOUNDS_S: tuple[float, ...] = tuple(_FIRST_BOUND_S * _GROWTH**i for i in range(171))
_NORMAL_FINISH = frozenset({FinishReason.STOP, FinishReason.LENGTH, FinishReason.TOOL_CALLS})


class LatencyHistogram:
    """Counts per latency bucket; ``quantile`` estimates from them."""

    __slots__ = ("count", "counts", "sum_s")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS_S) + 1)  # the last bucket: above every bound
        self.count = 0
        self.sum_s = 0.0

    def add(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            seconds = 0.0
        self.counts[bisect.bisect_left(_BOUNDS_S, seconds)] += 1
        self.count += 1
        self.sum_s += seconds

    def quantile(self, q: float) -> float:
        """The ``q`` quantile in seconds (0 with no samples)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for i, n in enumerate(self.counts):
            if n and seen + n >= rank:
                low = _BOUNDS_S[i - 1] if i else 0.0
                high = _BOUNDS_S[i] if i < len(_BOUNDS_S) else _BOUNDS_S[-1]
                return low + (high - low) * max(rank - seen, 0.0) / n
            seen += n
        return _BOUNDS_S[-1]

    @property
    def mean_s(self) -> float:
        return self.sum_s / self.count if self.count else 0.0


@dataclass(slots=True)
class ModelMetrics:
    requests: int = 0
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, record: CallRecord) -> None:
        self.requests += 1
        if record.outcome is not CallOutcome.OK or (
            record.finish_reason is not None and record.finish_reason not in _NORMAL_FINISH
        ):
            self.errors += 1
        self.latency.add(record.latency_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMetrics:
    """One line of the summary (the total, or one model)."""

    model: str
    provider: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_nanos: int
    p50_s: float
    p95_s: float
    p99_s: float
    mean_s: float


class CallMetricsBook:
    """The record sink and its counters; ``summary`` joins them with the ledger's spend."""

    def __init__(self, providers: Mapping[str, str] | None = None) -> None:
        self._providers = dict(providers or {})  # model -> provider, for models seen by name only
        self.total = ModelMetrics()
        self.models: dict[str, ModelMetrics] = {}
        self.model_provider: dict[str, str] = {}

    def __call__(self, record: CallRecord) -> None:
        self.total.add(record)
        if record.model:
            m = self.models.get(record.model)
            if m is None:
                m = self.models[record.model] = ModelMetrics()
            m.add(record)
            if record.provider:
                self.model_provider[record.model] = record.provider

    def summary(
        self, spend: Mapping[tuple[str, str], UsageTotals]
    ) -> tuple[CallMetrics, tuple[CallMetrics, ...]]:
        """The total and one line per model (by name), with ``spend`` by (model, provider)."""
        by_model: dict[str, UsageTotals] = {}
        for (model, _provider), t in spend.items():
            prev = by_model.get(model) or UsageTotals(model=model, provider="")
            by_model[model] = prev.plus(t)
        total_spend = UsageTotals(model="", provider="")
        for t in by_model.values():
            total_spend = total_spend.plus(t)
        names = sorted(set(self.models) | set(by_model))
        lines = tuple(
            _line(
                name,
                self.model_provider.get(name) or self._providers.get(name, ""),
                self.models.get(name) or ModelMetrics(),
                by_model.get(name),
            )
            for name in names
        )
        return _line("", "", self.total, total_spend), lines


def _line(model: str, provider: str, m: ModelMetrics, spend: UsageTotals | None) -> CallMetrics:
    h = m.latency
    return CallMetrics(
        model=model,
        provider=provider,
        requests=m.requests,
        errors=m.errors,
        input_tokens=spend.input_tokens if spend else 0,
        output_tokens=spend.output_tokens if spend else 0,
        cost_nanos=spend.cost_nanos if spend else 0,
        p50_s=h.quantile(0.5),
        p95_s=h.quantile(0.95),
        p99_s=h.quantile(0.99),
        mean_s=h.mean_s,
    )
