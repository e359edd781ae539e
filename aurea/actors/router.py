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
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, assert_never

import structlog

from aurea.actors._router_messages import (
    GetWeights,
    ListModels,
    ListStats,
    OptimizeWeights,
    RecordOutcome,
    Route,
    RouterMsg,
    SetWeights,
    WeightsChange,
    WeightsView,
    _AutoOptimize,
    _Recorded,
    _WeightsStored,
)
from aurea.config import ModelSpec, RoutingSettings
from aurea.errors import FailedPrecondition, FieldViolation, InvalidRequest
from aurea.routing import (
    Candidate,
    Health,
    RouterView,
    Weights,
    first_token_key,
    split_rows,
    weight_problems,
)
from aurea.routing._records import ModelOutcome, RecordInbox, outcomes_of
from aurea.routing._state import ModelReport, Optimization, RouterState
from aurea.runtime import Actor, Later
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

_MAX_REFRESH_S = 5.0  # the table is rebuilt at least this often, so that figures decay
# What other processes sharing the store (SO_REUSEPORT siblings on one SQLite file; replicas on
# Redis) recorded or set is read back this often.
_RELOAD_S = 5.0


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
        self._settings = settings
        self._view = view
        self._store: RouterStatsStore = store if store is not None else MemoryRouterStatsStore()
        self._inbox = inbox if inbox is not None else RecordInbox()
        self._clock = clock
        self._wall = wall_clock
        self._state = RouterState(
            models=models, settings=settings, health=health, wall_clock=wall_clock
        )
        self._leftover: list[ModelOutcome] = []  # taken by a pump that was cancelled
        self._published_at = -math.inf
        self._dropped_seen = 0
        self._table = self._state.table()

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_start(self) -> None:
        # Awaited before the first message on purpose: no ask may see state not yet loaded.
        state = self._state
        stored: dict[str, float] | None = None
        try:
            state.merge(await self._store.all())
            stored = await self._store.get_weights()
        except Exception as exc:  # a store that cannot be read must not stop routing
            log.error("router_stats_load_failed", error=repr(exc))
        if stored is not None:
            weights = Weights.from_mapping(stored)
            if weights is None:
                log.warning("router_weights_ignored", stored=sorted(stored))
            else:
                state.set_weights(weights)
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
        state = self._state
        match msg:
            case Route():
                return self._table.route(msg.model, msg.kind, msg.policy, msg.fallbacks)
            case ListModels():
                return self._table.permitted_models()
            case GetWeights():
                return WeightsView(weights=state.weights, defaults=state.defaults)
            case SetWeights(weights=w):
                if problems := weight_problems(w):
                    raise InvalidRequest(
                        "invalid weights: " + "; ".join(f"{f}: {d}" for f, d in problems),
                        [FieldViolation(f"weights.{f}", d) for f, d in problems],
                    )
                return Later(self._set_weights(w, state.weights))
            case OptimizeWeights(apply=apply):
                result = state.optimize()
                if not apply or result.result.weights is None:
                    return result
                return Later(self._apply_optimized(result))
            case RecordOutcome():
                if msg.model not in state.models:
                    raise InvalidRequest.field("model", "is not in the model catalog")
                return Later(self._record_one(msg))
            case ListStats(models=names):
                known = state.models
                return state.reports([n for n in names if n in known] if names else sorted(known))
            case _Recorded():
                state.merge(msg.rows, msg.ttfts)
                if msg.weights is not None:
                    state.read_back(msg.weights, msg.epoch)
                if msg.from_pump and (
                    state.dirty or self._clock() - self._published_at >= self._refresh_s()
                ):
                    self._publish()
                return None
            case _WeightsStored(weights=w):
                state.set_weights(w)
                self._publish()
                return None
            case _AutoOptimize():
                return self._auto_optimize()
            case _:
                assert_never(msg)

    def _refresh_s(self) -> float:
        s = self._settings
        return min(max(s.stats_half_life_s / 4, s.publish_interval_s), _MAX_REFRESH_S)

    def _publish(self) -> None:
        self._table = self._state.table()
        self._published_at = self._clock()
        if self._view is not None:
            self._view.table = self._table

    def _auto_optimize(self) -> Later | None:
        try:
            result = self._state.optimize()
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
        ttfts = tuple((o.model, o.outcome.ttft_s) for o in outcomes if o.outcome.ttft_s is not None)
        record_many = getattr(store, "record_many", None)
        if record_many is not None:
            # A store that folds a batch at once (SQLite: one transaction; Redis: one script per
            # model): one write per batch, not one per outcome. Shielded: a cancelled pump
            # still lets the batch land, so what it took is written once, not lost.
            pairs: list[tuple[str, Outcome]] = []
            for o in outcomes:
                pairs.append((o.model, o.outcome))
                if o.first_token_s is not None:
                    first = Outcome(success=True, latency_s=o.first_token_s)
                    pairs.append((first_token_key(o.model), first))
            try:
                batch: tuple[ModelStats, ...] = await asyncio.shield(
                    record_many(pairs, now=self._wall(), half_life_s=half_life)
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("router_stats_write_failed", error=repr(exc), lost_outcomes=len(outcomes))
                raise
            return batch, ttfts
        rows: list[ModelStats] = []
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
        except asyncio.CancelledError:
            self._leftover.extend(todo)
            raise
        except Exception as exc:
            log.error("router_stats_write_failed", error=repr(exc), lost_outcomes=len(todo) + 1)
            raise
        return tuple(rows), ttfts

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
            epoch = self._state.epoch
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
        return self._state.reports([msg.model], calls, first)[0]

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
        return dataclasses.replace(result, applied=True)
