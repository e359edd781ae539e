"""Reasoning signatures as the Anthropic and Gemini fakes hand them out and check them when they
come back: an HMAC under a key of each fake's own, so a block or signature that was changed,
made up or left out is refused the way the real API refuses it (Anthropic: an assistant turn
with ``tool_use`` and thinking on must start with its thinking blocks, each with its signature;
Gemini: a function call it signed must come back with its ``thoughtSignature``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

__all__ = ["REDACTED_TRIGGER", "Signer", "anthropic_thinking_problem", "gemini_signature_problem"]

# Anthropic's documented prompt that makes a model answer with a redacted_thinking block.
REDACTED_TRIGGER = (
    "ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING_46C9A13E193C177646C7398A98432ECCCE4C1253"
)
_ANTHROPIC_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
_GEMINI_DOCS = "https://ai.google.dev/gemini-api/docs/thought-signatures"


class Signer:
    """Signs what a fake hands out and recognizes it when it comes back."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def sign(self, *parts: str) -> str:
        mac = hmac.new(self._key, "\0".join(parts).encode(), hashlib.sha256).digest()
        return base64.b64encode(mac * 3).decode("ascii")  # about as long as a real one

    def valid(self, signature: Any, *parts: str) -> bool:
        return isinstance(signature, str) and hmac.compare_digest(signature, self.sign(*parts))

    def redacted(self) -> str:
        """Opaque ``redacted_thinking`` data that carries its own signature."""
        nonce = secrets.token_hex(8)
        return base64.b64encode(f"{nonce}.{self.sign('redacted', nonce)}".encode()).decode()

    def redacted_valid(self, data: Any) -> bool:
        try:
            nonce, _, signature = base64.b64decode(str(data), validate=True).decode().partition(".")
        except (ValueError, UnicodeDecodeError):
            return False
        return self.valid(signature, "redacted", nonce)


def call_key(name: str, args: Any) -> str:
    """A function call's identity for its signature (its name and arguments)."""
    return name + "\0" + json.dumps(args, sort_keys=True, separators=(",", ":"))


def _content(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else []


def anthropic_thinking_problem(body: dict[str, Any], signer: Signer) -> str:
    """What Anthropic would refuse in the request's thinking blocks ("" for nothing): a block
    whose signature (or redacted data) it did not issue, and, with thinking enabled, a final
    assistant turn with ``tool_use`` that does not start with a thinking block."""
    messages = body.get("messages") or []
    for i, message in enumerate(messages):
        for j, block in enumerate(_content(message)):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "thinking":
                if "signature" not in block:
                    return f"messages.{i}.content.{j}.thinking.signature: Field required"
                if not signer.valid(block.get("signature"), str(block.get("thinking", ""))):
                    return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
            elif kind == "redacted_thinking" and not signer.redacted_valid(block.get("data")):
                return f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block"
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return ""
    turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
    if not turns:
        return ""
    i = turns[-1]
    content = _content(messages[i])
    if not any(isinstance(b, dict) and b.get("type") == "tool_use" for b in content):
        return ""
    first = content[0].get("type") if content and isinstance(content[0], dict) else "text"
    if first in ("thinking", "redacted_thinking"):
        return ""
    return (
        f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
        f"`{first}`. When `thinking` is enabled, a final `assistant` message must start with a "
        "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). "
        "We recommend you include thinking blocks from previous turns. To avoid this "
        "requirement, disable `thinking`. Please consult our documentation at "
        f"{_ANTHROPIC_DOCS}"
    )


def gemini_signature_problem(body: dict[str, Any], signer: Signer, issued: set[str]) -> str:
    """What Gemini 3 would refuse ("" for nothing): a function call part it signed that comes
    back without its ``thoughtSignature``, or with one it did not issue."""
    for content in body.get("contents") or []:
        if not isinstance(content, dict) or content.get("role") != "model":
            continue
        position = 0
        for part in content.get("parts") or []:
            if not isinstance(part, dict) or "functionCall" not in part:
                continue
            position += 1
            call = part["functionCall"] or {}
            key = call_key(str(call.get("name", "")), call.get("args", {}))
            signature = part.get("thoughtSignature")
            if signature is not None and not signer.valid(signature, key):
                return "Corrupted thought signature."
            if key in issued and signature is None:
                return (
                    "Function call is missing a thought_signature in functionCall parts. This "
                    "is required for tools to work correctly, and missing thought_signature may "
                    "lead to degraded model performance. Additional data, function call "
                    f"`default_api:{call.get('name', '')}` , position {position}. Please refer "
                    f"to {_GEMINI_DOCS} for more details."
                )
    return ""
