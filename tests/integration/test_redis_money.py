"""Money across a Redis outage (issue 11): two ``aurea serve`` processes share one budget per job
in Redis while calls run; Redis is shut down (saving its data, as an operator's restart of a
persistent Redis would) and started again mid-load. Calls refused meanwhile are UNAVAILABLE and
cost nothing; afterwards every job's spend equals, to the nano-dollar, the sum of the costs its
callers were told, and nothing stays reserved: no settle lost, none counted twice by the
retries that carried the ledger's writes over the outage."""

from __future__ import annotations

import asyncio

import pytest
from money_load import Load, config

from aurea.testing.redis import RedisServer
from tests.conftest import SpawnServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_every_job_pays_what_its_callers_were_told_across_an_outage(
    spawn_server: SpawnServer,
) -> None:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with RedisServer.start() as redis:
        servers = [spawn_server(config=config(redis.url, prefix="money")) for _ in range(2)]
        load = Load([s.target for s in servers], ("m0", "m1", "m2"), callers=16, calls_each=120)

        async def outage() -> None:
            await asyncio.sleep(1.0)
            redis.stop(save=True)
            await asyncio.sleep(2.0)
            redis.resume()
            load.halfway.set()  # the second half of the calls runs after Redis is back

        try:
            await asyncio.gather(outage(), load.run())
            assert load.codes["OK"] > load.callers * load.calls_each // 2  # the load really ran
            for job, spent, reserved, told in await load.reconcile():
                assert (job, spent, reserved) == (job, told, 0)
        finally:
            await load.aclose()
            for s in servers:
                s.stop()
