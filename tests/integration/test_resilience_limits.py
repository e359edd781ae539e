"""Per-model rate limits end to end, through gRPC against fake OpenAI upstreams that count every
request: RPM and TPM holding under 200 concurrent callers, SetModelLimits changing them at run
time, its validation, the RESOURCE_EXHAUSTED a caller sees with no fallback left, and an
upstream's 429 and rate-limit headers holding the model back. The limiter's wall clock is a fake
one that only moves when the test says, so a "minute" is exactly what the test makes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio

from aurea.server import AureaServer
from aurea.testing import test_settings as make_settings
from aurea.testing.fakes import FakeOpenAI, Fault, FaultKind, Scripted
from aurea.v1 import admin_pb2 as apb
from aurea.v1 import admin_pb2_grpc, inference_pb2_grpc
from aurea.v1 import inference_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

KEY_ENV = "AUREA_TEST_RESILIENCE_LIMITS_KEY"
KEY = "sk-resilience-limits-0001"
USER_KEY = "user-key-resilience-0001"
ADMIN_KEY = "admin-key-resilience-0001"
RPM = 50
CALLERS = 200


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    primary: FakeOpenAI
    backup: FakeOpenAI
    wall: FakeClock
    inference: inference_pb2_grpc.InferenceServiceStub
    admin: admin_pb2_grpc.AdminServiceStub

    async def call(
        self, *, model: str = "primary", fallback: bool = True, max_tokens: int = 0
    ) -> pb.GenerateResponse:
        req = pb.GenerateRequest(
            prompt="hello there",
            model=model,
            max_tokens=max_tokens,
            fallback_models=["backup"] if fallback else [],
        )
        resp: pb.GenerateResponse = await self.inference.Generate(
            req, timeout=60, metadata=(("x-api-key", USER_KEY),)
        )
        return resp

    async def burst(self, n: int = CALLERS, **kw: Any) -> list[pb.GenerateResponse]:
        """``n`` callers at once; each must get an answer."""
        return list(await asyncio.gather(*(self.call(**kw) for _ in range(n))))

    async def set_limits(self, **fields: Any) -> apb.SetModelLimitsResponse:
        resp: apb.SetModelLimitsResponse = await self.admin.SetModelLimits(
            apb.SetModelLimitsRequest(**fields), timeout=10, metadata=(("x-api-key", ADMIN_KEY),)
        )
        return resp


@pytest_asyncio.fixture
async def rig(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setenv(KEY_ENV, KEY)
    async with FakeOpenAI(api_key=KEY) as primary, FakeOpenAI(api_key=KEY) as backup:
        block = {"kind": "openai", "api_key_env": KEY_ENV, "max_concurrency": 1000}
        settings = make_settings(
            {
                "providers": {
                    "pa": {**block, "base_url": primary.base_url},
                    "pb": {**block, "base_url": backup.base_url},
                },
                "models": {
                    "primary": {"provider": "pa", "upstream": "gpt-4o-mini", "rpm": RPM},
                    "backup": {"provider": "pb", "upstream": "gpt-4o-mini"},
                    "wordy": {"provider": "pa", "upstream": "gpt-4o", "tpm": 1000},
                },
                "routing": {"default_model": "primary"},
                "retry": {"max_retries": 0},
                # No waiting for room: with a frozen clock it would never come.
                "limits": {"max_wait_s": 0},
            },
            AUREA_API_KEYS=f"user:{USER_KEY},admin:{ADMIN_KEY}",
        )
        wall = FakeClock()
        server = AureaServer(settings, wall_clock=wall)
        port = await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            yield Rig(
                primary,
                backup,
                wall,
                inference_pb2_grpc.InferenceServiceStub(channel),
                admin_pb2_grpc.AdminServiceStub(channel),
            )
        finally:
            await channel.close()
            await server.stop(grace_s=0)


def models(answers: list[pb.GenerateResponse]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in answers:
        out[a.model] = out.get(a.model, 0) + 1
    return out


async def test_rpm_holds_with_200_concurrent_callers_and_changes_at_run_time(rig: Rig) -> None:
    # A minute's worth at once: exactly RPM reach the primary, the rest go to the fallback.
    answers = await rig.burst()
    assert models(answers) == {"primary": RPM, "backup": CALLERS - RPM}
    assert rig.primary.request_count == RPM
    # Half a minute later, half a minute's worth.
    rig.wall.now += 30
    answers = await rig.burst()
    assert models(answers)["primary"] == RPM // 2
    assert rig.primary.request_count == RPM + RPM // 2

    # Lowered at run time: a full window later, only the new limit gets through.
    changed = await rig.set_limits(model="primary", rpm=20)
    assert (changed.previous_limits.rpm, changed.limits.rpm, changed.limits.overridden) == (
        RPM,
        20,
        True,
    )
    rig.wall.now += 60
    before = rig.primary.request_count
    answers = await rig.burst()
    assert models(answers)["primary"] == 20
    assert rig.primary.request_count == before + 20

    # 0 removes the limit, at once (no clock step).
    await rig.set_limits(model="primary", rpm=0)
    answers = await rig.burst(60)
    assert models(answers) == {"primary": 60}

    listed = await rig.admin.ListModelLimits(
        apb.ListModelLimitsRequest(model="primary"),
        timeout=10,
        metadata=(("x-api-key", USER_KEY),),
    )
    (limits,) = listed.limits
    assert (limits.model, limits.rpm, limits.overridden) == ("primary", 0, True)


async def test_tpm_holds_with_200_concurrent_callers(rig: Rig) -> None:
    rig.primary.reply = lambda prompt: " ".join(["word"] * 40)
    answers = await rig.burst(model="wordy", max_tokens=100)
    on_wordy = [a for a in answers if a.model == "wordy"]
    used = sum(a.usage.input_tokens + a.usage.output_tokens for a in on_wordy)
    # Each call is admitted on an estimate of at least its 100 max tokens, corrected by its
    # actual usage when it ends: within the frozen minute the tokens used never exceed 1000.
    assert used <= 1000
    assert 10 <= len(on_wordy) < CALLERS
    assert rig.primary.request_count == len(on_wordy)
    assert len(answers) - len(on_wordy) == rig.backup.request_count


async def test_no_candidate_left_is_resource_exhausted_naming_model_and_limit(
    rig: Rig, details: Callable[[grpc.RpcError], Any]
) -> None:
    await rig.set_limits(model="primary", rpm=2)
    for _ in range(2):
        await rig.call(fallback=False)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.call(fallback=False)
    d = details(info.value)
    assert d.code == grpc.StatusCode.RESOURCE_EXHAUSTED and d.reason == "RATE_LIMITED"
    assert d.retry_info is not None and d.retry_info.retry_delay.seconds == 30
    assert d.quota_failure is not None
    (violation,) = d.quota_failure.violations
    assert violation.subject == "model:primary:rpm" and "2 requests per minute" in d.message
    assert rig.primary.request_count == 2
    # A normal call still works (another model).
    assert (await rig.call(model="backup", fallback=False)).model == "backup"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "primary", "rpm": -1}, "rpm"),
        ({"model": "primary", "tpm": -100}, "tpm"),
        ({"model": "primary", "max_concurrency": -2}, "max_concurrency"),
        ({"model": "primary", "rpm": 2_000_000_000}, "rpm"),
        ({"rpm": 5}, "model"),
    ],
)
async def test_bad_set_model_limits_is_invalid_argument_naming_the_field(
    rig: Rig, details: Callable[[grpc.RpcError], Any], fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.set_limits(**fields)
    d = details(info.value)
    assert d.code == grpc.StatusCode.INVALID_ARGUMENT and d.fields == [field]
    # Nothing changed.
    answers = await rig.burst(RPM + 5)
    assert models(answers)["primary"] == RPM


async def test_set_model_limits_needs_admin_and_a_catalog_model(
    rig: Rig, details: Callable[[grpc.RpcError], Any]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.admin.SetModelLimits(
            apb.SetModelLimitsRequest(model="primary", rpm=1),
            timeout=10,
            metadata=(("x-api-key", USER_KEY),),
        )
    assert details(info.value).code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await rig.set_limits(model="no-such-model", rpm=1)
    assert details(info.value).code == grpc.StatusCode.NOT_FOUND
    everything = await rig.admin.ListModelLimits(
        apb.ListModelLimitsRequest(), timeout=10, metadata=(("x-api-key", USER_KEY),)
    )
    by_name = {m.model: m for m in everything.limits}
    assert list(by_name) == sorted(by_name)
    assert by_name["primary"].rpm == RPM and by_name["wordy"].tpm == 1000
    assert not any(m.overridden for m in everything.limits)


async def test_upstream_429_holds_the_model_until_its_retry_after(rig: Rig) -> None:
    rig.primary.inject(Fault(FaultKind.RATE_LIMIT, retry_after="30"))
    assert (await rig.call()).model == "backup"  # the 429, then the fallback
    for _ in range(5):
        assert (await rig.call()).model == "backup"  # held: the primary is not asked
    assert rig.primary.request_count == 1
    rig.wall.now += 30
    assert (await rig.call()).model == "primary"


async def test_exhausted_rate_limit_headers_on_a_success_hold_the_model(rig: Rig) -> None:
    reply = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "12s"}
    rig.primary.script(Scripted.json(reply, **headers))
    assert (await rig.call()).model == "primary"  # answered, and said "no more for 12 s"
    assert (await rig.call()).model == "backup"
    assert rig.primary.request_count == 1
    rig.wall.now += 12
    assert (await rig.call()).model == "primary"
