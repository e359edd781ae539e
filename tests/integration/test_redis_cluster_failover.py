"""Shared state through a Redis Cluster failover (issue 11): two ``aurea serve`` processes on a
real cluster of three primaries, each with a replica; while 16 callers run (unary and streams,
three jobs), every replica takes over its primary's slots (``CLUSTER FAILOVER``, the graceful
manual failover an operator runs for maintenance). Calls answer or are refused UNAVAILABLE (the
ledger fails closed while a shard moves), never anything else, and afterwards every job's spend
equals, to the nano-dollar, the sum of the costs its callers were told, with nothing reserved:
the clients followed the slots to their new primaries and no write was lost or doubled."""

from __future__ import annotations

import asyncio

import pytest
from money_load import Load, config

from aurea.testing.redis import RedisCluster
from tests.conftest import SpawnServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def test_calls_and_money_survive_a_failover_of_every_shard(
    spawn_server: SpawnServer,
) -> None:
    if not RedisCluster.available():
        pytest.skip("redis-server and redis-cli are not installed (.ci/run installs them)")
    with RedisCluster.start(replicas=1) as cluster:
        conf = config(cluster.url, prefix="failover", cluster=True)
        servers = [spawn_server(config=conf) for _ in range(2)]
        load = Load([s.target for s in servers], ("f0", "f1", "f2"), callers=16, calls_each=100)

        async def failovers() -> None:
            await asyncio.sleep(0.5)
            replicas = [n for n in cluster.nodes if cluster.role(n) == "slave"]
            assert len(replicas) == 3
            for replica in replicas:
                await asyncio.to_thread(cluster.failover, replica)
            assert [cluster.role(n) for n in replicas] == ["master"] * 3
            load.halfway.set()  # the second half of the calls runs on the new primaries

        try:
            await asyncio.gather(failovers(), load.run())
            assert load.codes["OK"] > load.callers * load.calls_each // 2  # the load really ran
            for job, spent, reserved, told in await load.reconcile():
                assert (job, spent, reserved) == (job, told, 0)
        finally:
            await load.aclose()
            for s in servers:
                s.stop()
