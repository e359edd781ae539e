"""API keys as policy, through both doors (gRPC and the HTTP door driven by the official
``openai`` SDK): scope, model list, the key's own rate limit, its budget, disable (including
streams already open, ended after the grace period), rotate, keys created at run time, and the
most streams a key may hold open."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as make_settings
from aurea.v1 import admin_pb2, admin_pb2_grpc, inference_pb2_grpc, ledger_pb2, ledger_pb2_grpc
from aurea.v1 import inference_pb2 as pb

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.integration

TIMEOUT = 20.0
SECRETS = {
    "root": "root-key-0123456789",
    "plain": "plain-key-0123456789",
    "limited": "limited-key-0123456789",
    "budget": "budget-key-0123456789",
    "streamer": "streamer-key-0123456789",
}
POLICIES: dict[str, dict[str, Any]] = {
    "root": {"scopes": ["admin"]},
    "plain": {},
    "limited": {"models": ["sim-small", "sim-slow"], "rpm": 2},
    "budget": {"budget_usd": "0.00002"},
    "streamer": {"max_streams": 1},
}


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _settings() -> Any:
    keys = [{"name": n, "sha256": _sha(SECRETS[n]), **POLICIES[n]} for n in SECRETS]
    return make_settings(
        {
            "auth": {"keys": keys},
            "server": {"revoked_key_grace_s": 0.2},
            "ledger": {"store": "memory"},
            "routing": {"stats_store": "memory"},
            "tasks": {"store": "memory"},
            "cache": {"enabled": False},
            "providers": {
                "slow": {
                    "kind": "simulated",
                    "options": {"token_delay_ms": 50, "min_tokens": 600, "max_tokens": 600},
                }
            },
            "models": {
                "sim-slow": {
                    "provider": "slow",
                    "upstream": "sim-small",
                    "input_usd_per_mtok": "0.15",
                    "output_usd_per_mtok": "0.60",
                    "default_max_tokens": 600,
                }
            },
        }
    )


@pytest_asyncio.fixture
async def rs() -> AsyncIterator[RunningServer]:
    async with running_server(_settings()) as server:
        yield server


def _md(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


async def _grpc(rs: RunningServer, secret: str, model: str = "sim-small") -> pb.GenerateResponse:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    req = pb.GenerateRequest(prompt="hello", model=model, max_tokens=8)
    return await stub.Generate(req, metadata=_md(secret), timeout=TIMEOUT)


async def _grpc_code(rs: RunningServer, secret: str, model: str = "sim-small") -> str:
    try:
        await _grpc(rs, secret, model)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


_clients: list[Any] = []


def _sdk(rs: RunningServer, secret: str) -> Any:
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{rs.server.http_port}/v1",
        api_key=secret,
        max_retries=0,
        timeout=TIMEOUT,
    )
    _clients.append(client)
    return client


@pytest_asyncio.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    yield
    while _clients:
        await _clients.pop().close()


async def _http(rs: RunningServer, secret: str, model: str = "sim-small") -> Any:
    return await _sdk(rs, secret).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=8
    )


def _admin(rs: RunningServer) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(rs.channel)


ROOT = _md(SECRETS["root"])


# -- scope ---------------------------------------------------------------------------------------
async def test_scope_user_key_cannot_manage_keys_but_calls_both_doors(rs: RunningServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _admin(rs).ListApiKeys(
            admin_pb2.ListApiKeysRequest(), metadata=_md(SECRETS["plain"]), timeout=TIMEOUT
        )
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    listed = await _admin(rs).ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=ROOT)
    assert [k.name for k in listed.keys] == sorted(SECRETS)
    # the user scope covers every route of the HTTP door and the inference RPCs
    assert (await _grpc(rs, SECRETS["plain"])).text
    assert (await _http(rs, SECRETS["plain"])).choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        await _http(rs, "not-a-key-0123456789")


# -- model list ------------------------------------------------------------------------------------
async def test_model_list(rs: RunningServer) -> None:
    secret = SECRETS["limited"]
    assert await _grpc_code(rs, secret, "sim-large") == "PERMISSION_DENIED"
    with pytest.raises(openai.PermissionDeniedError) as info:
        await _http(rs, secret, "sim-large")
    assert "sim-large" in str(info.value)
    assert (await _grpc(rs, secret, "sim-small")).model == "sim-small"
    # the door's model list shows the key only what it may use
    listed = {m.id async for m in _sdk(rs, secret).models.list()}
    assert listed == {"sim-small", "sim-slow"}
    with pytest.raises(openai.NotFoundError):
        await _sdk(rs, secret).models.retrieve("sim-large")
    assert "sim-large" in {m.id async for m in _sdk(rs, SECRETS["plain"]).models.list()}
    # another key may use the model
    assert (await _grpc(rs, SECRETS["plain"], "sim-large")).model == "sim-large"


# -- the key's own rate limit ----------------------------------------------------------------------
async def test_per_key_rate_limit_is_shared_by_both_doors(rs: RunningServer) -> None:
    secret = SECRETS["limited"]  # rpm = 2: a minute's worth is two requests
    await _grpc(rs, secret)
    await _http(rs, secret)
    assert await _grpc_code(rs, secret) == "RESOURCE_EXHAUSTED"
    with pytest.raises(openai.RateLimitError) as info:
        await _http(rs, secret)
    assert "limited" in str(info.value) and "requests per minute" in str(info.value)
    # other keys are not held back
    assert await _grpc_code(rs, SECRETS["plain"]) == "OK"


# -- the key's budget ------------------------------------------------------------------------------
async def test_per_key_budget_is_its_default_jobs_budget(rs: RunningServer) -> None:
    ledger = ledger_pb2_grpc.LedgerServiceStub(rs.channel)
    job = await ledger.GetJob(ledger_pb2.GetJobRequest(job_id="default:budget"), metadata=ROOT)
    assert job.job.budget_nanos == 20_000
    secret = SECRETS["budget"]
    refused = None
    for i in range(20):  # bounded: each call spends a few thousand nano-dollars
        code = await _grpc_code(rs, secret) if i % 2 == 0 else None
        if code is None:
            try:
                await _http(rs, secret)
                code = "OK"
            except openai.RateLimitError as exc:
                code = "RESOURCE_EXHAUSTED"
                assert exc.code == "insufficient_quota"
        if code != "OK":
            refused = code
            break
    assert refused == "RESOURCE_EXHAUSTED"
    # both doors refuse now, and the key's spend stayed within its budget
    assert await _grpc_code(rs, secret) == "RESOURCE_EXHAUSTED"
    with pytest.raises(openai.RateLimitError):
        await _http(rs, secret)
    job = await ledger.GetJob(ledger_pb2.GetJobRequest(job_id="default:budget"), metadata=ROOT)
    assert 0 < job.job.cost_nanos <= 20_000
    assert await _grpc_code(rs, SECRETS["plain"]) == "OK"


# -- disable ---------------------------------------------------------------------------------------
async def test_disable_refuses_the_next_call_on_both_doors_and_enable_restores(
    rs: RunningServer,
) -> None:
    secret = SECRETS["plain"]
    await _admin(rs).DisableApiKey(admin_pb2.DisableApiKeyRequest(name="plain"), metadata=ROOT)
    assert await _grpc_code(rs, secret) == "UNAUTHENTICATED"
    with pytest.raises(openai.AuthenticationError) as info:
        await _http(rs, secret)
    assert "disabled" in str(info.value)
    await _admin(rs).EnableApiKey(admin_pb2.EnableApiKeyRequest(name="plain"), metadata=ROOT)
    assert await _grpc_code(rs, secret) == "OK"
    assert (await _http(rs, secret)).choices


async def _first_event(stream: Any) -> None:
    async for _ in stream:
        return


async def test_disable_ends_open_streams_after_the_grace(rs: RunningServer) -> None:
    secret = SECRETS["plain"]
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    req = pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="long", model="sim-slow"))
    grpc_stream = stub.GenerateStream(req, metadata=_md(secret), timeout=TIMEOUT)
    await asyncio.wait_for(_first_event(grpc_stream), TIMEOUT)
    http_stream = await _sdk(rs, secret).chat.completions.create(
        model="sim-slow", messages=[{"role": "user", "content": "long"}], stream=True
    )
    await asyncio.wait_for(_first_event(http_stream), TIMEOUT)

    await _admin(rs).DisableApiKey(admin_pb2.DisableApiKeyRequest(name="plain"), metadata=ROOT)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in grpc_stream:  # 600 tokens at 50 ms: ended long before its end
            pass
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "disabled" in (info.value.details() or "")
    chunks = 0
    with pytest.raises(Exception) as cut:
        async for _ in http_stream:
            chunks += 1
    assert chunks < 600, cut
    assert rs.server.edge.streams_of("plain") == 0


# -- rotate ----------------------------------------------------------------------------------------
async def test_rotate_gives_a_new_secret_and_retires_the_old(rs: RunningServer) -> None:
    old = SECRETS["plain"]
    rotated = await _admin(rs).RotateApiKey(
        admin_pb2.RotateApiKeyRequest(name="plain", previous_key_grace_ms=60_000), metadata=ROOT
    )
    new = rotated.api_key
    assert new and new != old and rotated.key.fingerprint == _sha(new)[:8]
    # within the grace period both work, on both doors
    assert await _grpc_code(rs, old) == "OK" and await _grpc_code(rs, new) == "OK"
    assert (await _http(rs, old)).choices and (await _http(rs, new)).choices
    # a rotation without grace retires the previous secret at once
    again = await _admin(rs).RotateApiKey(
        admin_pb2.RotateApiKeyRequest(name="plain"), metadata=ROOT
    )
    for secret in (old, new):
        assert await _grpc_code(rs, secret) == "UNAUTHENTICATED"
        with pytest.raises(openai.AuthenticationError):
            await _http(rs, secret)
    assert await _grpc_code(rs, again.api_key) == "OK"
    assert (await _http(rs, again.api_key)).choices


# -- created at run time ---------------------------------------------------------------------
async def test_a_key_created_at_run_time_carries_its_policy(rs: RunningServer) -> None:
    created = await _admin(rs).CreateApiKey(
        admin_pb2.CreateApiKeyRequest(
            policy=admin_pb2.ApiKeyPolicy(
                name="new-team", models=["sim-small"], budget_nanos=1_000_000_000
            )
        ),
        metadata=ROOT,
    )
    secret = created.api_key
    assert secret and created.key.scopes == ["user"]
    assert await _grpc_code(rs, secret) == "OK"
    assert await _grpc_code(rs, secret, "sim-large") == "PERMISSION_DENIED"
    with pytest.raises(openai.PermissionDeniedError):
        await _http(rs, secret, "sim-large")
    assert (await _http(rs, secret)).choices
    ledger = ledger_pb2_grpc.LedgerServiceStub(rs.channel)
    job = await ledger.GetJob(ledger_pb2.GetJobRequest(job_id="default:new-team"), metadata=ROOT)
    assert job.job.budget_nanos == 1_000_000_000
    listed = await _admin(rs).ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=ROOT)
    text = str(listed)
    assert "new-team" in text and secret not in text and _sha(secret) not in text
    for bad, code in (
        (admin_pb2.ApiKeyPolicy(name="new-team"), "FAILED_PRECONDITION"),
        (admin_pb2.ApiKeyPolicy(name="x", models=["nope"]), "INVALID_ARGUMENT"),
        (admin_pb2.ApiKeyPolicy(name="y", scopes=["root"]), "INVALID_ARGUMENT"),
        (admin_pb2.ApiKeyPolicy(name=""), "INVALID_ARGUMENT"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _admin(rs).CreateApiKey(admin_pb2.CreateApiKeyRequest(policy=bad), metadata=ROOT)
        assert info.value.code().name == code


# -- most streams a key holds open ----------------------------------------------------------------
async def test_max_streams_per_key_on_both_doors(rs: RunningServer) -> None:
    secret = SECRETS["streamer"]  # max_streams = 1
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    req = pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="long", model="sim-slow"))
    first = stub.GenerateStream(req, metadata=_md(secret), timeout=TIMEOUT)
    await asyncio.wait_for(_first_event(first), TIMEOUT)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.GenerateStream(req, metadata=_md(secret), timeout=TIMEOUT):
            pass
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_streams" in (info.value.details() or "")
    with pytest.raises(openai.RateLimitError):
        await _sdk(rs, secret).chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "x"}], stream=True
        )
    # a unary call is no stream; other keys stream freely
    assert await _grpc_code(rs, secret) == "OK"
    first.cancel()
    for _ in range(200):  # bounded: the cancelled stream gives its slot back
        if rs.server.edge.streams_of("streamer") == 0:
            break
        await asyncio.sleep(0.02)
    stream = await _sdk(rs, secret).chat.completions.create(
        model="sim-small", messages=[{"role": "user", "content": "x"}], stream=True
    )
    assert [c async for c in stream]
