"""The shared ``RouterStatsStore`` on Redis: one hash per model (its own hash tag) folded by a
Lua script (``aurea.stores.router_stats.fold`` in Lua), and the router's weights in one hash, so
what one replica records every other reads.

The model index (a set) sits in another slot than the models; a model joins it (once per
process) beside its first fold, and a model listed but never folded is simply skipped. Folds
are sent as plain script calls, concurrently, never in a pipeline: redis-py checks a pipeline's
scripts with ``SCRIPT EXISTS`` first (a round trip each time), and a Redis Cluster pipeline
refuses scripts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from aurea.stores.redis._client import RedisClient, fmt, num, text
from aurea.stores.router_stats import ModelStats, Outcome, check_outcome, check_weights

__all__ = ["RedisRouterStatsStore"]

_FIELDS = (
    "count",
    "successes",
    "latency_sum_s",
    "cost_sum_nanos",
    "ttft_count",
    "ttft_sum_s",
    "decayed_weight",
    "decayed_latency_s",
    "decayed_successes",
    "last_updated",
)
_INTS = frozenset({"count", "successes", "cost_sum_nanos", "ttft_count"})
_LISTED_MAX = 10_000  # model names this process remembers having listed

# KEYS: the model's hash; ARGV: now, half_life_s, then per outcome: success (0|1), latency_s,
# cost_nanos, ttft_s ('' when none). Folds them in order; returns the figures after each fold,
# in _FIELDS order, as text (one list per outcome).
_RECORD = """
local now = tonumber(ARGV[1])
local half = tonumber(ARGV[2])
local f = function(x) return string.format('%.17g', x) end
local out = {}
for i = 3, #ARGV, 4 do
  local ok = tonumber(ARGV[i])
  local latency = tonumber(ARGV[i + 1])
  local ttft = tonumber(ARGV[i + 3])
  local h = redis.call('HMGET', KEYS[1], 'decayed_weight', 'decayed_latency_s',
    'decayed_successes', 'last_updated', 'latency_sum_s', 'ttft_sum_s')
  local dw = tonumber(h[1]) or 0
  local dl = tonumber(h[2]) or 0
  local ds = tonumber(h[3]) or 0
  local last = tonumber(h[4]) or now
  local lat_sum = tonumber(h[5]) or 0
  local ttft_sum = tonumber(h[6]) or 0
  local decay = 2 ^ (-math.max(0, now - last) / half)
  redis.call('HINCRBY', KEYS[1], 'count', 1)
  redis.call('HINCRBY', KEYS[1], 'successes', ok)
  redis.call('HINCRBY', KEYS[1], 'cost_sum_nanos', ARGV[i + 2])
  if ttft then
    redis.call('HINCRBY', KEYS[1], 'ttft_count', 1)
    ttft_sum = ttft_sum + ttft
  end
  redis.call('HSET', KEYS[1],
    'latency_sum_s', f(lat_sum + latency),
    'ttft_sum_s', f(ttft_sum),
    'decayed_weight', f(dw * decay + 1.0),
    'decayed_latency_s', f(dl * decay + latency),
    'decayed_successes', f(ds * decay + ok),
    'last_updated', f(math.max(now, last)))
  out[#out + 1] = redis.call('HMGET', KEYS[1], 'count', 'successes', 'latency_sum_s',
    'cost_sum_nanos', 'ttft_count', 'ttft_sum_s', 'decayed_weight', 'decayed_latency_s',
    'decayed_successes', 'last_updated')
end
return out
"""

# KEYS: the weights hash; ARGV: name, value, name, value, ...
_SET_WEIGHTS = """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV))
return 0
"""


def _stats(model: str, values: list[Any]) -> ModelStats:
    figures: dict[str, Any] = {}
    for name, raw in zip(_FIELDS, values, strict=True):
        if raw is None:
            raw = b"0"
        figures[name] = int(raw) if name in _INTS else num(raw)
    return ModelStats(model=model, **figures)


class RedisRouterStatsStore:
    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._record = client.script(_RECORD)
        self._listed: set[str] = set()  # models this process has put in the index
        self._set_weights = client.script(_SET_WEIGHTS)
        self._index = client.key("rs", "{routing}", "models")
        self._weights = client.key("rs", "{routing}", "weights")

    def _key(self, model: str) -> str:
        return self._client.key("rs", f"{{model:{model}}}")

    async def record(
        self, model: str, outcome: Outcome, *, now: float, half_life_s: float
    ) -> ModelStats:
        (row,) = await self.record_many([(model, outcome)], now=now, half_life_s=half_life_s)
        return row

    async def record_many(
        self, outcomes: Sequence[tuple[str, Outcome]], *, now: float, half_life_s: float
    ) -> tuple[ModelStats, ...]:
        """``record`` of each (model, outcome) in order: the figures after each fold. One
        script per model folds that model's outcomes (atomic per model; the models' scripts
        run concurrently), and a model this process has not listed yet joins the index beside
        them. No pipeline, so redis-py sends no ``SCRIPT EXISTS`` before the scripts."""
        for model, outcome in outcomes:
            check_outcome(model, outcome, now, half_life_s)
        per_model: dict[str, tuple[list[int], list[str]]] = {}
        for i, (model, outcome) in enumerate(outcomes):
            at, args = per_model.setdefault(model, ([], [fmt(now), fmt(half_life_s)]))
            at.append(i)
            args += [
                str(int(outcome.success)),
                fmt(outcome.latency_s),
                str(outcome.cost_nanos),
                "" if outcome.ttft_s is None else fmt(outcome.ttft_s),
            ]
        if not per_model:
            return ()
        new = [m for m in per_model if m not in self._listed]

        async def op() -> list[Any]:
            folds = [self._record(keys=[self._key(m)], args=a) for m, (_, a) in per_model.items()]
            if new:
                folds.append(self._client.redis.sadd(self._index, *new))
            return list(await asyncio.gather(*folds))

        answers = await self._client.call("router stats record", op)
        if len(self._listed) + len(new) > _LISTED_MAX:
            self._listed.clear()  # listing again is idempotent (SADD)
        self._listed.update(new)
        rows: list[ModelStats | None] = [None] * len(outcomes)
        for (model, (at, _)), folded in zip(per_model.items(), answers, strict=False):
            for i, values in zip(at, folded, strict=True):
                rows[i] = _stats(model, list(values))
        return tuple(r for r in rows if r is not None)

    async def get(self, model: str) -> ModelStats | None:
        redis = self._client.redis
        values = await self._client.call(
            "router stats get", lambda: redis.hmget(self._key(model), list(_FIELDS))
        )
        return None if values[0] is None else _stats(model, values)

    async def all(self) -> tuple[ModelStats, ...]:
        redis = self._client.redis

        async def op() -> tuple[ModelStats, ...]:
            names = sorted(text(m) for m in await redis.smembers(self._index))
            async with redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hmget(self._key(name), list(_FIELDS))
                rows = await pipe.execute()
            return tuple(_stats(name, row) for name, row in zip(names, rows, strict=True) if row[0])

        return await self._client.call("router stats all", op)

    async def get_weights(self) -> dict[str, float] | None:
        redis = self._client.redis
        raw = await self._client.call("router weights get", lambda: redis.hgetall(self._weights))
        return {text(k): num(v) for k, v in raw.items()} if raw else None

    async def set_weights(self, weights: Mapping[str, float], *, now: float) -> None:
        check_weights(weights)
        args: list[str] = []
        for name, value in weights.items():
            args += [name, fmt(value)]
        await self._client.call(
            "router weights set", lambda: self._set_weights(keys=[self._weights], args=args)
        )
