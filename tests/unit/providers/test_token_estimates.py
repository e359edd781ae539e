"""Token estimates: exact BPE counts from shipped tiktoken data, else the 4-characters rule;
never an exception (whatever the input), and off the event loop for big prompts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aurea.providers import _tokens
from aurea.providers._base import ChatMessage, Role, Usage
from aurea.providers._tokens import (
    INLINE_LIMIT_CHARS,
    encoding_name_for,
    estimate_chars,
    estimate_messages_tokens,
    estimate_messages_tokens_async,
    estimate_text_tokens,
    estimate_text_tokens_async,
    estimate_usage,
    estimate_usage_async,
    tokenizer_available,
)


@pytest.fixture(autouse=True)
def fresh_block_cache() -> Iterator[None]:
    # Counts of long-run blocks are cached per encoding name; tests swap the encoding.
    _tokens._count_block.cache_clear()
    yield
    _tokens._count_block.cache_clear()


def test_bpe_data_is_installed() -> None:
    # bpe-openai is a core dependency: the exact counts below must run everywhere (no skip).
    assert tokenizer_available("gpt-4o") and tokenizer_available("gpt-4")


def test_encoding_choice() -> None:
    assert encoding_name_for("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for("gpt-4") == "cl100k_base"
    assert encoding_name_for("text-embedding-3-small") == "cl100k_base"
    assert encoding_name_for("claude-sonnet-4") == "cl100k_base"  # unknown: an approximation
    assert encoding_name_for("text-davinci-003") == "cl100k_base"  # p50k is not shipped


@pytest.mark.parametrize(
    ("text", "model", "count"),
    [
        ("hello world", "gpt-4", 2),
        ("hello world", "gpt-4o", 2),
        ("hello world, how are you doing today?", "gpt-4o", 9),
        ("<|endoftext|>", "gpt-4", 7),  # special tokens in text are plain text here
        ("", "gpt-4o", 0),
    ],
)
def test_exact_counts(text: str, model: str, count: int) -> None:
    assert estimate_text_tokens(text, model) == count


def test_fallback_is_four_chars_per_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tokens, "_encoding", lambda name: None)
    assert estimate_text_tokens("abcd", "gpt-4o") == 1
    assert estimate_text_tokens("abcde", "gpt-4o") == 2
    assert estimate_text_tokens("", "gpt-4o") == 0
    assert not tokenizer_available("gpt-4o")


def test_messages_add_chat_framing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tokens, "_encoding", lambda name: None)
    messages = [ChatMessage(Role.SYSTEM, "abcdefgh"), ChatMessage(Role.USER, "abcd")]
    # 3 priming + per message 3 + role + content: system(2) + 8 chars(2); user(1) + 4 chars(1).
    assert estimate_messages_tokens(messages, "m") == 3 + (3 + 2 + 2) + (3 + 1 + 1)
    usage = estimate_usage(messages, "abcdefgh", "m")
    assert usage == Usage(input_tokens=15, output_tokens=2, estimated=True)


def test_data_files_must_match_the_published_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cl100k_base.tiktoken").write_bytes(b"aGVsbG8= 0\n")
    monkeypatch.setenv("AUREA_TOKENIZER_DIR", str(tmp_path))
    monkeypatch.setattr(_tokens.importlib.util, "find_spec", lambda name: None)
    expected = _tokens._ENCODINGS["cl100k_base"][0]
    assert _tokens._read_ranks("cl100k_base", expected) is None
    assert _tokens._read_ranks("cl100k_base", "not-checked-here") is None


def test_local_directory_is_used_when_the_hash_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    data = b"aGVsbG8= 0\nd29ybGQ= 1\n"
    (tmp_path / "cl100k_base.tiktoken").write_bytes(data)
    monkeypatch.setenv("AUREA_TOKENIZER_DIR", str(tmp_path))
    ranks = _tokens._read_ranks("cl100k_base", hashlib.sha256(data).hexdigest())
    assert ranks == {b"hello": 0, b"world": 1}


async def test_preload_in_a_thread() -> None:
    import asyncio

    await asyncio.to_thread(_tokens.preload, ["gpt-4o", "claude-x"])
    assert tokenizer_available("gpt-4o") is (_tokens._encoding("o200k_base") is not None)


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4", "claude-x"])
@pytest.mark.parametrize("run", [" ", "\t", "\n", " \t", "a", "é"])
def test_pathological_runs_are_counted_not_a_panic(model: str, run: str) -> None:
    # A million spaces then one letter made tiktoken's regex panic (pyo3 PanicException, a
    # BaseException) with the real tokenizer; long runs of one letter made its BPE quadratic.
    text = run * (1_000_000 // len(run)) + "x"
    count = estimate_text_tokens(text, model)
    assert 0 < count <= len(text)


def test_long_runs_inside_ordinary_text() -> None:
    text = "hello world " + " " * 5000 + "and " + "z" * 5000 + " goodbye"
    count = estimate_text_tokens(text, "gpt-4o")
    assert estimate_text_tokens("hello world", "gpt-4o") < count <= len(text)
    messages = [ChatMessage(Role.USER, "\t" * 2_000_000 + "?")]
    assert estimate_messages_tokens(messages, "gpt-4o") > 3


class PanicException(BaseException):
    """Stands in for pyo3_runtime.PanicException (not an Exception)."""


class Exploding:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def encode_ordinary(self, text: str) -> list[int]:
        raise self.exc


def test_a_tokenizer_panic_falls_back_to_the_character_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_tokens, "_encoding", lambda name: Exploding(PanicException("boom")))
    assert estimate_text_tokens("abcdefgh", "gpt-4o") == 2
    assert estimate_text_tokens(" " * 4000 + "x", "gpt-4o") == estimate_chars(" " * 4000 + "x")
    assert estimate_usage([ChatMessage(Role.USER, "abcd")], "abcd", "m").output_tokens == 1


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(1), asyncio.CancelledError()])
def test_interrupts_still_propagate(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    monkeypatch.setattr(_tokens, "_encoding", lambda name: Exploding(exc))
    with pytest.raises(type(exc)):
        estimate_text_tokens("abcdefgh", "gpt-4o")


class BlockingEncoding:
    """Holds the estimating thread until the event loop has ticked ``ticks`` times, so the test
    proves the loop ran *during* the estimate without measuring any time."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release
        self.calls = 0

    def encode_ordinary(self, text: str) -> list[int]:
        self.calls += 1
        self.release.wait(timeout=10)  # inline on the loop, nothing can set it: 0 ticks
        return [0] * (len(text) // 4)


async def tick_while(task: asyncio.Task[Any], release: threading.Event, needed: int) -> int:
    ticks = 0
    while not task.done():
        await asyncio.sleep(0.01)
        ticks += 1
        if ticks >= needed:
            release.set()
    return ticks


@pytest.mark.parametrize("which", ["text", "messages", "usage"])
async def test_a_4mb_estimate_does_not_stall_the_loop(
    monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    release = threading.Event()
    encoding = BlockingEncoding(release)
    monkeypatch.setattr(_tokens, "_encoding", lambda name: encoding)
    prompt = "lorem ipsum dolor sit amet " * (4 * 1024 * 1024 // 27)
    ticks = 0

    async def estimate() -> int:
        if which == "text":
            return await estimate_text_tokens_async(prompt, "gpt-4o")
        messages = [ChatMessage(Role.SYSTEM, "be brief"), ChatMessage(Role.USER, prompt)]
        if which == "messages":
            return await estimate_messages_tokens_async(messages, "gpt-4o")
        return (await estimate_usage_async(messages, "ok", "gpt-4o")).input_tokens

    task = asyncio.ensure_future(estimate())
    ticks = await tick_while(task, release, needed=3)
    assert task.result() > 0
    assert ticks >= 3  # the loop kept running while the estimate was under way


async def test_small_estimates_run_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    class Recording:
        def encode_ordinary(self, text: str) -> list[int]:
            seen.append(threading.current_thread().name)
            return [0]

    monkeypatch.setattr(_tokens, "_encoding", lambda name: Recording())
    text = "ab " * ((INLINE_LIMIT_CHARS - 1) // 3)
    assert await estimate_text_tokens_async(text, "gpt-4o") == 1
    assert seen == [threading.current_thread().name]


async def test_async_and_sync_agree_with_the_real_tokenizer() -> None:
    prompt = "The quick brown fox jumps over the lazy dog. " * 2000  # 90 KB: a worker thread
    messages = [ChatMessage(Role.USER, prompt), ChatMessage(Role.ASSISTANT, "ok")]
    assert await estimate_text_tokens_async(prompt, "gpt-4o") == estimate_text_tokens(
        prompt, "gpt-4o"
    )
    assert await estimate_messages_tokens_async(messages, "gpt-4") == estimate_messages_tokens(
        messages, "gpt-4"
    )
    assert await estimate_usage_async(messages, prompt, "gpt-4o") == estimate_usage(
        messages, prompt, "gpt-4o"
    )
