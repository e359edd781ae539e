"""The simulated provider's plan cache: keyed by a digest (never the prompt), bounded by bytes,
and big prompts hashed off the event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from typing import Any

from provider_helpers import chat, collect

from aurea.providers._base import (
    ChatMessage,
    ImagePart,
    ProviderRequest,
    ProviderSpec,
    Role,
    TextPart,
)
from aurea.providers.simulated import PLAN_CACHE_BYTES, SimulatedProvider

MiB = 1024 * 1024


def provider(**options: Any) -> SimulatedProvider:
    return SimulatedProvider(ProviderSpec(name="sim", kind="simulated", options=options))


def retained(value: Any, seen: set[int] | None = None) -> int:
    """Bytes of every str/bytes reachable from ``value`` through containers and dataclasses."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, str | bytes):
        return sys.getsizeof(value)
    if isinstance(value, dict):
        return sum(retained(k, seen) + retained(v, seen) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return sum(retained(v, seen) for v in value)
    if dataclasses.is_dataclass(value):
        return sum(retained(getattr(value, f.name), seen) for f in dataclasses.fields(value))
    return 0


async def test_big_prompts_are_not_kept() -> None:
    sim = provider(token_delay_ms=0)
    for i in range(16):  # 16 prompts of 1 MiB: the old cache kept all 16 MiB
        prompt = f"{i} " + "word " * (MiB // 5)
        got = await collect(sim.stream(chat(prompt)))
        assert got.usage.input_tokens == MiB // 5 + 1 + 3 + 1
    assert (await sim.complete(chat(prompt))).text == got.text  # from the cache: the same
    assert len(sim._plans) == 16
    assert retained(sim._plans) < MiB // 4  # not even a quarter of one prompt
    assert sim.plan_cache_bytes <= PLAN_CACHE_BYTES


async def test_the_cache_is_bounded_by_bytes() -> None:
    sim = provider(token_delay_ms=0, min_tokens=200, max_tokens=200)
    for i in range(2000):
        sim.plan(chat(f"prompt {i}"))
    assert 0 < sim.plan_cache_bytes <= PLAN_CACHE_BYTES
    assert len(sim._plans) < 2000  # the oldest were evicted
    assert retained(sim._plans) <= PLAN_CACHE_BYTES
    first = sim.plan(chat("prompt 0"))  # evicted, recomputed: the same answer
    assert first == provider(token_delay_ms=0, min_tokens=200, max_tokens=200).plan(
        chat("prompt 0")
    )


async def test_the_key_covers_everything_a_plan_depends_on() -> None:
    sim = provider(token_delay_ms=0)
    base = sim.plan(chat("hello"))
    assert sim.plan(chat("hello", max_tokens=2))[0] == base[0][:2]
    assert sim.plan(chat("hello", seed=1)) != base or sim.plan(chat("hello", seed=2)) != base
    assert sim.plan(chat("hello", model="other")) != base
    assert sim.plan(chat("hello")) == base
    assert len(sim._plans) >= 4


async def test_the_key_covers_content_parts_and_tool_results() -> None:
    """Messages given as parts (text, images) and tool results are part of the plan's key: the
    same words with an image, another image, or parts of other text get their own plans."""
    sim = provider(token_delay_ms=0)

    def asked(*parts: TextPart | ImagePart, answers: str = "") -> ProviderRequest:
        role = Role.TOOL if answers else Role.USER
        message = ChatMessage(role, "", parts=parts, tool_call_id=answers)
        return ProviderRequest(model="test-model", messages=(message,))

    words = asked(TextPart("look"))
    plans = {
        tuple(sim.plan(r)[0])
        for r in (
            words,
            asked(TextPart("look"), ImagePart(data=b"\x89PNG one", media_type="image/png")),
            asked(TextPart("look"), ImagePart(data=b"\x89PNG two", media_type="image/png")),
            asked(TextPart("look"), ImagePart(url="https://example.com/a.png")),
            asked(TextPart("other")),
            asked(TextPart("look"), answers="call_1"),
        )
    }
    assert len(plans) == 6
    assert sim.plan(asked(TextPart("look"))) == sim.plan(words)


async def test_a_big_prompt_does_not_stall_the_loop() -> None:
    sim = provider(token_delay_ms=0)
    prompt = "word " * (MiB // 4 // 5)  # over the inline limit
    ticks = 0
    task = asyncio.ensure_future(sim.complete(chat(prompt)))
    while not task.done():
        await asyncio.sleep(0)
        ticks += 1
    assert task.result().usage is not None
    # Hashing and counting ran on a worker thread: the loop went round meanwhile (inline, the
    # task would have finished within its first step: one tick).
    assert ticks >= 2
