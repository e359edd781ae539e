"""Shared state through a Redis Cluster failover (issue 11): two ``aurea serve`` processes on a
real cluster of three primaries, each with a replica; while 16 callers run (unary and streams,
three jobs), every replica takes over its primary's slots (``CLUSTER FAILOVER``, the graceful
manual failover an operator runs for maintenance). Calls answer or are refused UNAVAILABLE (the
ledger fails closed while a shard moves), never anything else, and afterwards every job's spend
equals, to the nano-dollar, the sum of the costs its callers were told, with nothing reserved:
the clients followed the slots to their new primaries and no write was lost or doubled."""

from __future__ import annotations

import asyncio
import collections
import random

import grpc
import pytest

from aurea.testing.redis import RedisCluster
from aurea.v1 import inference_pb2 as ipb
from aurea.v1 import inference_pb2_grpc, ledger_pb2_grpc
from aurea.v1 import ledger_pb2 as lpb
from tests.conftest import SpawnServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

JOBS = ("f0", "f1", "f2")
CALLERS = 16
CALLS_EACH = 100  # a bound on the load, never a performance claim
WAIT_S = 60.0


def _config(url: str) -> str:
    return f"""
[providers.simulated]
kind = "simulated"
max_concurrency = 1000
options = {{ token_delay_ms = 1, min_tokens = 4, max_tokens = 16 }}

[redis]
url = "{url}"
key_prefix = "failover"
cluster = true

[cache]
enabled = false

[ledger]
lease_ttl_s = 4.0
"""


async def test_calls_and_money_survive_a_failover_of_every_shard(
    spawn_server: SpawnServer,
) -> None:
    if not RedisCluster.available():
        pytest.skip("redis-server and redis-cli are not installed (.ci/run installs them)")
    with RedisCluster.start(replicas=1) as cluster:
        servers = [spawn_server(config=_config(cluster.url)) for _ in range(2)]
        channels = [grpc.aio.insecure_channel(s.target) for s in servers]
        stubs = [inference_pb2_grpc.InferenceServiceStub(c) for c in channels]
        told: collections.Counter[str] = collections.Counter()
        codes: collections.Counter[str] = collections.Counter()
        moved = asyncio.Event()

        async def caller(i: int) -> None:
            rng = random.Random(i)
            for n in range(CALLS_EACH):
                stub, job = stubs[(i + n) % 2], rng.choice(JOBS)
                req = ipb.GenerateRequest(prompt=f"call {i}.{n}", job_id=job)
                try:
                    if n % 2:
                        final = None
                        request = ipb.GenerateStreamRequest(request=req)
                        async for ev in stub.GenerateStream(request, timeout=30):
                            if ev.HasField("final"):
                                final = ev.final
                        assert final is not None
                        told[job] += final.cost_nanos
                    else:
                        reply = await stub.Generate(req, timeout=30)
                        told[job] += reply.cost_nanos  # (not `+= await`: read after the wait)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    codes[exc.code().name] += 1
                    assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc.details()
                    await asyncio.sleep(0.01)
                if n == CALLS_EACH // 2:  # the second half runs on the new primaries
                    await moved.wait()

        async def failovers() -> None:
            await asyncio.sleep(0.5)
            replicas = [n for n in cluster.nodes if cluster.role(n) == "slave"]
            assert len(replicas) == 3
            for replica in replicas:
                await asyncio.to_thread(cluster.failover, replica)
            moved.set()

        try:
            await asyncio.gather(failovers(), *(caller(i) for i in range(CALLERS)))
            assert codes["OK"] > CALLERS * CALLS_EACH // 2  # the load really ran
            ledger = ledger_pb2_grpc.LedgerServiceStub(channels[0])
            for job in JOBS:
                view = (await ledger.GetJob(lpb.GetJobRequest(job_id=job), timeout=10)).job
                for _ in range(int(WAIT_S / 0.1)):  # bounded: idle blocks go back to the job
                    if view.reserved_nanos == 0:
                        break
                    await asyncio.sleep(0.1)
                    view = (await ledger.GetJob(lpb.GetJobRequest(job_id=job), timeout=10)).job
                assert (job, view.cost_nanos, view.reserved_nanos) == (job, told[job], 0)
        finally:
            for c in channels:
                await c.close()
            for s in servers:
                s.stop()
