"""The cache's parts without a server: the canonical form keys hash, the value codec, the key
layout and its filters, and the memory LRU (entries, bytes, TTL on a fake clock)."""

from __future__ import annotations

import dataclasses

import pytest

from aurea.cache import NO_VALUE, Answer, CacheKey, CacheKind, KeyFilter, MemoryBackend
from aurea.cache._codec import CodecError, canonical, decode, encode
from aurea.cache._keys import (
    EMBED_IGNORED,
    GENERATE_IGNORED,
    _fields,
    embed_key,
    generate_key,
)
from aurea.inference import Delta, EmbedCall, EmbedResult, Final, GenerateCall
from aurea.providers._base import (
    ChatMessage,
    FinishReason,
    GenerationOptions,
    ImagePart,
    ReasoningDelta,
    ReasoningEffort,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from aurea.types import Policy


def gcall(**kw: object) -> GenerateCall:
    base: dict[str, object] = {
        "request_id": "r1",
        "messages": (ChatMessage(Role.USER, "hi"),),
        "temperature": 0.0,
    }
    base.update(kw)
    return GenerateCall(**base)  # type: ignore[arg-type]


def final(**kw: object) -> Final:
    base: dict[str, object] = {
        "finish_reason": FinishReason.STOP,
        "usage": Usage(input_tokens=3, output_tokens=2),
        "cost_nanos": 1234,
        "latency_s": 0.5,
        "ttft_s": 0.1,
        "model": "m",
        "provider": "p",
        "attempts": 1,
    }
    base.update(kw)
    return Final(**base)  # type: ignore[arg-type]


# -- keys ------------------------------------------------------------------------------------


def test_canonical_form_ignores_container_types_and_key_order() -> None:
    assert canonical({"b": (1, 2), "a": [3]}) == canonical({"a": (3,), "b": [1, 2]})
    # a number is its value: temperature 0 (Python) and 0.0 (protobuf) are one key
    assert canonical(0) == canonical(0.0) and canonical(2) == canonical(2.0)
    assert canonical(0.5) != canonical(0) and canonical("1") != canonical(1)
    with pytest.raises(CodecError):
        canonical(float("nan"))
    with pytest.raises(CodecError):
        canonical(object())


def test_every_answer_changing_field_changes_the_key() -> None:
    call = gcall()
    # Every field of the call not listed as ignored goes into the digest, by construction:
    # fields added later (issue 15's options, say) are covered without touching the cache.
    every = {f.name for f in dataclasses.fields(GenerateCall)}
    assert set(_fields(call, GENERATE_IGNORED)) == every - GENERATE_IGNORED
    base = generate_key(call, "t", "m")
    changed: list[tuple[str, object]] = [
        ("messages", (ChatMessage(Role.USER, "hello"),)),
        ("messages", (ChatMessage(Role.SYSTEM, "hi"),)),
        ("max_tokens", 5),
        ("temperature", 0.5),
        ("top_p", 0.9),
        ("stop", ("x",)),
        ("seed", 7),
        ("options", GenerationOptions(tools=(Tool(name="t"),))),
        ("options", GenerationOptions(reasoning=ReasoningEffort.LOW)),
        ("options", GenerationOptions(response_format=ResponseFormat())),
    ]
    keys = {generate_key(dataclasses.replace(call, **{n: v}), "t", "m") for n, v in changed}
    assert base not in keys and len(keys) == len(changed)
    assert generate_key(call, "t", "other-model") != base
    assert generate_key(call, "u", "m").digest == base.digest  # the tenant is the namespace
    assert generate_key(call, "u", "m") != base


def test_who_asks_and_how_it_travels_do_not_change_the_key() -> None:
    base = generate_key(gcall(), "t", "m")
    same = gcall(
        request_id="other",
        job_id="j",
        principal="someone",
        labels={"a": "b"},
        deadline=12.0,
        usage_interval=3,
        model="alias",
        policy=Policy.COST,
        fallbacks=("x",),
        cache_bypass=True,
    )
    assert generate_key(same, "t", "m") == base


def test_images_are_keyed_by_their_bytes() -> None:
    def with_image(data: bytes) -> GenerateCall:
        msg = ChatMessage(
            Role.USER,
            "look",
            parts=(TextPart("look"), ImagePart(data=data, media_type="image/png")),
        )
        return gcall(messages=(msg,))

    one = generate_key(with_image(b"\x89PNG1"), "t", "m")
    assert one == generate_key(with_image(b"\x89PNG1"), "t", "m")
    assert one != generate_key(with_image(b"\x89PNG2"), "t", "m")


def test_embedding_keys_cover_the_inputs_and_the_model() -> None:
    call = EmbedCall(request_id="r", inputs=("a", "b"))
    key = embed_key(call, "t", "e")
    assert key.kind is CacheKind.EMBEDDING
    assert embed_key(dataclasses.replace(call, inputs=("b", "a")), "t", "e") != key
    assert embed_key(dataclasses.replace(call, job_id="j", request_id="x"), "t", "e") == key
    assert embed_key(call, "t", "e2") != key
    assert {f.name for f in dataclasses.fields(EmbedCall)} - EMBED_IGNORED == {"inputs"}


def test_redis_key_layout_escapes_parts_and_tags_the_digest() -> None:
    key = CacheKey(CacheKind.LLM, "team:a*{x}", "gpt/4o", "ab12")
    assert key.redis("aurea") == "aurea:cache:llm:team%3Aa%2A%7Bx%7D:gpt%2F4o:{ab12}"
    assert KeyFilter().pattern("aurea") == "aurea:cache:*:*:*:{*}"
    flt = KeyFilter(kind=CacheKind.EMBEDDING, namespace="t")
    assert flt.pattern("p") == "p:cache:embedding:t:*:{*}"
    assert flt.matches(CacheKey(CacheKind.EMBEDDING, "t", "m", "d"))
    assert not flt.matches(CacheKey(CacheKind.LLM, "t", "m", "d"))
    assert not flt.matches(CacheKey(CacheKind.EMBEDDING, "u", "m", "d"))


# -- stored values ---------------------------------------------------------------------------


def test_answers_round_trip_through_bytes() -> None:
    answer = Answer(
        final=final(tool_calls=(ToolCall(id="c1", name="f", arguments='{"x": 1}'),)),
        events=(
            Delta("hello "),
            ToolCallDelta(index=0, id="c1", name="f", arguments='{"x"'),
            ReasoningDelta("thinking"),
        ),
    )
    assert decode(encode(answer)) == answer
    vectors = EmbedResult(
        model="e",
        provider="p",
        vectors=(tuple(i / 7 for i in range(16)), (0.5,) * 9),
        usage=Usage(input_tokens=2),
        cost_nanos=5,
    )
    assert decode(encode(vectors)) == vectors  # packed floats come back exactly
    plain = {"a": [1, (2, 3)], "b": None, "c": b"\x00"}
    assert decode(encode(plain)) == plain


def test_the_codec_rebuilds_only_allowlisted_types() -> None:
    @dataclasses.dataclass(frozen=True)
    class Mine:
        x: int

    with pytest.raises(CodecError):
        encode(Mine(1))
    with pytest.raises(CodecError):
        decode(b'AC1\n{"!t":"Popen","f":{"args":"sh"}}')
    with pytest.raises(CodecError):
        decode(b"garbage")


def test_a_streamed_plain_answer_serves_a_unary_call_and_back() -> None:
    streamed = Answer(final=final(), events=(Delta("one "), Delta("two")))
    assert streamed.unary() == final(text="one two")
    unary = Answer(final=final(text="x" * 1300))
    events = unary.stream()
    assert events is not None and len(events) == 3
    assert "".join(e.text for e in events if isinstance(e, Delta)) == "x" * 1300
    tools = Answer(final=final(), events=(ToolCallDelta(index=0, id="c", name="f"),))
    assert tools.unary() is None  # tool calls travel differently in each form
    assert Answer(final=final(reasoning="r")).stream() is None


# -- the memory LRU --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def key(i: int, kind: CacheKind = CacheKind.LLM) -> CacheKey:
    return CacheKey(kind, "t", "m", f"{i:064x}")


async def test_lru_is_bounded_by_entries_and_evicts_the_least_recent() -> None:
    m = MemoryBackend(max_entries=2, max_bytes=1 << 20, clock=Clock())
    for i in range(2):
        assert await m.put(key(i), i, encode(i), 0)
    assert await m.get(key(0)) == 0  # 0 is now the most recent
    await m.put(key(2), 2, encode(2), 0)
    assert await m.get(key(1)) is NO_VALUE and await m.get(key(0)) == 0
    assert m.evictions == 1


async def test_lru_is_bounded_by_bytes() -> None:
    blob = encode("x" * 400)
    m = MemoryBackend(max_entries=100, max_bytes=1000, clock=Clock())
    for i in range(5):
        await m.put(key(i), "v", blob, 0)
    usage = await m.usage()
    entries, size = usage[CacheKind.LLM]
    assert entries == 2 and size <= 1000
    assert not await m.put(key(9), "v", encode("y" * 2000), 0)  # larger than the whole cache


async def test_entries_expire_by_their_ttl_on_the_injected_clock() -> None:
    clock = Clock()
    m = MemoryBackend(max_entries=10, max_bytes=1 << 20, clock=clock)
    await m.put(key(1), "a", encode("a"), 10.0)
    await m.put(key(2), "b", encode("b"), 0)  # no age limit
    clock.now += 9.9
    assert await m.get(key(1)) == "a"
    clock.now += 0.2
    assert await m.get(key(1)) is NO_VALUE
    assert await m.get(key(2)) == "b"


async def test_mutable_values_are_decoded_afresh_on_every_hit() -> None:
    m = MemoryBackend(max_entries=10, max_bytes=1 << 20, clock=Clock())
    await m.put(key(1), NO_VALUE, encode({"a": [1]}), 0)
    got = await m.get(key(1))
    got["a"].append(2)
    assert await m.get(key(1)) == {"a": [1]}


async def test_clear_by_kind_and_namespace_counts_what_it_removed() -> None:
    m = MemoryBackend(max_entries=10, max_bytes=1 << 20, clock=Clock())
    await m.put(key(1), 1, encode(1), 0)
    await m.put(key(2, CacheKind.EMBEDDING), 2, encode(2), 0)
    await m.put(CacheKey(CacheKind.LLM, "u", "m", "d"), 3, encode(3), 0)
    removed, freed = await m.clear(KeyFilter(kind=CacheKind.LLM, namespace="t"))
    assert removed == 1 and freed > 0
    removed, _ = await m.clear(KeyFilter())
    assert removed == 2 and await m.usage() == {}
