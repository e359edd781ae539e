"""The Redis stores' keys, checked for Redis Cluster: every key a Lua script touches arrives in
KEYS (never built inside Lua), every script call's keys share one hash slot, and no cross-job
hot key takes every spend (the hourly summary lives with each job).

The script check reads each script's Lua source; the slot check records the keys of every
script call a store makes against a real redis-server and hashes them with CRC16 (the same
function Redis Cluster uses).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from store_helpers import T0

import aurea.stores.redis as redis_stores
from aurea.stores import (
    ChargeOp,
    ExpireOp,
    NewTask,
    Quota,
    ReleaseOp,
    ReserveOp,
    Spend,
    TaskState,
)
from aurea.stores.redis import (
    RedisClient,
    RedisLedgerStore,
    RedisLimiterStore,
    RedisRouterStatsStore,
    RedisTaskQueueStore,
    open_redis,
)
from aurea.stores.router_stats import Outcome
from aurea.testing.redis import RedisServer


def _crc16(data: bytes) -> int:
    """CRC16-XMODEM, as in the Redis Cluster specification."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot(key: str) -> int:
    """The key's hash slot: of its first non-empty ``{tag}`` when it has one."""
    raw = key.encode()
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return _crc16(raw) % 16384


def test_slot_is_redis_cluster_keyslot() -> None:
    # Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
    assert slot("foo") == 12182
    assert slot("{user1000}.following") == slot("{user1000}.followers") == 3443
    assert slot("foo{}{bar}") == _crc16(b"foo{}{bar}") % 16384
    assert slot("p:led:{job:a}") == slot("p:led:{job:a}:l:x") != slot("p:led:{job:b}")


# -- the Lua sources ------------------------------------------------------------------------


def _call_args(source: str, start: int) -> list[str]:
    """The top-level arguments of the call whose '(' is at ``start``."""
    depth, args, current = 0, [], []
    quote: str | None = None
    for ch in source[start + 1 :]:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                args.append("".join(current).strip())
                return args
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    raise AssertionError("unbalanced redis.call")


# Commands whose first argument is not their key (a subcommand, or keys after an option): the
# check cannot tell what they touch, so a script may not use them.
_KEY_ELSEWHERE = {"XGROUP", "XREADGROUP", "XREAD", "XINFO", "OBJECT", "MEMORY", "SORT", "EVAL"}


def keys_built_in_lua(source: str) -> list[str]:
    """Each ``redis.call`` (``pcall``, ``pcall(redis.call, ...)``) whose key is not a plain
    ``KEYS[i]``, each command whose key the check cannot find, and each key derived from one."""
    bad = []
    for m in re.finditer(r"redis\.p?call\s*\(|pcall\s*\(\s*redis\.p?call\s*,", source):
        if m.group().endswith(","):  # pcall(redis.call, cmd, key, ...): its arguments follow
            args = _call_args(source, source.rindex("(", m.start(), m.end()))[1:]
        else:
            args = _call_args(source, m.end() - 1)
        command = args[0].strip("'\"").upper() if args else ""
        if command in _KEY_ELSEWHERE:
            bad.append(f"{args[0]} (its key is not its first argument)")
        elif len(args) >= 2 and not re.fullmatch(r"KEYS\[[^\]]+\]", args[1]):
            bad.append(f"{args[0]} {args[1]}")
    bad += re.findall(r"KEYS\[[^\]]*\]\s*\.\.", source)
    return bad


# Beside the stores, the modules that hold Redis scripts of their own (the cache's flight lock).
_OTHER_SCRIPT_MODULES = ("aurea.cache._redis",)


def _scripts() -> Iterator[Any]:
    seen: set[str] = set()  # a script a store imports is listed once, where it is defined
    names = [
        f"{redis_stores.__name__}.{i.name}" for i in pkgutil.iter_modules(redis_stores.__path__)
    ]
    for module_name in [*names, *_OTHER_SCRIPT_MODULES]:
        module = importlib.import_module(module_name)
        short = module_name.rpartition(".")[2]
        for name, value in vars(module).items():
            if isinstance(value, str) and "redis.call" in value and value not in seen:
                seen.add(value)
                yield pytest.param(value, id=f"{short}.{name}")


def test_the_check_sees_keys_built_in_lua() -> None:
    assert keys_built_in_lua("redis.call('HGET', KEYS[1], 'f')") == []
    assert keys_built_in_lua("local x = redis.call('HMGET', KEYS[2], ARGV[1], 'b')") == []
    assert keys_built_in_lua("redis.call('GET', P .. 'x')") != []
    assert keys_built_in_lua("redis.call('ZADD', jkey(job), 1, m)") != []
    assert keys_built_in_lua("local k = KEYS[1] .. ':m'") != []
    assert keys_built_in_lua("redis.call('HSET', KEYS[i], 'tat', string.format('%d', 1))") == []
    assert keys_built_in_lua("pcall(redis.call, 'DEL', P .. 'x')") != []
    assert keys_built_in_lua("pcall(redis.call, 'DEL', KEYS[1])") == []
    assert keys_built_in_lua("redis.call('XGROUP', 'CREATE', KEYS[1], 'g', '$')") != []


def test_scripts_are_found() -> None:
    labels = {p.id for p in _scripts()}
    assert {"limiter._ACQUIRE", "router_stats._RECORD"} <= labels
    assert {"_ledger_lua.JOB", "_ledger_lua.CLAIM", "_ledger_lua.SETTLE"} <= labels
    assert {"_redis._CLAIM", "_redis._RENEW", "_redis._RELEASE"} <= labels
    assert {label for label in labels if label.startswith("_tasks_lua.")}


@pytest.mark.parametrize("source", list(_scripts()))
def test_every_key_arrives_in_keys(source: str) -> None:
    assert keys_built_in_lua(source) == []


# -- the keys of each call ------------------------------------------------------------------


@pytest.fixture
def script_keys(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The KEYS of every script call made while the test runs."""
    seen: list[list[str]] = []
    original = AsyncScript.__call__

    async def record(
        self: AsyncScript, keys: Any = None, args: Any = None, client: Any = None
    ) -> Any:
        seen.append([k.decode() if isinstance(k, bytes) else str(k) for k in keys or []])
        return await original(self, keys=keys, args=args, client=client)

    monkeypatch.setattr(AsyncScript, "__call__", record)
    # A store may also queue a script by SHA in a pipeline (the ledger's MULTI does).
    original_evalsha = Pipeline.evalsha

    def record_evalsha(self: Pipeline, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        keys = keys_and_args[:numkeys]
        seen.append([k.decode() if isinstance(k, bytes) else str(k) for k in keys])
        return original_evalsha(self, sha, numkeys, *keys_and_args)

    monkeypatch.setattr(Pipeline, "evalsha", record_evalsha)
    return seen


@pytest.fixture
async def client(redis_server: RedisServer) -> Any:
    c = open_redis(redis_server.url, prefix=f"t{uuid.uuid4().hex[:12]}")
    yield c
    await c.aclose()


def _one_slot_each(calls: list[list[str]]) -> None:
    assert calls
    for keys in calls:
        assert keys, "a script call with no KEYS builds its keys in Lua"
        assert len({slot(k) for k in keys}) == 1, keys


async def test_limiter_calls_stay_in_one_slot(
    client: RedisClient, script_keys: list[list[str]]
) -> None:
    store = RedisLimiterStore(client)
    # As the callers build them: the quotas of one acquire share the key's or the model's tag.
    quotas = (
        Quota(key="{key:k1}:rpm", cost=1, rate_per_s=1.0, burst=10),
        Quota(key="{key:k1}:tpm", cost=5, rate_per_s=100.0, burst=1000),
    )
    assert (await store.acquire(quotas, now=T0)).granted
    await store.refund(quotas, now=T0)
    await store.hold("{model:m}:rpm", T0 + 5)
    _one_slot_each(script_keys)


async def test_router_stats_calls_stay_in_one_slot(
    client: RedisClient, script_keys: list[list[str]]
) -> None:
    store = RedisRouterStatsStore(client)
    outcome = Outcome(success=True, latency_s=0.5, cost_nanos=10)
    await store.record("m1", outcome, now=T0, half_life_s=60.0)
    await store.set_weights({"m1": 1.0, "m2": 2.0}, now=T0)
    _one_slot_each(script_keys)


async def test_task_calls_stay_in_one_slot(
    client: RedisClient, script_keys: list[list[str]]
) -> None:
    store = RedisTaskQueueStore(client)
    for task_id, pool in (("a", "p1"), ("b", "p1"), ("c", "p2"), ("d", "p2")):
        await store.enqueue(NewTask(task_id=task_id, kind="k", pool=pool), now=T0)
    a, b = await store.claim("p1", "w", 10.0, now=T0, limit=2)
    assert await store.heartbeat(a.task_id, a.attempts, 10.0, now=T0 + 1)
    assert await store.ack(a.task_id, a.attempts, "ok", now=T0 + 2) is not None
    assert await store.nack(b.task_id, b.attempts, "no", retry_at=None, now=T0 + 2) is not None
    (c,) = await store.claim("p2", "w", 10.0, now=T0)
    assert await store.cancel(c.task_id, now=T0 + 3) is not None
    assert await store.cancel("d", now=T0 + 3) is not None
    # A claim in p1 after c's lease expired also reaps p2, with p2's keys.
    assert await store.claim("p1", "w", 10.0, now=T0 + 20) == ()
    assert (await store.get("c")).state is TaskState.CANCELLED  # type: ignore[union-attr]
    assert await store.purge(finished_before=T0 + 30) == 4
    pools = {k.rsplit(":", 1)[1] for keys in script_keys for k in keys if ":run:" in k}
    assert pools == {"p1", "p2"}
    _one_slot_each(script_keys)


async def test_ledger_calls_stay_in_one_slot(
    client: RedisClient, script_keys: list[list[str]]
) -> None:
    store = RedisLedgerStore(client)
    await store.reserve("j", "l1", 10, 30.0, now=T0, default_budget_nanos=None)
    await store.reserve("k", "l2", 10, 30.0, now=T0, default_budget_nanos=None)
    await store.settle("l1", Spend(cost_nanos=5), now=T0 + 1)  # by lease id alone
    await store.extend("l2", 5, 30.0, now=T0 + 1, job_id="k")
    # One call for several jobs, a sweep included: still one slot per script.
    results = await store.apply(
        (
            ReserveOp(
                job_id="j",
                lease_id="l3",
                amount_nanos=7,
                ttl_s=1.0,
                now=T0 + 2,
                default_budget_nanos=None,
            ),
            ChargeOp(job_id="k", spend=Spend(cost_nanos=3), now=T0 + 2, default_budget_nanos=None),
            ReleaseOp(lease_id="l2", now=T0 + 2),
            ExpireOp(now=T0 + 100),
        )
    )
    assert results[-1] == 1  # l3 expired
    await store.consume(
        [("", ChargeOp(job_id="m", spend=Spend(cost_nanos=1), now=T0, default_budget_nanos=None))]
    )
    _one_slot_each(script_keys)
    assert {slot(k) for keys in script_keys for k in keys} >= {
        slot(client.key("led", "{job:j}")),
        slot(client.key("led", "{job:k}")),
        slot(client.key("led", "{job:m}")),
    }
    view = await store.get_job("j")
    assert view is not None and (view.spent_nanos, view.reserved_nanos) == (5, 0)


async def test_hourly_summary_is_kept_per_job(client: RedisClient) -> None:
    store = RedisLedgerStore(client)
    for job in ("a", "b"):
        await store.apply(
            (
                ChargeOp(
                    job_id=job,
                    spend=Spend(cost_nanos=7, input_tokens=3),
                    now=T0,
                    default_budget_nanos=None,
                    model="m",
                    provider="p",
                ),
            )
        )
    # No cross-job key takes every spend: each job's buckets live in its own slot.
    assert await client.redis.exists(client.key("led", "{ledger}", "sum")) == 0
    for job in ("a", "b"):
        assert await client.redis.exists(client.key("led", f"{{job:{job}}}", "sum")) == 1
    (row,) = (await store.summary()).by_model
    assert (row.calls, row.input_tokens, row.cost_nanos) == (2, 6, 14)
