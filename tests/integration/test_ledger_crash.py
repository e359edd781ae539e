"""kill -9 of an ``aurea serve`` process with calls in flight, then a restart on the same SQLite
file: what was spent is intact (every answer a client received was charged durably before it
went out), and the dead calls' reservations are returned, never counted as spent (the server
keeps reservations in memory and writes only spend to its own SQLite file, so none is left)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from aurea.v1 import inference_pb2 as ipb
from aurea.v1 import inference_pb2_grpc, ledger_pb2_grpc
from aurea.v1 import ledger_pb2 as lpb
from tests.conftest import ServeProcess, SpawnServer

pytestmark = pytest.mark.integration

SHORT, LONG = 4, 400  # tokens; at 25 ms a token, long answers are still running at the kill


def _config(db: Path) -> str:
    return f"""
[providers.simulated]
kind = "simulated"
max_concurrency = 100
options = {{ token_delay_ms = 25, min_tokens = {LONG}, max_tokens = {LONG} }}

[ledger]
store = "sqlite"
sqlite_path = "{db}"
"""


async def _final_cost(stub: inference_pb2_grpc.InferenceServiceStub, max_tokens: int) -> int:
    req = ipb.GenerateStreamRequest(
        request=ipb.GenerateRequest(prompt="crash test", job_id="crash", max_tokens=max_tokens)
    )
    async for ev in stub.GenerateStream(req, timeout=60):
        if ev.WhichOneof("event") == "final":
            return int(ev.final.cost_nanos)
    raise AssertionError("no final event")


async def _job(target: str) -> lpb.Job:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        reply = await stub.GetJob(lpb.GetJobRequest(job_id="crash"), timeout=10)
        job: lpb.Job = reply.job
        return job


async def test_kill_9_keeps_spend_and_returns_reservations(
    spawn_server: SpawnServer, tmp_path: Path
) -> None:
    db = tmp_path / "ledger.db"
    first: ServeProcess = spawn_server(config=_config(db))
    async with grpc.aio.insecure_channel(first.target) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        long_calls = [asyncio.ensure_future(_final_cost(stub, LONG)) for _ in range(8)]
        short_costs = await asyncio.gather(*(_final_cost(stub, SHORT) for _ in range(12)))
        before = await _job(first.target)
        assert before.calls_in_flight == 8 and before.reserved_nanos > 0
        assert before.cost_nanos == sum(short_costs)
        first.proc.kill()  # SIGKILL: no drain, no flush
        first.proc.wait(timeout=10)
        for call in long_calls:
            with pytest.raises(grpc.aio.AioRpcError):
                await call
    second = spawn_server(config=_config(db))
    try:
        after = await _job(second.target)
        assert after.cost_nanos == sum(short_costs)  # every received answer, to the nano-dollar
        assert after.reserved_nanos == 0 and after.calls_in_flight == 0
        assert after.calls == len(short_costs)
        assert after.budget_nanos == before.budget_nanos
    finally:
        second.stop()
