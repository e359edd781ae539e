"""Aurea's Prometheus metrics: one process-wide registry, its metric families, and the typed
functions that code recording a series calls.

Recording is cheap (no I/O, no allocation on the hot path once a label set was seen: labelled
children are cached) and never raises into the caller. Label values are bounded: model and
provider names go through ``model_label``/``provider_label``, which map anything outside the
configured catalog to ``"other"``, so a raw request string can never become a series.

Who records what:

* the edge (``aurea.edge``): ``rpc_finished`` per RPC, ``inference_started``/``inference_ended``
  around inference RPCs;
* the call record sink ``record_call`` (registered on ``Inference(sinks=...)``): tasks, tokens,
  cost, time to first token, upstream attempts, retries and fallbacks by cause, budget refusals
  and budget stops;
* the breaker: ``breaker_transition`` (its state gauge is read at scrape time,
  ``watch_breakers``); the limiter: ``ratelimit_waited``, ``ratelimit_refused``;
  the cache: ``cache_hit``, ``cache_miss``; the task queue: ``task_enqueued``,
  ``task_started``, ``task_finished``; the provisioner: ``resource_operation``,
  ``resources_active``; the router: ``route_selected``;
* actors: read from ``ActorSystem.stats()`` at scrape time (``watch_actors``), no per-message cost.
"""

from __future__ import annotations

import platform
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from aurea.telemetry._calls import CallBook

if TYPE_CHECKING:
    from aurea.inference.calls import CallRecord
    from aurea.runtime import ActorSystem

__all__ = [
    "BREAKER_STATES",
    "REGISTRY",
    "breaker_transition",
    "build_info",
    "cache_hit",
    "cache_miss",
    "inference_ended",
    "inference_started",
    "model_label",
    "provider_label",
    "ratelimit_refused",
    "ratelimit_waited",
    "record_call",
    "resource_operation",
    "resources_active",
    "route_selected",
    "rpc_finished",
    "set_catalog",
    "task_enqueued",
    "task_finished",
    "task_started",
    "unwatch_actors",
    "unwatch_breakers",
    "watch_actors",
    "watch_breakers",
]

BreakerSource = Callable[[], Iterable[tuple[str, str, str]]]
OTHER: Final = "other"  # the label value of a name outside the catalog

# Seconds. Calls run from milliseconds (cache hits, embeddings) to minutes (long generations).
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
WAIT_BUCKETS: Final = (0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# ``*_created`` series double the exposition and nothing here reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY: Final = CollectorRegistry(auto_describe=True)
for _c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_c)

_r = REGISTRY

# -- the per-call series (plain numbers, rendered at scrape: see ``_calls``) -------------------
CALLS: Final = CallBook(latency_bounds=LATENCY_BUCKETS, ttft_bounds=TTFT_BUCKETS)
REGISTRY.register(CALLS)

# -- guards and subsystems -------------------------------------------------------------------
RATELIMIT_WAITS = Histogram(
    "aurea_ratelimit_wait_seconds",
    "Time attempts waited for rate-limit capacity, by model",
    ["model"],
    buckets=WAIT_BUCKETS,
    registry=_r,
)
RATELIMIT_REFUSALS = Counter(
    "aurea_ratelimit_refusals",
    "Attempts refused by Aurea's own rate limits, by model and limit (rpm, tpm, ...)",
    ["model", "limit"],
    registry=_r,
)
BREAKER_TRANSITIONS = Counter(
    "aurea_breaker_transitions",
    "Circuit breaker transitions, by provider, model and the state entered",
    ["provider", "model", "state"],
    registry=_r,
)
# Seed 001's cache series keep their names (no aurea_ prefix) so its dashboards still work.
CACHE_HITS = Counter("cache_hits", "Cache hits, by cache type", ["cache_type"], registry=_r)
CACHE_MISSES = Counter("cache_misses", "Cache misses, by cache type", ["cache_type"], registry=_r)
CACHE_BACKEND_ERRORS = Counter(
    "aurea_cache_backend_errors",
    "Cache backend failures (the call is served without the cache), by backend",
    ["backend"],
    registry=_r,
)
QUEUE_TASKS = Counter(
    "aurea_queue_tasks",
    "Queued tasks finished, by kind and final status",
    ["kind", "status"],
    registry=_r,
)
QUEUE_ENQUEUED = Counter(
    "aurea_queue_tasks_enqueued", "Tasks submitted to the queue, by kind", ["kind"], registry=_r
)
QUEUE_RUNNING = Gauge(
    "aurea_queue_tasks_running", "Queued tasks running now, by kind", ["kind"], registry=_r
)
RESOURCE_OPS = Counter(
    "aurea_resource_operations",
    "Provisioning operations, by backend, operation (provision, release, scale) and outcome",
    ["backend", "operation", "outcome"],
    registry=_r,
)
RESOURCES_ACTIVE = Gauge(
    "aurea_resources_active", "Provisioned resources alive, by backend", ["backend"], registry=_r
)
ROUTE_SELECTIONS = Counter(
    "aurea_route_selections",
    "Models chosen by the router, by model and policy",
    ["model", "policy"],
    registry=_r,
)
BUILD_INFO = Gauge(
    "aurea_build_info", "Always 1; the labels name the build", ["version", "python"], registry=_r
)

BREAKER_STATES: Final = {"closed": 0, "half_open": 1, "open": 2}

# -- bounded labels --------------------------------------------------------------------------
_models: frozenset[str] | None = None  # None: no catalog given (unit tests): names pass as is
_providers: frozenset[str] | None = None


def set_catalog(models: Iterable[str], providers: Iterable[str]) -> None:
    """The names that may appear as label values; anything else is recorded as ``other``."""
    global _models, _providers
    _models, _providers = frozenset(models), frozenset(providers)


def model_label(name: str) -> str:
    return name if _models is None or name in _models else OTHER


def provider_label(name: str) -> str:
    return name if _providers is None or name in _providers else OTHER


def _bounded(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else OTHER


# -- the edge and the call record sink (event loop thread only) ------------------------------
def rpc_finished(method: str, code: str, latency_s: float) -> None:
    """One RPC answered. ``method`` is a bounded operation name (a registered RPC), ``code`` a
    status name."""
    CALLS.rpc_finished(method, code, latency_s)


def inference_started() -> None:
    CALLS.active += 1


def inference_ended() -> None:
    CALLS.active -= 1


def record_call(record: CallRecord) -> None:
    """The metrics sink: every ``CallRecord`` of ``Inference`` comes here once. Counts the task,
    tokens, cost, time to first token (streams), each attempt by outcome, retries (the same
    model again) and fallbacks (another model) by the failed attempt's reason, budget refusals
    (the call failed BUDGET_EXCEEDED) and budget stops (a stream ended BUDGET_EXCEEDED)."""
    CALLS.record(record, model_label, provider_label)


# -- other subsystems ------------------------------------------------------------------------
def ratelimit_waited(model: str, seconds: float) -> None:
    """An attempt waited ``seconds`` for rate-limit capacity before it was admitted."""
    RATELIMIT_WAITS.labels(model_label(model)).observe(seconds)


_LIMITS: Final = frozenset({"rpm", "tpm", "concurrency", "key", "other"})


def ratelimit_refused(model: str, limit: str) -> None:
    """Aurea's own limiter refused an attempt; ``limit`` is rpm, tpm, concurrency or key."""
    RATELIMIT_REFUSALS.labels(model_label(model), _bounded(limit, _LIMITS)).inc()


def breaker_transition(provider: str, model: str, state: str) -> None:
    """A breaker entered ``state`` (closed, half_open, open). The state gauge itself is read
    from the breakers at scrape time (``watch_breakers``)."""
    p, m = provider_label(provider), model_label(model) if model else ""
    BREAKER_TRANSITIONS.labels(p, m, state if state in BREAKER_STATES else OTHER).inc()


_CACHE_TYPES: Final = frozenset({"exact", "semantic", "embedding", "response", "other"})


def cache_hit(cache_type: str = "exact") -> None:
    CACHE_HITS.labels(_bounded(cache_type, _CACHE_TYPES)).inc()


def cache_miss(cache_type: str = "exact") -> None:
    CACHE_MISSES.labels(_bounded(cache_type, _CACHE_TYPES)).inc()


def cache_backend_error(backend: str) -> None:
    CACHE_BACKEND_ERRORS.labels(_bounded(backend, frozenset(("memory", "redis")))).inc()


def task_enqueued(kind: str) -> None:
    """``kind`` must come from the registered task kinds, never from a request string."""
    QUEUE_ENQUEUED.labels(kind).inc()


def task_started(kind: str) -> None:
    QUEUE_RUNNING.labels(kind).inc()


def task_finished(kind: str, status: str, *, was_running: bool = True) -> None:
    """A queued task ended with ``status`` (succeeded, failed, cancelled, expired)."""
    QUEUE_TASKS.labels(kind, status).inc()
    if was_running:
        QUEUE_RUNNING.labels(kind).dec()


def resource_operation(backend: str, operation: str, outcome: str) -> None:
    RESOURCE_OPS.labels(backend, operation, outcome).inc()


def resources_active(backend: str, count: int) -> None:
    RESOURCES_ACTIVE.labels(backend).set(count)


def route_selected(model: str, policy: str) -> None:
    ROUTE_SELECTIONS.labels(model_label(model), policy or "explicit").inc()


def build_info(version: str) -> None:
    BUILD_INFO.labels(version, platform.python_version()).set(1)


# -- read at scrape time ---------------------------------------------------------------------
class _ScrapeCollector(Collector):
    """Series computed when Prometheus scrapes: actor mailboxes and the cache hit rate."""

    def __init__(self) -> None:
        self._systems: weakref.WeakSet[ActorSystem] = weakref.WeakSet()
        self._breakers: list[BreakerSource] = []
        self._lock = threading.Lock()

    def watch(self, system: ActorSystem) -> None:
        with self._lock:
            self._systems.add(system)

    def unwatch(self, system: ActorSystem) -> None:
        with self._lock:
            self._systems.discard(system)

    def describe(self) -> Iterable[Metric]:
        return ()  # no fixed description: the registry must not call collect() at register

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "aurea_actor_mailbox_depth", "Messages waiting in an actor's mailbox", labels=["actor"]
        )
        capacity = GaugeMetricFamily(
            "aurea_actor_mailbox_capacity", "An actor's mailbox bound", labels=["actor"]
        )
        alive = GaugeMetricFamily(
            "aurea_actor_alive", "1 while an actor runs, 0 once stopped or dead", labels=["actor"]
        )
        restarts = CounterMetricFamily(
            "aurea_actor_restarts", "Restarts of a crashed actor", labels=["actor"]
        )
        handling = SummaryMetricFamily(
            "aurea_actor_handling_seconds",
            "Time actors spent in receive(): messages handled and their total duration",
            labels=["actor"],
        )
        with self._lock:
            systems = list(self._systems)
            breaker_sources = list(self._breakers)
        for system in systems:
            for s in system.stats():
                name = [s.name]
                depth.add_metric(name, s.depth)
                capacity.add_metric(name, s.capacity)
                alive.add_metric(name, 1 if s.alive else 0)
                restarts.add_metric(name, s.restarts)
                handling.add_metric(name, s.processed, s.handling_seconds_total)
        yield from (depth, capacity, alive, restarts, handling)
        breakers = GaugeMetricFamily(
            "aurea_breaker_state",
            "Circuit breaker state by provider and model: 0 closed, 1 half-open, 2 open",
            labels=["provider", "model"],
        )
        for source in breaker_sources:
            for provider, model, state in source():
                breakers.add_metric(
                    [provider_label(provider), model_label(model)], BREAKER_STATES.get(state, -1)
                )
        yield breakers
        rate = GaugeMetricFamily(
            "cache_hit_rate",
            "Hits over hits plus misses since start, by cache type",
            labels=["cache_type"],
        )
        hits = _totals(CACHE_HITS)
        misses = _totals(CACHE_MISSES)
        for kind in sorted(hits.keys() | misses.keys()):
            total = hits.get(kind, 0.0) + misses.get(kind, 0.0)
            rate.add_metric([kind], hits.get(kind, 0.0) / total if total else 0.0)
        yield rate


def _totals(counter: Counter) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out[sample.labels["cache_type"]] = sample.value
    return out


_scrape = _ScrapeCollector()
REGISTRY.register(_scrape)


def watch_actors(system: ActorSystem) -> None:
    """Report this system's actors (mailbox depth, handling time, restarts) at every scrape."""
    _scrape.watch(system)


def unwatch_actors(system: ActorSystem) -> None:
    _scrape.unwatch(system)


def watch_breakers(source: BreakerSource) -> None:
    """Report ``aurea_breaker_state`` at every scrape from ``source()``: (provider, model,
    state) for every breaker, state one of closed, half_open, open."""
    with _scrape._lock:
        _scrape._breakers.append(source)


def unwatch_breakers(source: BreakerSource) -> None:
    with _scrape._lock:
        if source in _scrape._breakers:
            _scrape._breakers.remove(source)
