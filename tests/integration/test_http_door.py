"""The HTTP door on the wire (aiohttp as the client, raw bytes checked): SSE framing and its end
(``[DONE]`` only after a whole answer, an in-band error event and no ``[DONE]`` after a failure),
the edge around every route (request ids, keys, draining, in-flight counting, the canonical log
line), bad input (413, bad JSON, unknown routes), deadlines, a client that leaves mid-stream, and
the state both doors share: rate limits, circuit breakers and provider concurrency."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from aurea.telemetry.logging import context_processors
from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as make_settings
from aurea.testing.fakes import FakeOpenAI, Fault, FaultKind
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

pytestmark = pytest.mark.integration

KEY_ENV = "AUREA_TEST_HTTP_DOOR_KEY"
UPSTREAM_KEY = "sk-door-upstream"
CHAT = "/v1/chat/completions"


def settings(**raw: Any) -> Any:
    """Test settings: the door on a free port, and in-memory ledger and router stats (each
    test's state is its own, not the shared SQLite file's)."""
    http = {"host": "127.0.0.1", "port": 0, **raw.pop("http", {})}
    ledger = {"store": "memory", **raw.pop("ledger", {})}
    routing = {"stats_store": "memory", **raw.pop("routing", {})}
    return make_settings({"http": http, "ledger": ledger, "routing": routing, **raw})


def slow_sim(tokens: int, delay_ms: int, **extra: Any) -> dict[str, Any]:
    options = {"token_delay_ms": delay_ms, "min_tokens": tokens, "max_tokens": tokens}
    return {"simulated": {"kind": "simulated", "options": options, **extra}}


def url(rs: RunningServer, path: str) -> str:
    return f"http://127.0.0.1:{rs.server.http_port}{path}"


def chat_body(content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "sim-small", "messages": [{"role": "user", "content": content}], **extra}


def sse_events(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    text = raw.decode()
    assert text.endswith("\n\n"), f"an SSE body ends with a blank line: {text[-80:]!r}"
    return [frame.removeprefix("data: ") for frame in text.split("\n\n") if frame]


@pytest_asyncio.fixture
async def door() -> AsyncIterator[RunningServer]:
    async with running_server(settings()) as rs:
        yield rs


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def upstream(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOpenAI]:
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    async with FakeOpenAI(api_key=UPSTREAM_KEY) as fake:
        fake.reply = lambda prompt: "one two three four five six seven eight"
        yield fake


def relay_settings(upstream: FakeOpenAI, **raw: Any) -> Any:
    return settings(
        providers={"up": {"kind": "openai", "base_url": upstream.base_url, "api_key_env": KEY_ENV}},
        models={"up-chat": {"provider": "up", "upstream": "gpt-4o-mini"}},
        routing={"default_model": "up-chat"},
        retry={"max_retries": 0},
        **raw,
    )


async def test_a_whole_stream_ends_with_done(
    door: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(url(door, CHAT), json=chat_body(stream=True)) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        rid = r.headers["x-request-id"]
        raw = await r.read()
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["id"] == f"chatcmpl-{rid}" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["aurea"]["provider"] == "simulated"
    assert chunks[-1]["aurea"]["cost_nanos"] > 0


@pytest.mark.parametrize("fault", [FaultKind.STREAM_ERROR, FaultKind.CUT_STREAM])
async def test_a_mid_stream_failure_ends_with_an_error_event_and_no_done(
    upstream: FakeOpenAI, http: aiohttp.ClientSession, fault: FaultKind
) -> None:
    upstream.inject(Fault(fault, after_tokens=3))
    with capture_logs(processors=context_processors()) as logs:
        async with running_server(relay_settings(upstream)) as rs:
            body = {**chat_body(stream=True), "model": "up-chat"}
            async with http.post(url(rs, CHAT), json=body) as r:
                assert r.status == 200  # the answer had begun: the status line is sent
                raw = await r.read()
    events = sse_events(raw)
    assert "[DONE]" not in events, "a broken answer must not end cleanly"
    last = json.loads(events[-1])
    assert set(last) == {"error"}
    assert set(last["error"]) == {"message", "type", "param", "code"}
    assert last["error"]["type"] == "api_error"
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in map(json.loads, events[:-1])
        if c["choices"]
    )
    assert text == "one two three"
    assert all(
        not c["choices"] or c["choices"][0]["finish_reason"] is None
        for c in map(json.loads, events[:-1])
    ), "no finish reason for a cut answer"
    finished = [e for e in logs if e.get("event") == "rpc_finished"]
    assert len(finished) == 1
    assert finished[0]["status"] == "UNAVAILABLE" and finished[0]["http_status"] == 200
    assert finished[0]["rpc"] == "POST /v1/chat/completions"


async def test_failure_before_the_first_token_is_a_plain_http_status(
    upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    upstream.inject(Fault(FaultKind.SERVER_ERROR))
    async with running_server(relay_settings(upstream)) as rs:
        body = {**chat_body(stream=True), "model": "up-chat"}
        async with http.post(url(rs, CHAT), json=body) as r:
            assert r.status == 502
            assert r.headers["Content-Type"].startswith("application/json")
            payload = await r.json()
    assert payload["error"]["type"] == "api_error"


async def test_request_ids_are_echoed_or_made(
    door: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        url(door, CHAT), json=chat_body(), headers={"x-request-id": "my-id-123"}
    ) as r:
        assert r.status == 200 and r.headers["x-request-id"] == "my-id-123"
        assert (await r.json())["id"] == "chatcmpl-my-id-123"
    async with http.post(url(door, CHAT), json=chat_body(), headers={"x-request-id": "a b"}) as r:
        assert len(r.headers["x-request-id"]) == 32  # an unusable id is replaced
    async with http.post(url(door, CHAT), json=chat_body(content="")) as r:
        assert r.status == 400 and len(r.headers["x-request-id"]) == 32


async def test_bad_input_gets_a_clear_4xx(door: RunningServer, http: aiohttp.ClientSession) -> None:
    cases: list[tuple[bytes, int, str | None]] = [
        (b"", 400, None),
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"model": "sim-small"}', 400, "messages"),
        (json.dumps(chat_body(temperature=3)).encode(), 400, "temperature"),
        (json.dumps(chat_body(max_tokens=0)).encode(), 400, "max_tokens"),
        (json.dumps(chat_body(stop=["a", "b", "c", "d", "e"])).encode(), 400, "stop"),
        (json.dumps(chat_body(frobnicate=True)).encode(), 400, "frobnicate"),
        (json.dumps(chat_body(stream_options={"include_usage": True})).encode(), 400, None),
        (json.dumps(chat_body(logprobs=True)).encode(), 400, "logprobs"),
        (b'{"model": "sim-small", "messages": [{"role": "user", "content": "\\ud800"}]}', 400,
         "messages[0].content"),
    ]  # fmt: skip
    for body, status, param in cases:
        async with http.post(
            url(door, CHAT), data=body, headers={"Content-Type": "application/json"}
        ) as r:
            payload = await r.json()
            assert r.status == status, (body, payload)
            assert payload["error"]["type"] == "invalid_request_error", payload
            if param is not None:
                assert payload["error"]["param"] == param, (body, payload)


async def test_a_body_over_the_limit_is_413(http: aiohttp.ClientSession) -> None:
    async with running_server(settings(http={"max_body_bytes": 2048})) as rs:
        big = chat_body(content="x" * 4096)
        async with http.post(url(rs, CHAT), json=big) as r:
            assert r.status == 413
            payload = await r.json()
        assert payload["error"]["code"] == "request_too_large"
        assert rs.server.tracker.in_flight == 0
        async with http.post(url(rs, CHAT), json=chat_body()) as r:
            assert r.status == 200


async def test_unknown_routes_and_methods_answer_in_openai_shape(
    door: RunningServer, http: aiohttp.ClientSession
) -> None:
    async with http.post(url(door, "/v1/fine_tuning/jobs"), json={}) as r:
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "unknown_url"
    async with http.get(url(door, CHAT)) as r:
        assert r.status == 405 and r.headers["Allow"] == "POST"
        assert (await r.json())["error"]["type"] == "invalid_request_error"


async def test_keys_and_the_canonical_log_line(http: aiohttp.ClientSession) -> None:
    keys = "user:user-key-0123456789"
    s = make_settings(
        {"http": {"port": 0}, "ledger": {"store": "memory"}, "routing": {"stats_store": "memory"}},
        AUREA_API_KEYS=keys,
    )
    with capture_logs(processors=context_processors()) as logs:
        async with running_server(s) as rs:
            async with http.post(url(rs, CHAT), json=chat_body()) as r:
                assert r.status == 401
                assert (await r.json())["error"]["code"] == "invalid_api_key"
            headers = {
                "Authorization": "Bearer user-key-0123456789",
                "x-aurea-job-id": "job-7",
                "x-aurea-labels": "team=search,env=test",
            }
            async with http.post(url(rs, CHAT), json=chat_body(), headers=headers) as r:
                assert r.status == 200
    finished = [e for e in logs if e.get("event") == "rpc_finished"]
    assert [e["status"] for e in finished] == ["UNAUTHENTICATED", "OK"]
    assert [e["http_status"] for e in finished] == [401, 200]
    ok = finished[1]
    assert ok["rpc"] == "POST /v1/chat/completions"
    assert ok["api_key"] == "env0"  # keys from AUREA_API_KEYS are named by position
    assert ok["job_id"] == "job-7" and ok["labels"] == {"team": "search", "env": "test"}
    assert ok["model"] == "sim-small" and ok["cost_nanos"] > 0
    assert rs.server.tracker.in_flight == 0


async def test_a_deadline_from_the_request(http: aiohttp.ClientSession) -> None:
    async with running_server(settings(providers=slow_sim(50, 20))) as rs:
        body = chat_body(aurea={"timeout_ms": 100})
        async with http.post(url(rs, CHAT), json=body) as r:
            assert r.status == 504
            assert (await r.json())["error"]["code"] == "timeout"
        async with http.post(
            url(rs, CHAT), json=chat_body(), headers={"x-aurea-timeout-ms": "100"}
        ) as r:
            assert r.status == 504


async def test_drain_waits_for_an_http_stream_and_refuses_new_calls(
    http: aiohttp.ClientSession,
) -> None:
    async with running_server(settings(providers=slow_sim(20, 20))) as rs:
        async with http.post(url(rs, CHAT), json=chat_body(stream=True)) as r:
            first = await r.content.readline()  # the stream has begun
            assert first.startswith(b"data: ")
            assert rs.server.tracker.in_flight == 1
            stopping = asyncio.ensure_future(rs.server.stop(grace_s=10))
            await asyncio.sleep(0.05)
            assert not stopping.done(), "the drain waits for the HTTP stream"
            rest = await r.read()
        assert sse_events(first + rest)[-1] == "[DONE]"
        await stopping
        assert rs.server.tracker.in_flight == 0


async def test_draining_refuses_with_503(door: RunningServer, http: aiohttp.ClientSession) -> None:
    door.server.tracker.draining = True
    try:
        async with http.post(url(door, CHAT), json=chat_body()) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"
            assert (await r.json())["error"]["type"] == "api_error"
    finally:
        door.server.tracker.draining = False


async def test_a_client_that_leaves_mid_stream_cancels_the_call(
    http: aiohttp.ClientSession,
) -> None:
    with capture_logs(processors=context_processors()) as logs:
        async with running_server(settings(providers=slow_sim(500, 10))) as rs:
            async with http.post(url(rs, CHAT), json=chat_body(stream=True)) as r:
                await r.content.readline()
                r.close()  # drop the connection mid-answer
            for _ in range(200):
                if rs.server.tracker.in_flight == 0:
                    break
                await asyncio.sleep(0.01)
            assert rs.server.tracker.in_flight == 0, "the call did not end with its client"
    finished = [e for e in logs if e.get("event") == "rpc_finished"]
    assert [e["status"] for e in finished] == ["CANCELLED"]
    assert not [e for e in logs if e.get("event") == "rpc_bug"]


# -- one state behind both doors ---------------------------------------------------------------


async def test_a_rate_limit_spent_through_one_door_is_seen_through_the_other(
    http: aiohttp.ClientSession,
) -> None:
    s = settings(
        models={"sim-small": {"provider": "simulated", "rpm": 1}}, limits={"max_wait_s": 0}
    )
    async with running_server(s) as rs:
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        async with http.post(url(rs, CHAT), json=chat_body()) as r:
            assert r.status == 200
        with pytest.raises(grpc.RpcError) as info:
            await stub.Generate(pb.GenerateRequest(prompt="x", model="sim-small"), timeout=10)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    async with running_server(s) as rs:
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        await stub.Generate(pb.GenerateRequest(prompt="x", model="sim-small"), timeout=10)
        async with http.post(url(rs, CHAT), json=chat_body()) as r:
            assert r.status == 429
            assert int(r.headers["Retry-After"]) >= 1
            assert (await r.json())["error"]["code"] == "rate_limit_exceeded"


async def test_a_breaker_opened_through_http_refuses_grpc(
    upstream: FakeOpenAI, http: aiohttp.ClientSession
) -> None:
    s = relay_settings(upstream, breaker={"failure_threshold": 2, "open_timeout_s": 60})
    async with running_server(s) as rs:
        upstream.inject(Fault(FaultKind.SERVER_ERROR), Fault(FaultKind.SERVER_ERROR))
        for _ in range(2):
            async with http.post(url(rs, CHAT), json={**chat_body(), "model": "up-chat"}) as r:
                assert r.status == 502
        seen = upstream.request_count
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        with pytest.raises(grpc.RpcError) as info:
            await stub.Generate(pb.GenerateRequest(prompt="x", model="up-chat"), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert upstream.request_count == seen, "an open breaker sends nothing upstream"


async def test_provider_concurrency_is_one_pool_for_both_doors(
    http: aiohttp.ClientSession,
) -> None:
    s = settings(providers=slow_sim(200, 10, max_concurrency=1))
    async with running_server(s) as rs:
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        call = stub.GenerateStream(
            pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="x", model="sim-small"))
        )
        await call.read()  # started: the provider's one slot is held by the gRPC stream
        async with http.post(url(rs, CHAT), json=chat_body()) as r:
            assert r.status == 503
            assert (await r.json())["error"]["code"] == "overloaded"
        call.cancel()
        book = rs.server.provider_books["simulated"]
        for _ in range(500):  # the cancelled stream gives its slot back asynchronously
            if book.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert book.in_flight == 0
        async with http.post(url(rs, CHAT), json=chat_body(stream=True)) as r:
            assert r.status == 200
            await r.content.readline()  # now the HTTP stream holds the slot
            with pytest.raises(grpc.RpcError) as info:
                await stub.Generate(pb.GenerateRequest(prompt="x", model="sim-small"), timeout=10)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            r.close()


async def test_a_budget_is_one_ledger_for_both_doors(http: aiohttp.ClientSession) -> None:
    from aurea.v1 import ledger_pb2, ledger_pb2_grpc

    s = settings()
    async with running_server(s) as rs:
        ledger = ledger_pb2_grpc.LedgerServiceStub(rs.channel)
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        body = chat_body(aurea={"job_id": "shared-job"})
        async with http.post(url(rs, CHAT), json=body) as r:
            assert r.status == 200
            spent_http = int(r.headers["x-aurea-cost-nanos"])
        reply = await stub.Generate(
            pb.GenerateRequest(prompt="hello", model="sim-small", job_id="shared-job")
        )
        job = (await ledger.GetJob(ledger_pb2.GetJobRequest(job_id="shared-job"))).job
        assert job.calls == 2 and job.cost_nanos == spent_http + reply.cost_nanos
        # A budget set over gRPC (and already spent) refuses the next call at the HTTP door.
        await ledger.SetBudget(ledger_pb2.SetBudgetRequest(job_id="shared-job", budget_nanos=1))
        async with http.post(url(rs, CHAT), json=body) as r:
            assert r.status == 429
            assert r.headers["x-should-retry"] == "false"  # more time will not make more money
            error = (await r.json())["error"]
        assert error["type"] == "insufficient_quota" and error["code"] == "insufficient_quota"
        with pytest.raises(grpc.RpcError) as info:
            await stub.Generate(pb.GenerateRequest(prompt="x", job_id="shared-job"), timeout=10)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_the_door_caps_requests_served_at_once(http: aiohttp.ClientSession) -> None:
    s = settings(providers=slow_sim(100, 10), http={"max_concurrent_requests": 1})
    async with running_server(s) as rs:
        async with http.post(url(rs, CHAT), json=chat_body(stream=True)) as r:
            await r.content.readline()  # one request in flight: the cap
            async with http.post(url(rs, CHAT), json=chat_body()) as second:
                assert second.status == 503
                assert second.headers["Retry-After"] == "1"
                assert (await second.json())["error"]["code"] == "overloaded"
            r.close()
        assert rs.server.http is not None
        for _ in range(200):
            if rs.server.http.active == 0:
                break
            await asyncio.sleep(0.01)
        async with http.post(url(rs, CHAT), json=chat_body()) as r:
            assert r.status == 200


async def test_a_stream_cut_mid_answer_is_continued_by_prefill_on_the_door(
    upstream: FakeOpenAI, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aurea.testing.fakes import FakeAnthropic

    monkeypatch.setenv("AUREA_TEST_HTTP_CONT_KEY", "sk-cont")
    async with FakeAnthropic(api_key="sk-cont") as cont:
        cont.reply = upstream.reply
        raw = {
            "providers": {
                "up": {"kind": "openai", "base_url": upstream.base_url, "api_key_env": KEY_ENV},
                "cont": {
                    "kind": "anthropic",
                    "base_url": cont.base_url,
                    "api_key_env": "AUREA_TEST_HTTP_CONT_KEY",
                },
            },
            "models": {
                "up-chat": {"provider": "up", "upstream": "gpt-4o-mini"},
                "cont": {
                    "provider": "cont",
                    "upstream": "claude-3-5-haiku-20241022",
                    "accepts_prefill": True,
                },
            },
        }
        s = settings(routing={"default_model": "up-chat"}, retry={"max_retries": 0}, **raw)
        upstream.inject(Fault(FaultKind.CUT_STREAM, after_tokens=3))
        async with running_server(s) as rs:
            body = {**chat_body(stream=True), "model": "up-chat", "aurea": {"fallbacks": ["cont"]}}
            async with http.post(url(rs, CHAT), json=body) as r:
                assert r.status == 200
                raw_body = await r.read()
    events = sse_events(raw_body)
    assert events[-1] == "[DONE]", "continued by prefill: a whole answer"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two three four five six seven eight"
    assert chunks[0]["model"] == "up-chat" and chunks[-1]["model"] == "cont"
    assert chunks[-1]["aurea"]["provider"] == "cont"
