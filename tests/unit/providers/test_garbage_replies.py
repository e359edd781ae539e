"""Every adapter fed garbage through its fake: bodies that are not JSON, and valid replies with
each field in turn replaced by a value of the wrong type or range. Whatever comes in, what comes
out is either a well-formed result (validated counts, text as text) or a ProviderError; never
another exception."""

from __future__ import annotations

from typing import Any

import pytest
from provider_helpers import chat, collect
from vendor_shapes import (
    AWS_ENV,
    VENDOR_IDS,
    VENDORS,
    WRONG_VALUES,
    Vendor,
    check_completion,
    check_events,
    paths,
    replaced,
)

from aurea.errors import ProviderError
from aurea.providers._base import EmbedRequest, Provider
from aurea.testing.fakes import FakeServer, Scripted

SSE_KINDS = frozenset({"openai", "anthropic", "gemini", "http"})  # streams of SSE chunks

# Bodies no vendor's parser can take: broken JSON, JSON of the wrong kind, a nesting bomb.
NOT_JSON = [
    b"",
    b"{not json",
    b"\xff\xfe\x00garbage",
    b"null",
    b"5",
    b'"text"',
    b"[]",
    b"{}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a": ' + b"1" * 5000 + b"}",
    b"NaN",
]


@pytest.fixture
def env(api_key: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    return api_key


def mutations(document: Any) -> list[Any]:
    """``document`` with each of its values in turn replaced by each wrong value."""
    return [replaced(document, path, value) for path in paths(document) for value in WRONG_VALUES]


async def survives(fake: FakeServer, scripted: list[Scripted], call: Any) -> str:
    """Run ``call`` against ``scripted``; "ok" or "error", anything else fails the test."""
    fake.scripted.clear()
    fake.script(*scripted)
    try:
        await call()
    except ProviderError:
        return "error"
    finally:
        fake.scripted.clear()
    return "ok"


@pytest.mark.parametrize("vendor", VENDORS, ids=VENDOR_IDS)
async def test_garbage_unary_replies(env: str, vendor: Vendor) -> None:
    async with vendor.fake() as fake:
        provider: Provider = vendor.make(fake)

        async def complete() -> None:
            check_completion(await provider.complete(chat("one two")))

        try:
            valid = vendor.unary_doc(vendor.usage(3, 2, 1))
            assert await survives(fake, vendor.unary(valid), complete) == "ok"
            outcomes = []
            for body in NOT_JSON:
                shape = vendor.unary(valid)[0]
                garbage = Scripted(body=body, path=shape.path)
                outcomes.append(await survives(fake, [garbage], complete))
            for document in mutations(valid):
                outcomes.append(await survives(fake, vendor.unary(document), complete))
        finally:
            await provider.aclose()
    assert "error" in outcomes and "ok" in outcomes  # both ways out were taken


@pytest.mark.parametrize("vendor", VENDORS, ids=VENDOR_IDS)
async def test_garbage_streams(env: str, vendor: Vendor) -> None:
    async with vendor.fake() as fake:
        provider: Provider = vendor.make(fake)

        async def stream() -> None:
            check_events((await collect(provider.stream(chat("one two")))).events)

        try:
            valid = vendor.stream_docs(vendor.usage(3, 2, 1))
            assert await survives(fake, vendor.stream(valid), stream) == "ok"
            outcomes = []
            for index in range(len(valid)):
                for body in NOT_JSON:
                    garbage = vendor.stream(valid)
                    if garbage[0].frames:  # SSE: one event's data is the garbage
                        frames = list(garbage[0].frames)
                        frames[index] = b"data: " + body + b"\n\n"
                        garbage[0].frames = tuple(frames)
                    else:  # polled JSON: one reply is the garbage
                        garbage[index].body = body
                    outcomes.append(await survives(fake, garbage, stream))
            for documents in mutations(valid):
                outcomes.append(await survives(fake, vendor.stream(documents), stream))
        finally:
            await provider.aclose()
    # A malformed SSE chunk is skipped (the stream may still complete), so an SSE vendor may
    # survive every single bad chunk; a polled vendor's bad reply still fails its call.
    assert "ok" in outcomes
    assert "error" in outcomes or vendor.kind in SSE_KINDS


EMBED_REPLIES = {
    "openai": {
        "data": [{"index": 0, "embedding": [0.1, 0.2]}, {"index": 1, "embedding": [0.3, 0.4]}],
        "usage": {"prompt_tokens": 4},
    },
    "gemini": {"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]},
}


@pytest.mark.parametrize(
    "vendor", [v for v in VENDORS if v.kind in EMBED_REPLIES], ids=lambda v: v.kind
)
async def test_garbage_embeddings(env: str, vendor: Vendor) -> None:
    valid = EMBED_REPLIES[vendor.kind]
    request = EmbedRequest(model="m", inputs=("a b", "c"))
    async with vendor.fake() as fake:
        provider: Provider = vendor.make(fake)

        async def embed() -> None:
            result = await provider.embed(request)
            assert len(result.vectors) == 2
            assert all(type(x) is float for vector in result.vectors for x in vector)
            assert result.usage is not None and result.usage.input_tokens >= 0

        try:
            assert await survives(fake, [Scripted.json(valid)], embed) == "ok"
            outcomes = [await survives(fake, [Scripted(body=b)], embed) for b in NOT_JSON]
            for document in mutations(valid):
                outcomes.append(await survives(fake, [Scripted.json(document)], embed))
        finally:
            await provider.aclose()
    assert "error" in outcomes and "ok" in outcomes


@pytest.mark.parametrize("vendor", VENDORS[:3], ids=VENDOR_IDS[:3])
async def test_garbage_model_lists(env: str, vendor: Vendor) -> None:
    valid: Any = (
        {"models": [{"name": "models/a"}], "nextPageToken": ""}
        if vendor.kind == "gemini"
        else {"data": [{"id": "a"}, {"id": "b"}]}
    )
    async with vendor.fake() as fake:
        provider: Provider = vendor.make(fake)

        async def models() -> None:
            names = await provider.list_models()
            assert all(isinstance(name, str) for name in names)

        try:
            outcomes = [await survives(fake, [Scripted(body=b)], models) for b in NOT_JSON]
            for document in mutations(valid):
                outcomes.append(await survives(fake, [Scripted.json(document)], models))
        finally:
            await provider.aclose()
    assert "error" in outcomes and "ok" in outcomes
