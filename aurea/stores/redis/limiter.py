"""The shared ``LimiterStore`` on Redis: the GCRA step of ``aurea.stores.limiter.decide`` in one
Lua script over all of a call's quotas, so replicas sharing the server keep one set of limits.

Per key one hash ``{tat, held}`` (wall seconds). The arithmetic is the same IEEE double
arithmetic as ``decide`` (floats cross as their shortest round-trip text and come back as
``%.17g``), so the contract suite holds to the last bit. A key expires a minute after its bucket
is full again: an absent key is a full bucket, so nothing is lost by forgetting it, and the
minute of slack covers any clock skew between the replicas and the server.

On a Redis Cluster a script's keys must share one slot: callers tag a call's quotas with one
hash tag (``{MODEL}:rpm``, ``{key:NAME}:tpm``); a key without a tag gets its scope as one
(``m:rpm`` -> ``{m}:rpm``), so one scope's quotas meet in one script. Quotas of several scopes in
one call (no caller does this, the contract allows it) are decided per shard and the granted
ones refunded if any refuses (``_acquire_across_slots``). A refund has nothing to decide across
keys: on a cluster it sends one script per slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence

from redis.crc import key_slot

from aurea.stores._common import (
    StoreUnavailable,
    WallClock,
    check_finite,
    check_id,
    wall_clock,
)
from aurea.stores.limiter import Admission, Quota, check_quotas
from aurea.stores.redis._client import RedisClient, fmt, num

__all__ = ["RedisLimiterStore"]

_KEEP_S = 60  # a key outlives its full bucket by this much (skew between clocks)

# KEYS: the quota keys; ARGV: now, keep_s, then (cost, rate, burst) per key.
# Returns {granted 0|1, retry_after_s text, index of the limiting key (1-based, 0: none)}.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local n = #KEYS
local tats = {}
local refused, wait_best, limiting = false, 0, 0
for i = 1, n do
  local cost = tonumber(ARGV[3 * i])
  local rate = tonumber(ARGV[3 * i + 1])
  local burst = tonumber(ARGV[3 * i + 2])
  local st = redis.call('HMGET', KEYS[i], 'tat', 'held')
  local tat = tonumber(st[1]) or now
  local held = tonumber(st[2]) or now
  local granted, wait
  if now < held then
    granted, wait = false, held - now
    tats[i] = tat
  else
    local interval = 1.0 / rate
    local new_tat = math.max(tat, now) + cost * interval
    local allow_at = new_tat - burst * interval
    if allow_at <= now + 1e-6 then
      granted, wait = true, 0
      tats[i] = new_tat
    elseif cost > burst then
      granted, wait = false, math.huge
    else
      granted, wait = false, allow_at - now
    end
  end
  if not granted and (not refused or wait > wait_best) then
    refused, wait_best, limiting = true, wait, i
  end
end
if refused then
  return {0, string.format('%.17g', wait_best), limiting}
end
for i = 1, n do
  redis.call('HSET', KEYS[i], 'tat', string.format('%.17g', tats[i]))
  local held = tonumber(redis.call('HGET', KEYS[i], 'held')) or now
  local until_s = math.max(tats[i], held) - now + keep
  redis.call('EXPIRE', KEYS[i], math.max(1, math.ceil(until_s)))
end
return {1, '0', 0}
"""

# KEYS: the quota keys; ARGV: now, then (cost, rate) per key.
_REFUND = """
local now = tonumber(ARGV[1])
for i = 1, #KEYS do
  local tat = tonumber(redis.call('HGET', KEYS[i], 'tat'))
  if tat then
    local cost = tonumber(ARGV[2 * i])
    local rate = tonumber(ARGV[2 * i + 1])
    redis.call('HSET', KEYS[i], 'tat', string.format('%.17g', math.max(tat - cost / rate, now)))
  end
end
return 0
"""

# KEYS: the key; ARGV: until, keep_s, now (the caller's, for the key's expiry only).
_HOLD = """
local until_s = tonumber(ARGV[1])
local held = tonumber(redis.call('HGET', KEYS[1], 'held'))
if held == nil or until_s > held then
  redis.call('HSET', KEYS[1], 'held', string.format('%.17g', until_s))
  held = until_s
end
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat')) or held
local ttl = math.ceil(math.max(held, tat) - tonumber(ARGV[3]) + tonumber(ARGV[2]))
redis.call('EXPIRE', KEYS[1], math.max(1, ttl))
return 0
"""


class RedisLimiterStore:
    """GCRA buckets on a Redis server that every replica shares."""

    def __init__(self, client: RedisClient, *, wall: WallClock = wall_clock) -> None:
        self._client = client
        self._wall = wall  # only for how long a held key is kept
        self._acquire = client.script(_ACQUIRE)
        self._refund = client.script(_REFUND)
        self._hold = client.script(_HOLD)
        self._prefix = client.key("lim", "")

    def _key(self, key: str) -> str:
        if self._client.cluster and "{" not in key:
            scope, sep, what = key.rpartition(":")
            key = f"{{{scope}}}:{what}" if sep else f"{{{key}}}"
        return self._prefix + key

    def _keys(self, quotas: Sequence[Quota]) -> list[str]:
        keys = [self._key(q.key) for q in quotas]
        if self._client.cluster and len({key_slot(k.encode()) for k in keys}) > 1:
            raise ValueError("quotas span Redis Cluster slots: " + ", ".join(q.key for q in quotas))
        return keys

    def _by_slot(self, quotas: Sequence[Quota]) -> list[list[Quota]]:
        """The quotas grouped by their keys' cluster slot, in order of first appearance."""
        groups: dict[int, list[Quota]] = {}
        for q in quotas:
            groups.setdefault(key_slot(self._key(q.key).encode()), []).append(q)
        return list(groups.values())

    async def acquire(self, quotas: Sequence[Quota], *, now: float) -> Admission:
        check_quotas(quotas, now)
        if not quotas:
            return Admission(granted=True)
        groups = self._by_slot(quotas) if self._client.cluster else [list(quotas)]
        if len(groups) == 1:
            return await self._acquire_slot(quotas, now)
        return await self._acquire_across_slots(quotas, groups, now)

    async def _acquire_slot(self, quotas: Sequence[Quota], now: float) -> Admission:
        keys = self._keys(quotas)
        args: list[str] = [fmt(now), str(_KEEP_S)]
        for q in quotas:
            args += [str(q.cost), fmt(q.rate_per_s), fmt(q.burst)]
        granted, wait, limiting = await self._client.call(
            "limiter acquire", lambda: self._acquire(keys=keys, args=args)
        )
        if int(granted):
            return Admission(granted=True)
        retry = num(wait)
        return Admission(
            granted=False,
            retry_after_s=math.inf if math.isinf(retry) else retry,
            limiting_key=quotas[int(limiting) - 1].key,
        )

    async def _acquire_across_slots(
        self, quotas: Sequence[Quota], groups: list[list[Quota]], now: float
    ) -> Admission:
        """All or none over quotas on several shards (callers that tag a call's quotas alike
        never come here): each shard decides its quotas at once; if any refuses, the shards
        that granted are refunded. Between the two, others see those units taken: a refusal
        may be stricter than one server's for a moment, never looser (a refund that fails
        leaves the units taken until they refill)."""
        results = await asyncio.gather(
            *(self._acquire_slot(group, now) for group in groups), return_exceptions=True
        )
        admissions = [r for r in results if isinstance(r, Admission)]
        failure = next((r for r in results if not isinstance(r, Admission)), None)
        if failure is None and all(a.granted for a in admissions):
            return Admission(granted=True)
        granted = [
            g
            for g, r in zip(groups, results, strict=True)
            if isinstance(r, Admission) and r.granted
        ]
        with contextlib.suppress(StoreUnavailable):
            await asyncio.gather(*(self._refund_slot(group, now) for group in granted))
        if failure is not None:
            raise failure
        order = {q.key: i for i, q in reversed(list(enumerate(quotas)))}
        # As one script decides: the longest wait, the earliest key among equal waits.
        return max(
            (a for a in admissions if not a.granted),
            key=lambda a: (a.retry_after_s, -order[a.limiting_key]),
        )

    async def refund(self, quotas: Sequence[Quota], *, now: float) -> None:
        check_quotas(quotas, now)
        if not quotas:
            return
        # Each key's refund stands alone (nothing to decide across keys), so on a cluster the
        # quotas go one script per slot, concurrently.
        groups = self._by_slot(quotas) if self._client.cluster else [list(quotas)]
        await asyncio.gather(*(self._refund_slot(group, now) for group in groups))

    async def _refund_slot(self, quotas: Sequence[Quota], now: float) -> None:
        keys = self._keys(quotas)
        args: list[str] = [fmt(now)]
        for q in quotas:
            args += [str(q.cost), fmt(q.rate_per_s)]
        await self._client.call("limiter refund", lambda: self._refund(keys=keys, args=args))

    async def hold(self, key: str, until: float) -> None:
        check_id("key", key)
        check_finite("until", until)
        # The key's expiry needs a "now"; the hold itself never depends on it.
        args = [fmt(until), str(_KEEP_S), fmt(self._wall())]
        await self._client.call(
            "limiter hold", lambda: self._hold(keys=[self._key(key)], args=args)
        )
