"""The fakes' deterministic text generation: the default echo reply, tokenizing, prefill
continuation and word counting (no tokenizer, so usage figures are predictable)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Generation", "continue_after", "count_words", "echo_reply", "pieces", "split_tokens"]


def echo_reply(prompt: str) -> str:
    """The default deterministic reply: the prompt echoed back."""
    return f"Echo: {prompt}" if prompt else "Echo:"


def split_tokens(text: str) -> list[str]:
    """Whitespace tokens, each after the first keeping its leading space (joins back to text)."""
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


def continue_after(tokens: list[str], prefill: str) -> list[str]:
    """The tokens of a reply that come after ``prefill`` (a partial answer sent as a trailing
    assistant message), as a model that honours prefill continues it; the whole reply when it
    does not start with ``prefill``."""
    done = ""
    for i, token in enumerate(tokens):
        if done == prefill:
            return tokens[i:]
        done += token
    if done == prefill:
        return []
    if not prefill or not done.startswith(prefill):
        return tokens
    rest = done[len(prefill) :]
    if rest.startswith(" "):
        return [" " + w for w in rest[1:].split(" ")]
    return split_tokens(rest)


def pieces(text: str, size: int) -> list[str]:
    """``text`` cut in pieces of ``size`` characters (how the fakes stream tool arguments)."""
    size = max(size, 1)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def count_words(texts: Iterable[str]) -> int:
    """The fakes' token counter: whitespace-separated words (deterministic, no tokenizer)."""
    return sum(len(t.split()) for t in texts)


@dataclass(slots=True)
class Generation:
    tokens: list[str]
    truncated: bool  # max_tokens cut it short
