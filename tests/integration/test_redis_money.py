"""Money across a Redis outage (issue 11): two ``aurea serve`` processes share one budget per job
in Redis while calls run; Redis is shut down (saving its data, as an operator's restart of a
persistent Redis would) and started again mid-load. Calls refused meanwhile are UNAVAILABLE and
cost nothing; afterwards every job's spend equals, to the nano-dollar, the sum of the costs its
callers were told, and nothing stays reserved: no settle lost, none counted twice by the
retries that carried the ledger's writes over the outage."""

from __future__ import annotations

import asyncio
import collections
import random

import grpc
import pytest

from aurea.testing.redis import RedisServer
from aurea.v1 import inference_pb2 as ipb
from aurea.v1 import inference_pb2_grpc, ledger_pb2_grpc
from aurea.v1 import ledger_pb2 as lpb
from tests.conftest import SpawnServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

JOBS = ("m0", "m1", "m2")
CALLERS = 16
CALLS_EACH = 120  # a bound on the load, never a performance claim
WAIT_S = 60.0


def _config(url: str) -> str:
    return f"""
[providers.simulated]
kind = "simulated"
max_concurrency = 1000
options = {{ token_delay_ms = 1, min_tokens = 4, max_tokens = 16 }}

[redis]
url = "{url}"
key_prefix = "money"

[cache]
enabled = false

[ledger]
lease_ttl_s = 4.0
"""


async def test_every_job_pays_what_its_callers_were_told_across_an_outage(
    spawn_server: SpawnServer,
) -> None:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with RedisServer.start() as redis:
        servers = [spawn_server(config=_config(redis.url)) for _ in range(2)]
        channels = [grpc.aio.insecure_channel(s.target) for s in servers]
        stubs = [inference_pb2_grpc.InferenceServiceStub(c) for c in channels]
        told: collections.Counter[str] = collections.Counter()
        codes: collections.Counter[str] = collections.Counter()
        outage_over = asyncio.Event()

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
                if n == CALLS_EACH // 2:  # the second half runs after Redis is back
                    await outage_over.wait()

        async def outage() -> None:
            await asyncio.sleep(1.0)
            redis.stop(save=True)
            await asyncio.sleep(2.0)
            redis.resume()
            outage_over.set()

        try:
            await asyncio.gather(outage(), *(caller(i) for i in range(CALLERS)))
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
