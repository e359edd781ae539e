"""``aurea serve --workers N`` on one port with one Redis: the parent starts N servers that share
the port (SO_REUSEPORT) and one state, restarts a worker that dies, and forwards SIGTERM so
every worker drains and the parent exits 0."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator

import grpc
import pytest

from aurea.testing.redis import RedisServer
from aurea.v1 import inference_pb2 as ipb
from aurea.v1 import inference_pb2_grpc, ledger_pb2_grpc
from aurea.v1 import ledger_pb2 as lpb
from tests.conftest import SpawnServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WAIT_S = 60.0  # a bound on each wait, never a performance claim


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with RedisServer.start() as server:
        yield server


def _config(url: str) -> str:
    return f"""
[providers.simulated]
kind = "simulated"
options = {{ token_delay_ms = 1, min_tokens = 4, max_tokens = 4 }}

[redis]
url = "{url}"
key_prefix = "workers"

[cache]
enabled = false
"""


def _pids(log: str) -> list[int]:
    found = re.findall(r"workers started \(pids ([0-9 ]+)\)", log)
    return [int(p) for p in found[-1].split()] if found else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _calls(target: str, n: int) -> int:
    cost = 0
    for _ in range(n):  # a channel per call: the kernel picks a worker per connection
        async with grpc.aio.insecure_channel(target) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            r = await stub.Generate(
                ipb.GenerateRequest(prompt="hi", job_id="workers", max_tokens=4), timeout=30
            )
            cost += r.cost_nanos
    return cost


async def test_two_workers_share_the_port_and_one_ledger(
    spawn_server: SpawnServer, redis: RedisServer
) -> None:
    parent = spawn_server(config=_config(redis.url), args=["--workers", "2"])
    pids: list[int] = []
    deadline = time.monotonic() + WAIT_S
    while len(pids) < 2:  # bounded
        assert time.monotonic() < deadline, parent.log_tail()
        pids = _pids(parent.log_text())
        await asyncio.sleep(0.05)
    assert parent.proc.pid not in pids and all(_alive(p) for p in pids)

    cost = await asyncio.gather(*(_calls(parent.target, 10) for _ in range(4)))
    async with grpc.aio.insecure_channel(parent.target) as channel:
        job = await ledger_pb2_grpc.LedgerServiceStub(channel).GetJob(
            lpb.GetJobRequest(job_id="workers"), timeout=10
        )
    assert job.job.cost_nanos == sum(cost)  # one ledger, whichever worker answered
    assert job.job.calls == 40

    # A worker killed on its own is started again; the port keeps answering meanwhile.
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + WAIT_S
    while "starting it again" not in parent.log_text():  # bounded
        assert time.monotonic() < deadline, parent.log_tail()
        await asyncio.sleep(0.05)
    assert await _calls(parent.target, 5) > 0

    parent.proc.send_signal(signal.SIGTERM)
    assert parent.wait_exit() == 0
    assert not _alive(pids[1])
