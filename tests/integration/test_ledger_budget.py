"""The cost ledger through gRPC against a real in-process server and a fake OpenAI upstream that
counts requests: budgets are never overshot under concurrency, cancellation and deadlines;
reservations always return; a stream crossing the budget stops there; refusals happen before
any byte goes upstream and carry the job's figures."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as make_settings
from aurea.testing.fakes import FakeOpenAI
from aurea.v1 import inference_pb2 as ipb
from aurea.v1 import inference_pb2_grpc, ledger_pb2_grpc
from aurea.v1 import ledger_pb2 as lpb

pytestmark = pytest.mark.integration

KEY_ENV = "LEDGER_E2E_OPENAI_KEY"
SHORT = "one two three four five six seven eight nine ten eleven twelve"
# Long words: Aurea's per-delta estimate (4 characters a token) runs far ahead of the max_tokens
# the lease was sized for, so leases must grow mid-stream, and some cannot.
LONG = " ".join(["incomprehensibilities"] * 12)
MAX_TOKENS = 12


def _reply(prompt: str) -> str:
    return LONG if prompt.startswith("long") else SHORT


@dataclass
class Rig:
    server: RunningServer
    fake: FakeOpenAI
    inference: inference_pb2_grpc.InferenceServiceStub
    ledger: ledger_pb2_grpc.LedgerServiceStub


@pytest_asyncio.fixture(params=["memory", "sqlite"])
async def rig(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Rig]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    ledger = {"store": request.param, "sqlite_path": str(tmp_path / "ledger.db")}
    async with FakeOpenAI(token_delay_s=0.002, reply=_reply) as fake:
        settings = make_settings(
            {
                "providers": {
                    "up": {
                        "kind": "openai",
                        "base_url": fake.base_url,
                        "api_key_env": KEY_ENV,
                        "max_concurrency": 5000,
                    }
                },
                "models": {
                    "m": {
                        "provider": "up",
                        "upstream": "gpt-4o-mini",
                        "input_usd_per_mtok": "1",
                        "output_usd_per_mtok": "2",
                    }
                },
                "routing": {"default_model": "m"},
                "runtime": {"mailbox_capacity": 10_000},
                "retry": {"max_retries": 0},
                "ledger": ledger,
            }
        )
        async with running_server(settings) as rs:
            yield Rig(
                rs,
                fake,
                inference_pb2_grpc.InferenceServiceStub(rs.channel),
                ledger_pb2_grpc.LedgerServiceStub(rs.channel),
            )


@dataclass
class Outcome:
    kind: str  # completed | stopped | refused | cancelled | deadline
    cost: int = 0
    text: str = ""
    events: list[str] = field(default_factory=list)
    reason: str = ""


async def _stream(rig: Rig, prompt: str, job: str, deadline_s: float | None = None) -> Outcome:
    req = ipb.GenerateStreamRequest(
        request=ipb.GenerateRequest(prompt=prompt, job_id=job, max_tokens=MAX_TOKENS)
    )
    events: list[str] = []
    text = []
    try:
        async for ev in rig.inference.GenerateStream(req, timeout=deadline_s):
            kind = ev.WhichOneof("event")
            events.append(kind)
            if kind == "delta":
                text.append(ev.delta.text)
            elif kind == "final":
                stopped = ev.final.finish_reason == ipb.FINISH_REASON_BUDGET_EXCEEDED
                return Outcome(
                    "stopped" if stopped else "completed",
                    ev.final.cost_nanos,
                    "".join(text),
                    events,
                )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not events:
            return Outcome("refused", events=events, reason=exc.details() or "")
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Outcome("deadline", events=events)
        if exc.code() == grpc.StatusCode.CANCELLED:
            return Outcome("cancelled", events=events)
        raise AssertionError(
            f"unexpected status {exc.code()}: {exc.details()} after {events}"
        ) from exc
    raise AssertionError(f"a stream ended without a final event: {events}")


async def _settled(rig: Rig, job: str) -> lpb.Job:
    """The job once nothing of it is in flight (cancelled calls unwind on the server a moment
    after the client gave up): bounded polling, never a timing assertion."""
    for _ in range(500):
        job_pb: lpb.Job = (await rig.ledger.GetJob(lpb.GetJobRequest(job_id=job))).job
        if job_pb.calls_in_flight == 0:
            return job_pb
        await asyncio.sleep(0.02)
    raise AssertionError(f"calls still in flight on {job}: {job_pb}")


def _worst_case(rig: Rig) -> int:
    return int(rig.server.settings.models["m"].output_nanos_per_mtok * MAX_TOKENS / 1e6)


async def test_a_thousand_streams_never_overshoot_the_budget(rig: Rig) -> None:
    # Enough for roughly 150 worst cases; 1,000 calls arrive at once.
    budget = 150 * (_worst_case(rig) + 40_000)
    await rig.ledger.SetBudget(lpb.SetBudgetRequest(job_id="crowd", budget_nanos=budget))
    prompts = [("long " if i % 3 == 0 else "short ") + str(i) for i in range(1000)]
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(_stream(rig, p, "crowd") for p in prompts)), timeout=300
    )
    kinds = {k: sum(o.kind == k for o in outcomes) for k in ("completed", "stopped", "refused")}
    assert sum(kinds.values()) == 1000, kinds
    assert kinds["completed"] and kinds["refused"], kinds
    job = await _settled(rig, "crowd")
    assert job.reserved_nanos == 0 and job.calls_in_flight == 0
    assert job.cost_nanos <= budget
    # Every answer's cost is what the job was charged, to the nano-dollar.
    assert job.cost_nanos == sum(o.cost for o in outcomes)
    # A refused call never reached the upstream; every admitted one did, once.
    assert rig.fake.request_count == kinds["completed"] + kinds["stopped"]
    for o in outcomes:
        if o.kind == "refused":
            assert "crowd" in o.reason and not o.events
        else:
            assert o.events[0] == "started"


async def test_cancelled_and_expiring_calls_return_their_reservations(rig: Rig) -> None:
    budget = 150 * (_worst_case(rig) + 40_000)
    await rig.ledger.SetBudget(lpb.SetBudgetRequest(job_id="churn", budget_nanos=budget))
    rng = random.Random(5)
    rig.fake.token_delay_s = 0.01

    async def one(i: int) -> Outcome:
        prompt = ("long " if i % 3 == 0 else "short ") + str(i)
        r = rng.random()
        if r < 0.3:  # cancelled by the client at a random moment
            task = asyncio.ensure_future(_stream(rig, prompt, "churn"))
            await asyncio.sleep(rng.random() * 0.15)
            task.cancel()
            try:
                return await task
            except asyncio.CancelledError:
                return Outcome("cancelled")
        if r < 0.45:  # a deadline that expires mid-answer (or before admission)
            return await _stream(rig, prompt, "churn", deadline_s=0.02 + rng.random() * 0.1)
        return await _stream(rig, prompt, "churn")

    outcomes = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(1000))), 300)
    kinds = {o.kind for o in outcomes}
    assert kinds <= {"completed", "stopped", "refused", "cancelled", "deadline"}
    assert {"completed", "cancelled", "deadline"} <= kinds, kinds
    job = await _settled(rig, "churn")
    assert job.reserved_nanos == 0 and job.calls_in_flight == 0
    assert job.cost_nanos <= budget
    # What finished is charged exactly; abandoned calls add what they consumed, within budget.
    assert job.cost_nanos >= sum(o.cost for o in outcomes)


async def test_a_stream_crossing_the_budget_stops_there_within_it(rig: Rig) -> None:
    worst = _worst_case(rig)
    # The worst case (at max_tokens) fits, but the long words' estimate grows past it.
    budget = worst + 60_000
    await rig.ledger.SetBudget(lpb.SetBudgetRequest(job_id="edge", budget_nanos=budget))
    out = await _stream(rig, "long answer please", "edge")
    assert out.kind == "stopped", out
    assert 0 < len(out.text) < len(LONG)
    assert out.cost <= budget  # the whole remaining budget, at most
    job = await _settled(rig, "edge")
    assert job.cost_nanos == out.cost and job.reserved_nanos == 0
    # And the job is now spent: the next call is refused before reaching the upstream.
    before = rig.fake.request_count
    refused = await _stream(rig, "short again", "edge")
    assert refused.kind == "refused" and rig.fake.request_count == before


async def test_generate_past_the_budget_returns_its_answer_charged_within_it(rig: Rig) -> None:
    await rig.ledger.SetBudget(lpb.SetBudgetRequest(job_id="unary", budget_nanos=10**9))
    r = await rig.inference.Generate(
        ipb.GenerateRequest(prompt="short one", job_id="unary", max_tokens=MAX_TOKENS)
    )
    assert r.finish_reason in (ipb.FINISH_REASON_STOP, ipb.FINISH_REASON_LENGTH)
    job = (await rig.ledger.GetJob(lpb.GetJobRequest(job_id="unary"))).job
    assert job.cost_nanos == r.cost_nanos and job.reserved_nanos == 0
    # The provider bills far more than the worst case Aurea reserved (hidden reasoning tokens
    # beyond max_tokens): the whole answer is already generated, so it is returned, marked
    # BUDGET_EXCEEDED, and charged only what the budget still covered.
    budget = _worst_case(rig) + 30_000
    await rig.ledger.SetBudget(lpb.SetBudgetRequest(job_id="over", budget_nanos=budget))
    rig.fake.reasoning_tokens = 1000
    r = await rig.inference.Generate(
        ipb.GenerateRequest(prompt="short two", job_id="over", max_tokens=MAX_TOKENS)
    )
    assert r.finish_reason == ipb.FINISH_REASON_BUDGET_EXCEEDED
    assert r.text and r.usage.reasoning_tokens == 1000
    job = (await rig.ledger.GetJob(lpb.GetJobRequest(job_id="over"))).job
    assert job.cost_nanos == r.cost_nanos <= budget and job.reserved_nanos == 0
    # A stream billed the same way ends BUDGET_EXCEEDED too, its charge within the budget.
    await rig.ledger.SetBudget(lpb.SetBudgetRequest(job_id="over-s", budget_nanos=budget))
    out = await _stream(rig, "short three", "over-s")
    assert out.kind == "stopped"
    job = await _settled(rig, "over-s")
    assert job.cost_nanos <= budget and job.reserved_nanos == 0


async def test_refusal_carries_the_job_figures_before_any_byte_goes_upstream(
    rig: Rig, details: Callable[[grpc.RpcError], Any]
) -> None:
    await rig.ledger.SetBudget(lpb.SetBudgetRequest(job_id="broke", budget_nanos=0))
    before = rig.fake.request_count
    stream = rig.inference.GenerateStream(
        ipb.GenerateStreamRequest(request=ipb.GenerateRequest(prompt="hi", job_id="broke"))
    )
    for call in (
        rig.inference.Generate(ipb.GenerateRequest(prompt="hi", job_id="broke")),
        _first(stream),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        d = details(info.value)
        assert d.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert d.reason == "BUDGET_EXCEEDED"
        assert d.quota_failure is not None
        v = d.quota_failure.violations[0]
        assert v.subject == "job:broke"
        assert v.quota_value == 0
        assert dict(v.quota_dimensions) == {
            "job_id": "broke",
            "spent_nanos": "0",
            "reserved_nanos": "0",
        }
        assert d.error_info is not None and d.error_info.metadata["budget_nanos"] == "0"
    assert rig.fake.request_count == before


async def _first(stream: Any) -> Any:
    async for ev in stream:
        return ev
    return None


async def test_unlimited_is_explicit_and_budgets_are_per_job(rig: Rig) -> None:
    job = (await rig.ledger.SetBudget(lpb.SetBudgetRequest(job_id="free", unlimited=True))).job
    assert not job.HasField("budget_nanos") and not job.HasField("remaining_nanos")
    out = await _stream(rig, "short", "free")
    assert out.kind == "completed"
    # A job seen for the first time gets the configured default (10 USD), not unlimited.
    await _stream(rig, "short", "fresh")
    fresh = (await rig.ledger.GetJob(lpb.GetJobRequest(job_id="fresh"))).job
    assert fresh.budget_nanos == 10 * 10**9
    assert fresh.remaining_nanos == fresh.budget_nanos - fresh.cost_nanos
