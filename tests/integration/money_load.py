"""A load that keeps its own books, for tests that break Redis under two servers and then check
the money: callers alternate unary calls and streams over a few jobs and both servers, add up
the cost each answer told them, and accept only an answer or UNAVAILABLE (a fail-closed
refusal, which costs nothing). ``reconcile`` then waits for each job's blocks to go back and
returns its spend and reservation beside what its callers were told."""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Sequence

import grpc

from aurea.v1 import inference_pb2 as ipb
from aurea.v1 import inference_pb2_grpc, ledger_pb2_grpc
from aurea.v1 import ledger_pb2 as lpb

WAIT_S = 60.0  # a bound on each wait, never a performance claim


def config(url: str, *, prefix: str, cluster: bool = False) -> str:
    """An ``aurea serve`` configuration: the simulated provider, state in Redis at ``url``, no
    cache (every call is charged), short leases (a lost block returns soon)."""
    return f"""
[providers.simulated]
kind = "simulated"
max_concurrency = 1000
options = {{ token_delay_ms = 1, min_tokens = 4, max_tokens = 16 }}

[redis]
url = "{url}"
key_prefix = "{prefix}"
cluster = {"true" if cluster else "false"}

[cache]
enabled = false

[ledger]
lease_ttl_s = 4.0
"""


class Load:
    """``callers`` closed-loop callers of ``calls_each`` calls over ``targets``; the second half
    of each caller's calls waits for ``halfway`` (set by the test once its fault is over)."""

    def __init__(
        self, targets: Sequence[str], jobs: Sequence[str], *, callers: int, calls_each: int
    ) -> None:
        self.channels = [grpc.aio.insecure_channel(t) for t in targets]
        self._stubs = [inference_pb2_grpc.InferenceServiceStub(c) for c in self.channels]
        self.jobs = tuple(jobs)
        self.callers = callers
        self.calls_each = calls_each
        self.told: collections.Counter[str] = collections.Counter()
        self.codes: collections.Counter[str] = collections.Counter()
        self.halfway = asyncio.Event()

    async def run(self) -> None:
        await asyncio.gather(*(self._caller(i) for i in range(self.callers)))

    async def _caller(self, i: int) -> None:
        rng = random.Random(i)
        for n in range(self.calls_each):
            stub, job = self._stubs[(i + n) % len(self._stubs)], rng.choice(self.jobs)
            req = ipb.GenerateRequest(prompt=f"call {i}.{n}", job_id=job)
            try:
                if n % 2:
                    final = None
                    request = ipb.GenerateStreamRequest(request=req)
                    async for ev in stub.GenerateStream(request, timeout=30):
                        if ev.HasField("final"):
                            final = ev.final
                    assert final is not None, "a stream ended without its final event"
                    self.told[job] += final.cost_nanos
                else:
                    reply = await stub.Generate(req, timeout=30)
                    self.told[job] += reply.cost_nanos  # (not `+= await`: read after the wait)
                self.codes["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                self.codes[exc.code().name] += 1
                assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc.details()
                await asyncio.sleep(0.01)
            if n == self.calls_each // 2:
                await self.halfway.wait()

    async def reconcile(self) -> list[tuple[str, int, int, int]]:
        """Per job: (job, spent, reserved, told), once its reservation is back to 0 (bounded)."""
        ledger = ledger_pb2_grpc.LedgerServiceStub(self.channels[0])
        out = []
        for job in self.jobs:
            view = (await ledger.GetJob(lpb.GetJobRequest(job_id=job), timeout=10)).job
            for _ in range(int(WAIT_S / 0.1)):  # idle blocks go back to the job
                if view.reserved_nanos == 0:
                    break
                await asyncio.sleep(0.1)
                view = (await ledger.GetJob(lpb.GetJobRequest(job_id=job), timeout=10)).job
            out.append((job, view.cost_nanos, view.reserved_nanos, self.told[job]))
        return out

    async def aclose(self) -> None:
        for c in self.channels:
            await c.close()
