"""The RunPod Serverless adapter against the fake endpoint: run/status, runsync, stream, cancel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from provider_helpers import KEY_ENV, chat, collect, make_spec, wait_for_abort

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    ProviderAuthError,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    StreamBroken,
    UpstreamRejected,
)
from aurea.providers._base import (
    EmbedRequest,
    FinishReason,
    Provider,
    TextDelta,
    Timeouts,
    Usage,
)
from aurea.providers.runpod import RunPodProvider
from aurea.testing.fakes import Fault, FaultKind
from aurea.testing.fakes.runpod import FakeRunPod


@pytest.fixture
async def fake(api_key: str) -> AsyncIterator[FakeRunPod]:
    async with FakeRunPod(api_key=api_key) as server:
        yield server


def runpod_spec(fake: FakeRunPod, **extra: Any) -> Any:
    options = {"endpoint_id": fake.endpoint_id, "poll_interval_s": 0.01, **extra}
    return make_spec("runpod", fake.base_url, **options)


@pytest.fixture
async def provider(fake: FakeRunPod) -> AsyncIterator[RunPodProvider]:
    adapter = RunPodProvider(runpod_spec(fake))
    yield adapter
    await adapter.aclose()


async def test_runsync_chat(fake: FakeRunPod, provider: RunPodProvider, api_key: str) -> None:
    assert isinstance(provider, Provider)
    completion = await provider.complete(chat("hello runpod world", max_tokens=64, temperature=0))
    assert completion.text == "Echo: hello runpod world"
    assert completion.usage == Usage(input_tokens=3, output_tokens=4)
    assert completion.finish.reason is FinishReason.STOP
    sent = fake.last_request
    assert sent is not None
    assert sent.path == f"/v2/{fake.endpoint_id}/runsync"
    assert sent.headers["Authorization"] == f"Bearer {api_key}"
    assert sent.body == {
        "input": {
            "messages": [{"role": "user", "content": "hello runpod world"}],
            "sampling_params": {"max_tokens": 64, "temperature": 0},
        }
    }


async def test_runsync_that_outlasts_its_wait_is_polled(
    fake: FakeRunPod, provider: RunPodProvider
) -> None:
    fake.runsync_wait_s = 0.0
    fake.queue_delay_s = 0.05
    completion = await provider.complete(chat("slow one"))
    assert completion.text == "Echo: slow one"
    assert any(r.path.startswith(f"/v2/{fake.endpoint_id}/status/") for r in fake.requests)


async def test_stream_polls_stream_endpoint(fake: FakeRunPod, provider: RunPodProvider) -> None:
    fake.token_delay_s = 0.005
    got = await collect(provider.stream(chat("one two three")))
    assert got.text == "Echo: one two three"
    assert got.usage == Usage(input_tokens=3, output_tokens=4)
    assert got.finish.reason is FinishReason.STOP
    assert fake.requests[0].body["input"]["stream"] is True
    assert any("/stream/" in r.path for r in fake.requests)


async def test_stream_of_a_non_streaming_handler_reads_status(
    fake: FakeRunPod, provider: RunPodProvider
) -> None:
    original = provider._input
    provider._input = lambda request, stream: original(request, stream=False)  # type: ignore[method-assign]
    got = await collect(provider.stream(chat("whole answer")))
    assert [e for e in got.events if isinstance(e, TextDelta)] == [TextDelta("Echo: whole answer")]
    assert not got.usage.estimated


async def test_run_and_cancel_on_cancellation(fake: FakeRunPod, provider: RunPodProvider) -> None:
    output = await provider.run({"messages": [{"role": "user", "content": "x"}]})
    assert output == {
        "output": [{"choices": [{"tokens": ["Echo: x"]}], "usage": {"input": 1, "output": 2}}]
    }
    fake.queue_delay_s = 30
    fake.job_submitted.clear()
    task = asyncio.create_task(provider.run({"messages": []}))
    await asyncio.wait_for(fake.job_submitted.wait(), timeout=5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await wait_for_abort(fake)
    assert len(fake.cancelled) == 1
    assert fake.jobs[fake.cancelled[0]].status == "CANCELLED"


async def test_closing_a_stream_cancels_the_job(fake: FakeRunPod, provider: RunPodProvider) -> None:
    fake.reply = lambda prompt: " ".join(["t"] * 500)
    fake.token_delay_s = 0.01
    stream = provider.stream(chat("go"))
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    await wait_for_abort(fake)
    assert fake.cancelled


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.RATE_LIMIT, ProviderRateLimited),
        (FaultKind.SERVER_ERROR, ProviderServerError),
        (FaultKind.OVERLOADED, ProviderOverloaded),
        (FaultKind.UNAUTHORIZED, ProviderAuthError),
        (FaultKind.CONTEXT_LENGTH, ContextLengthExceeded),
        (FaultKind.CONTENT_FILTER, ContentFiltered),
    ],
)
@pytest.mark.parametrize("streaming", [True, False])
async def test_faults(
    fake: FakeRunPod,
    provider: RunPodProvider,
    kind: FaultKind,
    error: type[ProviderError],
    streaming: bool,
) -> None:
    fake.inject(Fault(kind, retry_after="6"))
    with pytest.raises(error) as caught:
        if streaming:
            await collect(provider.stream(chat("hi")))
        else:
            await provider.complete(chat("hi"))
    assert type(caught.value) is error
    if kind is FaultKind.RATE_LIMIT:
        assert caught.value.retry_after_s == 6.0


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.CUT_STREAM, StreamBroken),  # the job vanished
        (FaultKind.MALFORMED, StreamBroken),
        (FaultKind.STREAM_ERROR, ProviderServerError),  # the worker failed mid-job
        (FaultKind.EARLY_EOF, ProviderTimeout),  # the endpoint's execution timeout
    ],
)
async def test_stream_faults(
    fake: FakeRunPod, provider: RunPodProvider, kind: FaultKind, error: type[ProviderError]
) -> None:
    fake.token_delay_s = 0.005
    fake.inject(Fault(kind, after_tokens=2))
    with pytest.raises(error) as caught:
        await collect(provider.stream(chat("one two three four")))
    assert type(caught.value) is error


async def test_first_output_deadline_cancels_the_job(fake: FakeRunPod) -> None:
    fake.queue_delay_s = 30
    timeouts = Timeouts(connect_s=1, first_byte_s=0.1, idle_s=1, total_s=5)
    adapter = RunPodProvider(
        make_spec(
            "runpod",
            fake.base_url,
            timeouts=timeouts,
            endpoint_id=fake.endpoint_id,
            poll_interval_s=0.01,
        )
    )
    try:
        with pytest.raises(ProviderTimeout, match="first_byte_s"):
            await collect(adapter.stream(chat("hi")))
    finally:
        await adapter.aclose()
    assert len(fake.cancelled) == 1


async def test_missing_key_env(fake: FakeRunPod, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    adapter = RunPodProvider(runpod_spec(fake))
    try:
        with pytest.raises(ProviderAuthError, match=KEY_ENV):
            await adapter.run({})
    finally:
        await adapter.aclose()
    assert fake.request_count == 0


async def test_config(fake: FakeRunPod, provider: RunPodProvider) -> None:
    with pytest.raises(ValueError, match="endpoint_id"):
        RunPodProvider(make_spec("runpod", ""))
    with pytest.raises(UpstreamRejected, match="no embeddings"):
        await provider.embed(EmbedRequest(model="m", inputs=("x",)))
