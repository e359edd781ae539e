"""Acceptance (issue 11, Redis Cluster): two ``aurea serve`` processes whose ``[redis] url`` is
one node of a real 3-node Redis Cluster (``cluster = true``, started by the test) behave as one:
a job's budget is never overshot under 100 concurrent calls and its reservations go back to 0,
a rate limit set on both admits at most one bucket's worth, and an answer cached through one
is a hit through the other (and cleared through either, across every shard).

Never a wall-clock assertion: every wait is a bounded poll, and the one elapsed time measured
(the rate-limit test) only widens the bound by what the bucket refilled meanwhile."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator

import grpc
import pytest
import redis

from aurea.testing.redis import RedisCluster
from aurea.v1 import admin_pb2 as apb
from aurea.v1 import admin_pb2_grpc, inference_pb2_grpc, ledger_pb2_grpc
from aurea.v1 import inference_pb2 as ipb
from aurea.v1 import ledger_pb2 as lpb
from tests.conftest import ServeProcess, SpawnServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MODEL = "sim-small"
TOKENS = 8
WAIT_S = 30.0  # a bound on each wait, never a performance claim
UNCACHED = 0.7  # a temperature the cache leaves alone: every call reaches the provider


def _config(redis_url: str) -> str:
    return f"""
[providers.simulated]
kind = "simulated"
max_concurrency = 1000
options = {{ token_delay_ms = 2, min_tokens = {TOKENS}, max_tokens = {TOKENS} }}

[redis]
url = "{redis_url}"
key_prefix = "clu"
cluster = true

[limits]
max_wait_s = 0

[ledger]
lease_ttl_s = 2.0
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    if not RedisCluster.available():
        pytest.skip("redis-server or redis-cli is not installed (.ci/run installs them)")
    with RedisCluster.start() as started:
        yield started


@pytest.fixture(scope="module")
def two(spawn_server: SpawnServer, cluster: RedisCluster) -> Iterator[list[ServeProcess]]:
    # Each server is given a different node: each finds the others and the slots itself.
    servers = [
        spawn_server(config=_config(f"redis://127.0.0.1:{port}/0")) for port in cluster.ports[:2]
    ]
    yield servers
    for s in servers:
        s.stop()


async def _generate(
    target: str, job: str, *, prompt: str = "call 0000", temperature: float = UNCACHED
) -> tuple[grpc.StatusCode, ipb.GenerateResponse | None, str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        request = ipb.GenerateRequest(
            prompt=prompt, model=MODEL, job_id=job, max_tokens=TOKENS, temperature=temperature
        )
        try:
            reply = await stub.Generate(request, timeout=30)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), None, exc.details() or ""
        return grpc.StatusCode.OK, reply, ""


async def _job(target: str, job: str) -> lpb.Job:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await ledger_pb2_grpc.LedgerServiceStub(channel).GetJob(
            lpb.GetJobRequest(job_id=job), timeout=10
        )
        result: lpb.Job = reply.job
        return result


async def _reserved_back_to_zero(target: str, job: str) -> lpb.Job:
    view = await _job(target, job)
    for _ in range(int(WAIT_S / 0.1)):  # bounded: blocks go back once idle (or expired)
        if view.reserved_nanos == 0:
            break
        await asyncio.sleep(0.1)
        view = await _job(target, job)
    return view


async def _set_rpm(servers: list[ServeProcess], rpm: int) -> None:
    for s in servers:
        async with grpc.aio.insecure_channel(s.target) as channel:
            await admin_pb2_grpc.AdminServiceStub(channel).SetModelLimits(
                apb.SetModelLimitsRequest(model=MODEL, rpm=rpm), timeout=10
            )


async def test_a_budget_is_never_overshot_across_two_servers_on_the_cluster(
    two: list[ServeProcess],
) -> None:
    code, probe, _ = await _generate(two[0].target, "clu-probe")
    assert code is grpc.StatusCode.OK and probe is not None and probe.cost_nanos > 0
    budget = 40 * probe.cost_nanos  # 100 calls of that size cannot all fit
    async with grpc.aio.insecure_channel(two[0].target) as channel:
        await ledger_pb2_grpc.LedgerServiceStub(channel).SetBudget(
            lpb.SetBudgetRequest(job_id="clu-budget", budget_nanos=budget), timeout=10
        )
    results = await asyncio.gather(
        *(_generate(two[i % 2].target, "clu-budget", prompt=f"call {i:04d}") for i in range(100))
    )
    codes = {c for c, _, _ in results}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes  # the budget did bind
    charged = sum(r.cost_nanos for c, r, _ in results if c is grpc.StatusCode.OK and r)
    for s in two:  # both read the same figures, from the job's shard
        view = await _reserved_back_to_zero(s.target, "clu-budget")
        assert view.cost_nanos == charged <= budget
        assert view.reserved_nanos == 0


async def test_a_rate_limit_is_shared_across_two_servers_on_the_cluster(
    two: list[ServeProcess],
) -> None:
    await _set_rpm(two, 30)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(_generate(two[i % 2].target, "clu-rpm", prompt=f"call {i:04d}") for i in range(80))
        )
        elapsed = time.monotonic() - started
    finally:
        await _set_rpm(two, 0)
    ok = sum(1 for code, _, _ in results if code is grpc.StatusCode.OK)
    refused = [d for code, _, d in results if code is grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert ok + len(refused) == len(results), {c for c, _, _ in results}
    # One bucket of 30 for both, refilling one request every 2 s: at most 30 plus the refill.
    assert 0 < ok <= 30 + math.ceil(elapsed / 2)
    assert refused and "rpm" in refused[0]


async def test_an_answer_cached_through_one_server_is_a_hit_through_the_other(
    two: list[ServeProcess],
) -> None:
    one, other = two[0].target, two[1].target
    code, first, _ = await _generate(one, "clu-cache", prompt="cached", temperature=0.0)
    assert code is grpc.StatusCode.OK and first is not None and not first.cache_hit
    code, second, _ = await _generate(other, "clu-cache", prompt="cached", temperature=0.0)
    assert code is grpc.StatusCode.OK and second is not None
    assert second.cache_hit and second.text == first.text
    async with grpc.aio.insecure_channel(other) as channel:
        cleared = await admin_pb2_grpc.AdminServiceStub(channel).ClearCache(
            apb.ClearCacheRequest(), timeout=10
        )
    assert cleared.entries_removed >= 1
    code, third, _ = await _generate(one, "clu-cache", prompt="cached", temperature=0.0)
    assert code is grpc.StatusCode.OK and third is not None and not third.cache_hit


def test_the_servers_state_is_spread_over_the_shards(
    cluster: RedisCluster, two: list[ServeProcess]
) -> None:
    # Jobs, models, the cache's entries and the task queue each sit in their own hash slot, so
    # the servers' keys land on several nodes (one node holding them all would mean a client
    # that ignores the cluster's slot map, which the nodes would refuse with MOVED).
    held = []
    for port in cluster.ports:
        node = redis.Redis(host="127.0.0.1", port=port)
        try:
            held.append(sum(1 for _ in node.scan_iter(match="clu:*", count=1000)))
        finally:
            node.close()
    assert sum(1 for n in held if n) >= 2, held
    for server in two:
        lines = server.log_text().splitlines()
        assert any("redis_connected" in line and '"cluster": true' in line for line in lines)
