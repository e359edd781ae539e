"""The Router actor: owns routing state (the catalog, the allow/deny lists, the policies, every
model's recorded stats and the weights) and publishes it as an immutable ``RoutingTable`` on a
``RouterView``, which the inference core reads without a mailbox hop.

Learning, without a cost per call: every call's record goes to a ``RecordInbox`` (a buffer); the
router's **pump** (a child task) wakes once per batch, folds the batch into the
``RouterStatsStore`` (the store's fold is the one source of truth, so replicas sharing a store
agree), posts the new rows back, and the router rebuilds and republishes the table: at most once
per ``routing.publish_interval_s``, and at least every few seconds so that figures decay. Store
I/O never runs inside ``receive``: replies that need it are ``Later``.

Stopping: the runtime cancels the pump, then ``on_stop`` writes what is still buffered. An outcome
being written at that instant is written at most once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

import structlog

from aurea.config import ModelSpec, RoutingSettings
from aurea.errors import FailedPrecondition, FieldViolation, InvalidRequest
from aurea.routing import (
    Candidate,
    Figures,
    Health,
    Optimized,
    RouterView,
    RoutingTable,
    Scored,
    Weights,
    default_weights,
    effective_weight,
    factor_scores,
    figures_for,
    first_token_key,
    optimize,
    permitted_names,
    split_rows,
    weight_problems,
)
from aurea.routing._records import ModelOutcome, RecordInbox, outcomes_of
from aurea.runtime import Actor, Ask, Later
from aurea.stores import ModelStats, Outcome, RouterStatsStore
from aurea.stores.memory.router_stats import MemoryRouterStatsStore
from aurea.types import Policy

__all__ = [
    "Candidate",
    "GetWeights",
    "ListModels",
    "ListStats",
    "ModelReport",
    "Optimization",
    "OptimizeWeights",
    "Policy",
    "RecordOutcome",
    "Route",
    "Router",
    "RouterMsg",
    "SetWeights",
    "WeightsChange",
    "WeightsView",
]

log = structlog.get_logger("aurea.router")

TTFT_WINDOW = 512  # the latest first-token times per model behind p50/p95
_MAX_REFRESH_S = 5.0  # the table is rebuilt at least this often, so that figures decay
# What other processes sharing the store (SO_REUSEPORT siblings on one SQLite file; replicas on
# Redis) recorded or set is read back this often.
_RELOAD_S = 5.0


# -- replies -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightsView:
    weights: Weights
    defaults: bool  # no weights were ever set or optimized: the configured ones apply


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightsChange:
    weights: Weights
    previous: Weights


@dataclass(frozen=True, slots=True, kw_only=True)
class Optimization:
    weights: Weights  # the new weights (the previous ones when nothing varies)
    previous: Weights
    result: Optimized
    models: tuple[str, ...]  # the models whose figures were used
    outcomes: int  # their recorded outcomes
    applied: bool
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelReport:
    """One catalog model's figures. ``calls``: every outcome (total latency); ``first``: the
    first-token series (successes only); ``scored``: None for a model that is not permitted."""

    spec: ModelSpec
    calls: ModelStats
    first: ModelStats | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    ttft_window: int
    recent_samples: float  # what the decayed figures are worth now, in outcomes
    scored: Scored | None


# -- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Route(Ask[tuple[Candidate, ...]]):
    """Ask for the candidates of one call. ``model`` empty = choose by ``policy``."""

    model: str
    kind: str = "chat"  # chat | embedding
    policy: Policy | None = None
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ListModels(Ask[list[ModelSpec]]):
    """Ask for the catalog entries that may be served."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetWeights(Ask[WeightsView]):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SetWeights(Ask[WeightsChange]):
    """Replace the weights (stored before the reply). Invalid weights: ``InvalidRequest``."""

    weights: Weights


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizeWeights(Ask[Optimization]):
    """Weights proportional to each factor's variance across the chat models with live
    figures; ``FailedPrecondition`` with fewer than two such models."""

    apply: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordOutcome(Ask[ModelReport]):
    """An outcome observed outside Aurea (validated by the caller; the model must be in the
    catalog). ``first_token_s``: successes only, when the answer began."""

    model: str
    outcome: Outcome
    first_token_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListStats(Ask[list[ModelReport]]):
    """Every catalog model's report by name, or only those of ``models`` (unknown skipped)."""

    models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Recorded:
    """Rows the store returned for new outcomes (posted by the pump or a RecordOutcome)."""

    rows: tuple[ModelStats, ...]
    ttfts: tuple[tuple[str, float], ...] = ()
    from_pump: bool = False
    # The store's weights as the pump read them back, and the router's weights epoch before the
    # read: weights set meanwhile (a later epoch) win over what the read saw.
    weights: Mapping[str, float] | None = None
    epoch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _WeightsStored:
    weights: Weights


@dataclass(frozen=True, slots=True, kw_only=True)
class _AutoOptimize:
    """The ``routing.optimize_interval_s`` timer fired."""


RouterMsg = (
    Route
    | ListModels
    | GetWeights
    | SetWeights
    | OptimizeWeights
    | RecordOutcome
    | ListStats
    | _Recorded
    | _WeightsStored
    | _AutoOptimize
)


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


class Router(Actor[RouterMsg]):
    def __init__(
        self,
        *,
        models: Mapping[str, ModelSpec],
        settings: RoutingSettings,
        view: RouterView | None = None,
        store: RouterStatsStore | None = None,
        inbox: RecordInbox | None = None,
        health: Health | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._models = dict(models)
        self._settings = settings
        self._view = view
        self._store: RouterStatsStore = store if store is not None else MemoryRouterStatsStore()
        self._inbox = inbox if inbox is not None else RecordInbox()
        self._health = health
        self._clock = clock
        self._wall = wall_clock
        self._weights = default_weights(settings)
        self._defaults = True
        self._calls: dict[str, ModelStats] = {}
        self._first: dict[str, ModelStats] = {}
        self._ttft: dict[str, collections.deque[float]] = {}
        self._leftover: list[ModelOutcome] = []  # taken by a pump that was cancelled
        self._dirty = False
        self._published_at = -math.inf
        self._dropped_seen = 0
        self._epoch = 0  # counts weight changes, so a stale read-back never undoes one
        # The candidates each model is scored against: the permitted models of its kind.
        permitted = permitted_names(self._models, settings)
        self._pools: dict[str, list[ModelSpec]] = {}
        for name in sorted(permitted):
            self._pools.setdefault(self._models[name].kind, []).append(self._models[name])
        self._table = self._build()

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_start(self) -> None:
        # Awaited before the first message on purpose: no ask may see state not yet loaded.
        stored: dict[str, float] | None = None
        try:
            self._calls, self._first = split_rows(await self._store.all())
            stored = await self._store.get_weights()
        except Exception as exc:  # a store that cannot be read must not stop routing
            log.error("router_stats_load_failed", error=repr(exc))
        if stored is not None:
            weights = Weights.from_mapping(stored)
            if weights is None:
                log.warning("router_weights_ignored", stored=sorted(stored))
            else:
                self._weights, self._defaults = weights, False
        self._publish()
        self.spawn_child(self._pump(), name="router:pump")
        if self._settings.optimize_interval_s > 0:
            self.spawn_child(self._optimize_timer(), name="router:optimize")

    async def on_stop(self) -> None:
        left, self._leftover = self._leftover, []
        left.extend(outcomes_of(self._inbox.take()))
        if left:
            await self._persist(left)

    # -- messages --------------------------------------------------------------------------------

    async def receive(self, msg: RouterMsg) -> Any:
        match msg:
            case Route():
                return self._table.route(msg.model, msg.kind, msg.policy, msg.fallbacks)
            case ListModels():
                return self._table.permitted_models()
            case GetWeights():
                return WeightsView(weights=self._weights, defaults=self._defaults)
            case SetWeights(weights=w):
                if problems := weight_problems(w):
                    raise InvalidRequest(
                        "invalid weights: " + "; ".join(f"{f}: {d}" for f, d in problems),
                        [FieldViolation(f"weights.{f}", d) for f, d in problems],
                    )
                return Later(self._set_weights(w, self._weights))
            case OptimizeWeights(apply=apply):
                result = self._optimize()
                if not apply or result.result.weights is None:
                    return result
                return Later(self._apply_optimized(result))
            case RecordOutcome():
                if msg.model not in self._models:
                    raise InvalidRequest.field("model", "is not in the model catalog")
                return Later(self._record_one(msg))
            case ListStats(models=names):
                wanted = [n for n in names if n in self._models] if names else sorted(self._models)
                return self._reports(wanted, {}, {})
            case _Recorded():
                self._merge(msg.rows, msg.ttfts)
                if msg.weights is not None and msg.epoch == self._epoch:
                    stored = Weights.from_mapping(msg.weights)
                    if stored is not None and stored != self._weights:
                        self._weights, self._defaults = stored, False
                        self._dirty = True
                if msg.from_pump and (
                    self._dirty or self._clock() - self._published_at >= self._refresh_s()
                ):
                    self._publish()
                return None
            case _WeightsStored(weights=w):
                self._weights, self._defaults = w, False
                self._epoch += 1
                self._publish()
                return None
            case _AutoOptimize():
                return self._auto_optimize()
            case _:
                assert_never(msg)

    # -- state -----------------------------------------------------------------------------------

    def _refresh_s(self) -> float:
        s = self._settings
        return min(max(s.stats_half_life_s / 4, s.publish_interval_s), _MAX_REFRESH_S)

    def _merge(self, rows: Iterable[ModelStats], ttfts: Iterable[tuple[str, float]]) -> None:
        calls, first = split_rows(rows)
        for mine, new in ((self._calls, calls), (self._first, first)):
            for name, row in new.items():
                old = mine.get(name)
                # Rows may arrive out of order (pump and RecordOutcome); counts only grow.
                if old is None or row.count >= old.count:
                    mine[name] = row
                    self._dirty = True
        for name, ttft in ttfts:
            window = self._ttft.get(name)
            if window is None:
                window = self._ttft[name] = collections.deque(maxlen=TTFT_WINDOW)
            window.append(ttft)

    def _figures(
        self,
        pool: Sequence[ModelSpec],
        calls: Mapping[str, ModelStats],
        first: Mapping[str, ModelStats],
    ) -> list[Figures]:
        s = self._settings
        return figures_for(
            pool,
            calls,
            first,
            now=self._wall(),
            half_life_s=s.stats_half_life_s,
            min_samples=s.min_samples,
        )

    def _build(self) -> RoutingTable:
        figures: dict[str, Figures] = {}
        for pool in self._pools.values():
            for spec, fig in zip(pool, self._figures(pool, self._calls, self._first), strict=True):
                figures[spec.name] = fig
        return RoutingTable(
            models=self._models,
            settings=self._settings,
            weights=self._weights,
            figures=figures,
            health=self._health,
        )

    def _publish(self) -> None:
        self._table = self._build()
        self._dirty = False
        self._published_at = self._clock()
        if self._view is not None:
            self._view.table = self._table

    def _reports(
        self,
        names: Sequence[str],
        calls_over: Mapping[str, ModelStats],
        first_over: Mapping[str, ModelStats],
    ) -> list[ModelReport]:
        """Reports of ``names`` from the state, with ``*_over`` rows in place of the state's,
        each model scored against the permitted models of its kind now."""
        calls = {**self._calls, **calls_over}
        first = {**self._first, **first_over}
        scored: dict[str, Scored] = {}
        for pool in self._pools.values():
            figs = self._figures(pool, calls, first)
            for spec, fig, fs in zip(pool, figs, factor_scores(figs), strict=True):
                up = self._health is None or not self._health(spec)
                scored[spec.name] = Scored(
                    model=spec,
                    score=fs.combine(self._weights),
                    factors=fs,
                    live=fig.live,
                    available=up,
                )
        out: list[ModelReport] = []
        for name in names:
            spec = self._models[name]
            ordered = sorted(self._ttft.get(name, ()))
            out.append(
                ModelReport(
                    spec=spec,
                    calls=calls.get(name) or ModelStats(model=name),
                    first=first.get(name),
                    ttft_p50_s=_percentile(ordered, 50) if ordered else None,
                    ttft_p95_s=_percentile(ordered, 95) if ordered else None,
                    ttft_window=len(ordered),
                    recent_samples=effective_weight(
                        calls.get(name), self._wall(), self._settings.stats_half_life_s
                    ),
                    scored=scored.get(name),
                )
            )
        return out

    def _optimize(self) -> Optimization:
        chat = self._pools.get("chat", [])
        pool = [
            spec
            for spec, fig in zip(chat, self._figures(chat, self._calls, self._first), strict=True)
            if fig.live
        ]
        if len(pool) < 2:
            raise FailedPrecondition(
                f"OptimizeWeights needs at least two chat models with live figures "
                f"({self._settings.min_samples} or more recent outcomes each); "
                f"{len(pool)} {'has' if len(pool) == 1 else 'have'} them"
            )
        figs = self._figures(pool, self._calls, self._first)
        result = optimize(factor_scores(figs))
        names = tuple(spec.name for spec in pool)
        outcomes = sum(self._calls[n].count for n in names)
        if result.weights is None:
            return Optimization(
                weights=self._weights,
                previous=self._weights,
                result=result,
                models=names,
                outcomes=outcomes,
                applied=False,
                reason=f"no factor varies across the {len(names)} models: weights unchanged",
            )
        var = ", ".join(f"{f.value} {v:.4g}" for f, v in result.variances.items())
        return Optimization(
            weights=result.weights,
            previous=self._weights,
            result=result,
            models=names,
            outcomes=outcomes,
            applied=False,
            reason=f"weights proportional to the variance of each factor across "
            f"{len(names)} models ({var})",
        )

    def _auto_optimize(self) -> Later | None:
        try:
            result = self._optimize()
        except FailedPrecondition as exc:
            log.debug("router_optimize_skipped", reason=exc.message)
            return None
        if result.result.weights is None:
            return None
        return Later(self._apply_optimized(result))

    # -- I/O, in child tasks -----------------------------------------------------------------------

    async def _persist(
        self, outcomes: Sequence[ModelOutcome]
    ) -> tuple[tuple[ModelStats, ...], tuple[tuple[str, float], ...]]:
        """Fold ``outcomes`` into the store in order; the rows it returns and the new ttfts.
        Raises the store's error (the outcomes not yet written are lost, and logged)."""
        store, half_life = self._store, self._settings.stats_half_life_s
        rows: list[ModelStats] = []
        ttfts: list[tuple[str, float]] = []
        todo = collections.deque(outcomes)
        try:
            while todo:
                o = todo.popleft()  # taken before the write: at most once
                rows.append(
                    await store.record(o.model, o.outcome, now=self._wall(), half_life_s=half_life)
                )
                if o.first_token_s is not None:
                    first = Outcome(success=True, latency_s=o.first_token_s)
                    rows.append(
                        await store.record(
                            first_token_key(o.model), first, now=self._wall(), half_life_s=half_life
                        )
                    )
                if o.outcome.ttft_s is not None:
                    ttfts.append((o.model, o.outcome.ttft_s))
        except asyncio.CancelledError:
            self._leftover.extend(todo)
            raise
        except Exception as exc:
            log.error("router_stats_write_failed", error=repr(exc), lost_outcomes=len(todo) + 1)
            raise
        return tuple(rows), tuple(ttfts)

    async def _pump(self) -> None:
        inbox = self._inbox
        reloaded = self._clock()
        while True:
            try:
                async with asyncio.timeout(self._refresh_s()):
                    await inbox.wait()
            except TimeoutError:
                pass
            rows: tuple[ModelStats, ...] = ()
            ttfts: tuple[tuple[str, float], ...] = ()
            items = inbox.take()
            if items:
                with contextlib.suppress(Exception):  # logged; the next batch tries again
                    rows, ttfts = await self._persist(outcomes_of(items))
            weights: dict[str, float] | None = None
            epoch = self._epoch
            if self._clock() - reloaded >= _RELOAD_S:
                reloaded = self._clock()
                try:
                    rows = (*rows, *await self._store.all())
                    weights = await self._store.get_weights()
                except Exception as exc:  # the next reload tries again
                    log.warning("router_stats_reload_failed", error=repr(exc))
            self.ref.post(
                _Recorded(rows=rows, ttfts=ttfts, from_pump=True, weights=weights, epoch=epoch)
            )
            if inbox.dropped > self._dropped_seen:
                log.warning("router_records_dropped", dropped=inbox.dropped - self._dropped_seen)
                self._dropped_seen = inbox.dropped
            await asyncio.sleep(self._settings.publish_interval_s)

    async def _optimize_timer(self) -> None:
        while True:
            await asyncio.sleep(self._settings.optimize_interval_s)
            self.ref.post(_AutoOptimize())

    async def _record_one(self, msg: RecordOutcome) -> ModelReport:
        outcome = ModelOutcome(
            model=msg.model,
            outcome=msg.outcome,
            first_token_s=msg.first_token_s if msg.outcome.success else None,
        )
        rows, ttfts = await self._persist([outcome])
        self.ref.post(_Recorded(rows=rows, ttfts=ttfts))
        self._inbox.poke()  # the pump republishes soon, within the publish interval
        calls, first = split_rows(rows)
        return self._reports([msg.model], calls, first)[0]

    async def _set_weights(self, weights: Weights, previous: Weights) -> WeightsChange:
        await self._store.set_weights(weights.as_dict(), now=self._wall())
        self.ref.post(_WeightsStored(weights=weights))  # handled before the asker's next ask
        return WeightsChange(weights=weights, previous=previous)

    async def _apply_optimized(self, result: Optimization) -> Optimization:
        await self._store.set_weights(result.weights.as_dict(), now=self._wall())
        self.ref.post(_WeightsStored(weights=result.weights))
        log.info(
            "router_weights_optimized",
            weights=result.weights.as_dict(),
            previous=result.previous.as_dict(),
            models=list(result.models),
        )
        return Optimization(
            weights=result.weights,
            previous=result.previous,
            result=result.result,
            models=result.models,
            outcomes=result.outcomes,
            applied=True,
            reason=result.reason,
        )
