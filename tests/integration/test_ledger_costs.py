"""Costs worked out by hand (cached input, reasoning tokens, a price with a fraction of a
nano-dollar per token) match the answers, GetJob and GetSummary to the nano-dollar, across
several models and providers; the ledger's RPCs answer bad input with a clear status."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import timestamp_pb2

from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as make_settings
from aurea.testing.fakes import FakeOpenAI
from aurea.v1 import admin_pb2, admin_pb2_grpc, inference_pb2_grpc, ledger_pb2_grpc
from aurea.v1 import inference_pb2 as ipb
from aurea.v1 import ledger_pb2 as lpb

pytestmark = pytest.mark.integration

KEY_ENV = "LEDGER_COSTS_KEY"
CACHED, REASONING = 2, 3
PRICES: dict[str, dict[str, str]] = {
    # provider "oa" reports cached and reasoning tokens
    "oa-mini": {
        "input_usd_per_mtok": "0.15",
        "cached_input_usd_per_mtok": "0.075",
        "output_usd_per_mtok": "0.60",
        "reasoning_usd_per_mtok": "2.40",
    },
    "oa-odd": {"input_usd_per_mtok": "0.1234567", "output_usd_per_mtok": "0.7654321"},
    # provider "compat" reports plain counts
    "compat-x": {"input_usd_per_mtok": "0.05", "output_usd_per_mtok": "0.08"},
}
PROVIDER = {"oa-mini": "oa", "oa-odd": "oa", "compat-x": "compat"}


def hand_cost(model: str, inp: int, cached: int, out: int, reasoning: int) -> int:
    p = {k: Decimal(v) for k, v in PRICES[model].items()}
    cin = p.get("cached_input_usd_per_mtok", p["input_usd_per_mtok"])
    rout = p.get("reasoning_usd_per_mtok", p["output_usd_per_mtok"])
    usd_per_mtok_tokens = (
        (inp - cached) * p["input_usd_per_mtok"]
        + cached * cin
        + (out - reasoning) * p["output_usd_per_mtok"]
        + reasoning * rout
    )
    # $1 per million tokens is 1,000 nano-dollars per token; rounded up once.
    return math.ceil(usd_per_mtok_tokens * 1000)


@dataclass
class Rig:
    server: RunningServer
    oa: FakeOpenAI
    compat: FakeOpenAI
    inference: inference_pb2_grpc.InferenceServiceStub
    ledger: ledger_pb2_grpc.LedgerServiceStub
    admin: admin_pb2_grpc.AdminServiceStub


@pytest_asyncio.fixture
async def rig(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    async with FakeOpenAI() as oa, FakeOpenAI() as compat:
        oa.cached_input_tokens, oa.reasoning_tokens = CACHED, REASONING
        providers = {
            name: {"kind": "openai", "base_url": fake.base_url, "api_key_env": KEY_ENV}
            for name, fake in (("oa", oa), ("compat", compat))
        }
        models = {
            m: {"provider": PROVIDER[m], "upstream": "gpt-4o-mini", **prices}
            for m, prices in PRICES.items()
        }
        settings = make_settings(
            {
                "providers": providers,
                "models": models,
                "routing": {"default_model": "compat-x"},
                "ledger": {"store": "memory"},
            }
        )
        async with running_server(settings) as rs:
            yield Rig(
                rs,
                oa,
                compat,
                inference_pb2_grpc.InferenceServiceStub(rs.channel),
                ledger_pb2_grpc.LedgerServiceStub(rs.channel),
                admin_pb2_grpc.AdminServiceStub(rs.channel),
            )


def _words(text: str) -> int:
    return len(text.split())


async def test_hand_worked_costs_match_answers_get_job_and_get_summary(rig: Rig) -> None:
    calls = [
        ("oa-mini", "what does a ledger keep", True),
        ("oa-mini", "tell me about budgets", False),
        ("oa-odd", "three words here", True),
        ("oa-odd", "x", False),
        ("compat-x", "plain counts only please", True),
        ("compat-x", "and once more unary", False),
    ]
    expected_by_model: dict[str, list[int]] = {m: [0, 0, 0, 0] for m in PRICES}
    for model, prompt, stream in calls:
        inp = _words(prompt)
        reply = f"Echo: {prompt}"  # the fake's deterministic answer
        extra = REASONING if PROVIDER[model] == "oa" else 0
        cached = min(CACHED, inp) if PROVIDER[model] == "oa" else 0
        out = _words(reply) + extra
        expected = hand_cost(model, inp, cached, out, extra)
        if stream:
            final = None
            req = ipb.GenerateStreamRequest(
                request=ipb.GenerateRequest(prompt=prompt, model=model, job_id="hand")
            )
            async for ev in rig.inference.GenerateStream(req):
                if ev.WhichOneof("event") == "final":
                    final = ev.final
            assert final is not None
            usage, cost = final.usage, final.cost_nanos
        else:
            r = await rig.inference.Generate(
                ipb.GenerateRequest(prompt=prompt, model=model, job_id="hand")
            )
            usage, cost = r.usage, r.cost_nanos
        assert (usage.input_tokens, usage.cached_input_tokens) == (inp, cached), model
        assert (usage.output_tokens, usage.reasoning_tokens) == (out, extra), model
        assert cost == expected, (model, prompt, cost, expected)
        row = expected_by_model[model]
        row[0] += 1
        row[1] += inp
        row[2] += out
        row[3] += expected

    job = (await rig.ledger.GetJob(lpb.GetJobRequest(job_id="hand"))).job
    got = {m.model: [m.calls, m.input_tokens, m.output_tokens, m.cost_nanos] for m in job.models}
    assert got == expected_by_model
    assert {m.model: m.provider for m in job.models} == PROVIDER
    total = sum(r[3] for r in expected_by_model.values())
    assert job.cost_nanos == total and job.calls == len(calls) and job.reserved_nanos == 0
    assert [m.cost_nanos for m in job.models] == sorted(
        (m.cost_nanos for m in job.models), reverse=True
    )

    summary = await rig.ledger.GetSummary(lpb.GetSummaryRequest())
    assert summary.total_cost_nanos == total and summary.total_calls == len(calls)
    by_provider = {p.provider: p.cost_nanos for p in summary.providers}
    assert by_provider == {
        "oa": expected_by_model["oa-mini"][3] + expected_by_model["oa-odd"][3],
        "compat": expected_by_model["compat-x"][3],
    }
    assert {m.model: m.cost_nanos for m in summary.models} == {
        m: r[3] for m, r in expected_by_model.items()
    }
    # A window that ended before the calls holds none of them; one around them holds all.
    before = timestamp_pb2.Timestamp(seconds=1_000_000_000)
    empty = await rig.ledger.GetSummary(
        lpb.GetSummaryRequest(start_time=timestamp_pb2.Timestamp(seconds=0), end_time=before)
    )
    assert empty.total_calls == 0 and empty.end_time.seconds == 1_000_000_800
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    around = await rig.ledger.GetSummary(lpb.GetSummaryRequest(start_time=before, end_time=now))
    assert around.total_cost_nanos == total
    assert around.start_time.seconds % 3600 == 0 and around.end_time.seconds % 3600 == 0

    # The admin summary reads the same settled spend, with call counts and latency.
    metrics = await rig.admin.GetMetricsSummary(admin_pb2.GetMetricsSummaryRequest())
    assert metrics.total.requests >= len(calls)
    assert metrics.total.cost_nanos == total
    assert {m.model: m.metrics.cost_nanos for m in metrics.models} == {
        m: r[3] for m, r in expected_by_model.items()
    }
    assert metrics.total.avg_latency_ms > 0 and metrics.total.p50_latency_ms > 0


async def _code(call: Any, details: Callable[[grpc.RpcError], Any]) -> tuple[Any, list[str]]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    d = details(info.value)
    return d.code, d.fields


async def test_bad_input_gets_a_clear_status(
    rig: Rig, details: Callable[[grpc.RpcError], Any]
) -> None:
    L = rig.ledger
    bad = grpc.StatusCode.INVALID_ARGUMENT
    cases: list[tuple[Any, Any, list[str]]] = [
        (L.SetBudget(lpb.SetBudgetRequest(job_id="j", budget_nanos=-1)), bad, ["budget_nanos"]),
        (
            L.SetBudget(lpb.SetBudgetRequest(job_id="j", budget_nanos=2**63 - 1)),
            bad,
            ["budget_nanos"],
        ),
        (
            L.SetBudget(lpb.SetBudgetRequest(job_id="j", budget_nanos=5, unlimited=True)),
            bad,
            ["budget_nanos"],
        ),
        (L.SetBudget(lpb.SetBudgetRequest(job_id="", budget_nanos=5)), bad, ["job_id"]),
        (L.GetJob(lpb.GetJobRequest(job_id="x" * 129)), bad, ["job_id"]),
        (L.GetJob(lpb.GetJobRequest(job_id="nobody")), grpc.StatusCode.NOT_FOUND, []),
        (L.ListJobs(lpb.ListJobsRequest(page_size=5000)), bad, ["page_size"]),
        (L.ListJobs(lpb.ListJobsRequest(page_size=-1)), bad, ["page_size"]),
        (L.ListJobs(lpb.ListJobsRequest(page_token="not-a-token")), bad, ["page_token"]),
        (
            L.GetSummary(
                lpb.GetSummaryRequest(
                    start_time=timestamp_pb2.Timestamp(seconds=2000),
                    end_time=timestamp_pb2.Timestamp(seconds=1000),
                )
            ),
            bad,
            ["end_time"],
        ),
        (
            L.GetSummary(lpb.GetSummaryRequest(start_time=timestamp_pb2.Timestamp(seconds=-5))),
            bad,
            ["start_time"],
        ),
    ]
    for call, code, fields in cases:
        got, got_fields = await _code(call, details)
        assert (got, got_fields) == (code, fields)


async def test_list_jobs_pages_through_a_prefix(
    rig: Rig, details: Callable[[grpc.RpcError], Any]
) -> None:
    for i in range(7):
        await rig.ledger.SetBudget(lpb.SetBudgetRequest(job_id=f"team-{i}", budget_nanos=i))
    await rig.ledger.SetBudget(lpb.SetBudgetRequest(job_id="other", budget_nanos=1))
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = await rig.ledger.ListJobs(
            lpb.ListJobsRequest(job_id_prefix="team-", page_size=3, page_token=token)
        )
        seen += [j.job_id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"team-{i}" for i in range(7)]
    # A token is tied to its prefix.
    first = await rig.ledger.ListJobs(lpb.ListJobsRequest(job_id_prefix="team-", page_size=3))
    code, fields = await _code(
        rig.ledger.ListJobs(
            lpb.ListJobsRequest(job_id_prefix="oth", page_token=first.next_page_token)
        ),
        details,
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_token"])


@pytest_asyncio.fixture
async def keyed(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningServer]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    settings = make_settings(
        {"ledger": {"store": "memory"}},
        AUREA_API_KEYS="user:user-key-0123456789,admin:admin-key-0123456789",
    )
    async with running_server(settings) as rs:
        yield rs


async def test_set_budget_needs_admin_and_calls_without_a_job_go_to_the_keys_job(
    keyed: RunningServer,
) -> None:
    ledger = ledger_pb2_grpc.LedgerServiceStub(keyed.channel)
    inference = inference_pb2_grpc.InferenceServiceStub(keyed.channel)
    user = (("authorization", "Bearer user-key-0123456789"),)
    admin = (("authorization", "Bearer admin-key-0123456789"),)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await ledger.SetBudget(lpb.SetBudgetRequest(job_id="j", budget_nanos=1), metadata=user)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await ledger.SetBudget(lpb.SetBudgetRequest(job_id="j", budget_nanos=1), metadata=admin)
    r = await inference.Generate(ipb.GenerateRequest(prompt="hello"), metadata=user)
    job = (await ledger.GetJob(lpb.GetJobRequest(job_id="default:env0"), metadata=user)).job
    assert job.cost_nanos == r.cost_nanos > 0
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await ledger.GetJob(lpb.GetJobRequest(job_id="default"), metadata=user)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
