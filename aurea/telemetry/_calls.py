"""The per-call series (requests, latency, tasks, tokens, cost, time to first token, attempts,
retries, fallbacks, budget refusals and stops, calls in flight), kept in plain Python numbers and
rendered as Prometheus metric families when scraped.

Why not prometheus_client's own Counter/Histogram here: each update takes a lock and a label
lookup (about 0.5-1.2 us), and a call makes a dozen. Every update and every scrape runs on the
event loop's thread (the edge, the record sinks and the side port's handler), so plain integers
need no lock, and a call's whole recording costs a few microseconds.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from aurea.inference.calls import CallKind
from aurea.providers._base import FinishReason

if TYPE_CHECKING:
    from aurea.inference.calls import CallRecord

Label = Callable[[str], str]
_BUDGET_EXCEEDED: Final = "BUDGET_EXCEEDED"


class Hist:
    """Bucket counts (not cumulative), count and sum; ``le`` semantics as Prometheus."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            buckets.append((_le(bound), total))
        buckets.append(("+Inf", total + self.counts[-1]))
        family.add_metric(labels, buckets, self.sum)


def _le(bound: float) -> str:
    return repr(float(bound))


class ModelBook:
    __slots__ = ("budget_refusals", "budget_stops", "cost_nanos", "tasks", "tokens", "ttft")

    def __init__(self, ttft_bounds: Sequence[float]) -> None:
        self.tasks: dict[str, int] = {}  # by outcome (a StrEnum member)
        self.tokens = [0, 0]  # input, output
        self.cost_nanos = 0
        self.ttft = Hist(ttft_bounds)
        self.budget_refusals = 0
        self.budget_stops = 0


class CallBook(Collector):
    """The series of calls since the process started."""

    def __init__(self, *, latency_bounds: Sequence[float], ttft_bounds: Sequence[float]) -> None:
        self._latency_bounds = tuple(latency_bounds)
        self._ttft_bounds = tuple(ttft_bounds)
        self.active = 0
        self.requests: dict[tuple[str, str], int] = {}
        self.latency: dict[str, Hist] = {}
        self.models: dict[str, ModelBook] = {}
        self.attempts: dict[tuple[str, str, str], int] = {}
        self.retries: dict[tuple[str, str], int] = {}
        self.fallbacks: dict[tuple[str, str, str], int] = {}

    # -- recording (event loop thread) ----------------------------------------------------------
    def rpc_finished(self, method: str, code: str, latency_s: float) -> None:
        key = (method, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get(method)
        if hist is None:
            hist = self.latency[method] = Hist(self._latency_bounds)
        hist.observe(latency_s)

    def record(self, record: CallRecord, model_label: Label, provider_label: Label) -> None:
        model = model_label(record.model) if record.model else "none"
        book = self.models.get(model)
        if book is None:
            book = self.models[model] = ModelBook(self._ttft_bounds)
        outcome = record.outcome  # the member itself: ``.value`` is a slow property
        book.tasks[outcome] = book.tasks.get(outcome, 0) + 1
        usage = record.usage
        book.tokens[0] += usage.input_tokens
        book.tokens[1] += usage.output_tokens
        book.cost_nanos += record.cost_nanos
        if record.ttft_s is not None and record.kind is CallKind.STREAM:
            book.ttft.observe(record.ttft_s)
        if record.finish_reason is FinishReason.BUDGET_EXCEEDED:
            book.budget_stops += 1
        elif record.error == _BUDGET_EXCEEDED:
            book.budget_refusals += 1
        attempts = self.attempts
        prev_model = prev_error = ""
        for a in record.attempts:
            a_model = model if a.model == record.model else model_label(a.model)
            key = (a_model, provider_label(a.provider), a.error or "ok")
            attempts[key] = attempts.get(key, 0) + 1
            if prev_error:
                if a_model == prev_model:
                    rkey = (a_model, prev_error)
                    self.retries[rkey] = self.retries.get(rkey, 0) + 1
                else:
                    fkey = (prev_model, a_model, prev_error)
                    self.fallbacks[fkey] = self.fallbacks.get(fkey, 0) + 1
            prev_model, prev_error = a_model, a.error

    # -- the scrape -------------------------------------------------------------------------
    def describe(self) -> Iterator[Metric]:
        return iter(())  # nothing fixed: the registry must not collect() at registration

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "aurea_requests", "RPCs answered, by method and status code", labels=["method", "code"]
        )
        for (method, code), n in list(self.requests.items()):
            requests.add_metric([method, code], n)
        latency = HistogramMetricFamily(
            "aurea_request_latency_seconds",
            "RPC latency from admission to the final status, by method",
            labels=["method"],
        )
        for method, hist in list(self.latency.items()):
            hist.add_to(latency, [method])
        active = GaugeMetricFamily("aurea_active_tasks", "Inference calls in flight")
        active.add_metric([], self.active)
        yield from (requests, latency, active)
        yield from self._call_families()

    def _call_families(self) -> Iterator[Metric]:
        tasks = CounterMetricFamily(
            "aurea_tasks",
            "Inference calls finished, by the model that answered (or was last tried) and outcome",
            labels=["model", "status"],
        )
        tokens = CounterMetricFamily(
            "aurea_llm_tokens",
            "Tokens, by model and direction (input, output)",
            labels=["model", "direction"],
        )
        cost = CounterMetricFamily(
            "aurea_llm_cost_usd", "Spend in US dollars, by model", labels=["model"]
        )
        ttft = HistogramMetricFamily(
            "aurea_ttft_seconds",
            "Time to first token of streamed calls, by model",
            labels=["model"],
        )
        refusals = CounterMetricFamily(
            "aurea_budget_refusals", "Calls refused for lack of budget, by model", labels=["model"]
        )
        stops = CounterMetricFamily(
            "aurea_budget_stops",
            "Streams stopped mid-answer at the job's budget (finish BUDGET_EXCEEDED), by model",
            labels=["model"],
        )
        for model, book in list(self.models.items()):
            for status, n in list(book.tasks.items()):
                tasks.add_metric([model, str(status)], n)
            tokens.add_metric([model, "input"], book.tokens[0])
            tokens.add_metric([model, "output"], book.tokens[1])
            cost.add_metric([model], book.cost_nanos / 1e9)
            book.ttft.add_to(ttft, [model])
            refusals.add_metric([model], book.budget_refusals)
            stops.add_metric([model], book.budget_stops)
        attempts = CounterMetricFamily(
            "aurea_upstream_attempts",
            "Upstream attempts, by model, provider and outcome (ok, or the error's reason)",
            labels=["model", "provider", "outcome"],
        )
        for key3, n in list(self.attempts.items()):
            attempts.add_metric(list(key3), n)
        retries = CounterMetricFamily(
            "aurea_upstream_retries",
            "Attempts retried on the same model, by model and cause (the failed attempt's reason)",
            labels=["model", "cause"],
        )
        for key2, n in list(self.retries.items()):
            retries.add_metric(list(key2), n)
        fallbacks = CounterMetricFamily(
            "aurea_fallbacks",
            "Moves to the next candidate model, by the model left, the model tried next and cause",
            labels=["from_model", "to_model", "cause"],
        )
        for key3, n in list(self.fallbacks.items()):
            fallbacks.add_metric(list(key3), n)
        yield from (tasks, tokens, cost, ttft, attempts, retries, fallbacks, refusals, stops)
