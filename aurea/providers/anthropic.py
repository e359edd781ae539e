"""Anthropic Messages API adapter (``POST /v1/messages``, streaming and unary; ``GET /v1/models``).

Options: ``default_max_tokens`` (the API requires ``max_tokens``; default 1024),
``anthropic_version`` (default ``2023-06-01``), ``beta`` (an ``anthropic-beta`` header value),
``headers`` (extra headers), ``structured_output`` (``"tool"``, the default, or ``"native"``:
see ``_anthropic_shapes``). Usage is normalized to Aurea's convention: input tokens include
cache reads and cache writes; ``cached_input_tokens`` are the cache reads.

Rich generation: images as ``image`` blocks (base64 or URL sources), tool calls as
``tool_use`` blocks and results as ``tool_result`` blocks; streamed ``tool_use`` blocks become
``ToolCallDelta`` s (the block's start names the call, each ``input_json_delta`` is a piece of
its arguments), ``thinking`` blocks ``ReasoningDelta`` s (summaries on Claude 4 models, the
thinking itself on Claude 3.7). Each signed ``thinking`` block (its ``signature_delta``
included) and each ``redacted_thinking`` block is also kept whole as a ``ReasoningBlock``:
with thinking on, an assistant turn that called tools must go back starting with them, so
``_anthropic_shapes`` puts a message's blocks first in its content.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aurea.errors import ProviderError, ProviderServerError, StreamBroken, UpstreamRejected
from aurea.providers._anthropic_shapes import (
    STRUCTURED_OUTPUT,
    answer_tool,
    messages_json,
    rich_fields,
)
from aurea.providers._anthropic_wire import (
    _FINISH,
    _Block,
    _field,
    _mapping,
    _reasoning_kind,
    _retry_after,
    _stop_reason,
    error_from_body,
    usage_counts,
)
from aurea.providers._base import (
    Completion,
    Embeddings,
    EmbedRequest,
    Finish,
    FinishReason,
    ProviderEvent,
    ProviderRequest,
    ProviderSpec,
    ReasoningBlock,
    ReasoningDelta,
    ReasoningFormat,
    Role,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    UsageReport,
)
from aurea.providers._boundary import MalformedReply, adapter_boundary, check_options, json_type
from aurea.providers._chunks import SKIPPABLE, ChunkSkipper, MalformedChunk
from aurea.providers._http import (
    HttpClient,
    error_for_status,
    json_object,
    model_ids,
    parse_json,
)
from aurea.providers._tokens import prompt_extra_tokens
from aurea.providers._values import reported_usage

__all__ = ["DEFAULT_BASE_URL", "OPTIONS", "AnthropicProvider", "error_from_body", "usage_counts"]

OPTIONS = frozenset(
    {"default_max_tokens", "anthropic_version", "beta", "headers", "structured_output"}
)

DEFAULT_BASE_URL = "https://api.anthropic.com"
THINKING = ReasoningFormat.ANTHROPIC_THINKING
REDACTED = ReasoningFormat.ANTHROPIC_REDACTED
API_VERSION = "2023-06-01"


@adapter_boundary
class AnthropicProvider:
    """The Provider protocol over Anthropic's Messages API."""

    def __init__(self, spec: ProviderSpec) -> None:
        check_options(spec, OPTIONS)
        self.name = spec.name
        self._options = spec.options
        self._http = HttpClient(spec, default_base_url=DEFAULT_BASE_URL, parse_error=self._error)
        self._default_max_tokens = int(spec.options.get("default_max_tokens", 1024))
        self._structured = str(spec.options.get("structured_output", "tool"))
        if self._structured not in STRUCTURED_OUTPUT:
            raise ValueError(
                f"option structured_output must be one of {', '.join(STRUCTURED_OUTPUT)}"
            )

    def _error(self, status: int, body: str, headers: Mapping[str, str]) -> ProviderError:
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        retry_after = _retry_after(headers)
        if isinstance(parsed, Mapping) and isinstance(parsed.get("error"), Mapping):
            return error_from_body(self.name, status, parsed, retry_after)
        return error_for_status(self.name, status, body.strip()[:500], retry_after_s=retry_after)

    def _headers(self, betas: list[str] | None = None) -> dict[str, str]:
        headers = {
            "x-api-key": self._http.api_key,
            "anthropic-version": str(self._options.get("anthropic_version", API_VERSION)),
            "content-type": "application/json",
        }
        wanted = [str(self._options["beta"])] if self._options.get("beta") else []
        wanted += betas or []
        if wanted:
            headers["anthropic-beta"] = ",".join(wanted)
        headers.update({str(k): str(v) for k, v in dict(self._options.get("headers", {})).items()})
        return headers

    def _body(self, request: ProviderRequest, *, stream: bool) -> tuple[dict[str, Any], list[str]]:
        """The request body, and the ``anthropic-beta`` features it needs."""
        system = [m.content for m in request.messages if m.role == Role.SYSTEM]
        max_tokens = request.max_tokens or self._default_max_tokens
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": max_tokens,
            "messages": messages_json(request.messages),
        }
        betas: list[str] = []
        if request.rich:
            more, betas = rich_fields(
                request, provider=self.name, style=self._structured, max_tokens=max_tokens
            )
            body.update(more)
        if system:
            body["system"] = "\n\n".join(system)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if stream:
            body["stream"] = True
        return body, betas

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        url = f"{self._http.base_url}/v1/messages"
        parts: list[str] = []
        usage: dict[str, Any] = {}
        stop_reason = ""
        finished = False
        skipper = ChunkSkipper(self.name)
        body, betas = self._body(request, stream=True)
        answer = answer_tool(request, self._structured)
        thinking = _reasoning_kind(request.model)
        blocks: dict[int, _Block] = {}
        calls = 0
        async with self._http.request(
            "POST",
            url,
            json_body=body,
            headers=self._headers(betas),
            streaming=True,
            timeouts=request.timeouts,
        ) as response:
            async for event in response.events():
                out: list[ProviderEvent] = []
                try:
                    data = self._event(event.data, event.event)
                    kind = data.get("type") or event.event
                    if kind == "content_block_delta":
                        delta = _mapping(data.get("delta"))
                        dtype = delta.get("type")
                        if dtype == "text_delta":
                            out.append(TextDelta(_field(delta, "text", "delta")))
                        elif dtype == "input_json_delta":
                            block = blocks.get(_block_index(data))
                            piece = _field(delta, "partial_json", "delta")
                            if block is None or not piece:
                                pass
                            elif block.kind == "answer":
                                block.pieces += 1
                                out.append(TextDelta(piece))
                            elif block.kind == "tool":
                                block.pieces += 1
                                out.append(ToolCallDelta(index=block.call, arguments=piece))
                        elif dtype == "thinking_delta":
                            piece = _field(delta, "thinking", "delta")
                            block = blocks.get(_block_index(data))
                            if block is not None:
                                block.thinking.append(piece)
                            out.append(ReasoningDelta(piece, thinking))
                        elif dtype == "signature_delta":
                            block = blocks.get(_block_index(data))
                            if block is not None:
                                block.signature += _field(delta, "signature", "delta")
                    elif kind == "content_block_start":
                        index = _block_index(data)
                        start = _mapping(data.get("content_block"))
                        btype = start.get("type")
                        if btype == "tool_use":
                            name = _field(start, "name", "content_block")
                            if name == answer:
                                blocks[index] = _Block("answer")
                            else:
                                blocks[index] = _Block("tool", call=calls)
                                cid = _field(start, "id", "content_block")
                                out.append(ToolCallDelta(index=calls, id=cid, name=name))
                                calls += 1
                        elif btype == "redacted_thinking":
                            blocks[index] = _Block("redacted")
                            data_ = _field(start, "data", "content_block")
                            out.append(ReasoningBlock(format=REDACTED, data=data_))
                        else:
                            blocks[index] = _Block(str(btype))
                            if btype == "thinking":
                                seed = start.get("thinking")
                                if isinstance(seed, str) and seed:
                                    blocks[index].thinking.append(seed)
                                    out.append(ReasoningDelta(seed, thinking))
                                sig = start.get("signature")
                                blocks[index].signature = sig if isinstance(sig, str) else ""
                    elif kind == "content_block_stop":
                        block = blocks.get(_block_index(data))
                        if block is not None and block.kind == "thinking" and block.signature:
                            # Whole and signed: the block the next turn sends back.
                            out.append(
                                ReasoningBlock(
                                    format=THINKING,
                                    text="".join(block.thinking),
                                    signature=block.signature,
                                )
                            )
                        if (
                            block is not None
                            and block.kind in ("tool", "answer")
                            and not block.pieces
                        ):
                            # A call without arguments streams none: its input is {}.
                            block.pieces = 1
                            if block.kind == "answer":
                                out.append(TextDelta("{}"))
                            else:
                                out.append(ToolCallDelta(index=block.call, arguments="{}"))
                    elif kind == "message_start":
                        usage.update(_mapping(_mapping(data.get("message")).get("usage")))
                    elif kind == "message_delta":
                        delta = _mapping(data.get("delta"))
                        reason = _stop_reason(delta.get("stop_reason"), "message_delta.delta")
                        stop_reason = reason or stop_reason
                        # Counts here are cumulative: they replace what message_start said.
                        usage.update(
                            {k: v for k, v in _mapping(data.get("usage")).items() if v is not None}
                        )
                    elif kind == "message_stop":
                        finished = True
                        break
                    elif kind == "error":
                        raise self._http.scrub(error_from_body(self.name, None, data))
                except SKIPPABLE as exc:
                    skipper.skip(exc)
                    continue
                for ev in out:
                    if type(ev) is TextDelta:
                        if not ev.text:
                            continue
                        parts.append(ev.text)
                    elif type(ev) is ToolCallDelta:
                        parts.append(ev.name + ev.arguments)
                    elif type(ev) is ReasoningDelta:
                        parts.append(ev.text)
                    yield ev
        # No message_stop but a stop_reason (message_delta): the answer is complete; neither:
        # the stream was cut.
        if not finished and not stop_reason:
            raise self._http.error(StreamBroken, "the stream ended before message_stop")
        final = await reported_usage(
            usage_counts(usage) if usage else None,
            messages=request.messages,
            output_text="".join(parts),
            model=request.model,
            extra_input_tokens=prompt_extra_tokens(request),
        )
        yield UsageReport(final)
        yield self._finish(stop_reason, answer)

    @staticmethod
    def _finish(stop_reason: str, answer: str) -> Finish:
        if stop_reason == "tool_use" and answer:
            return Finish(FinishReason.STOP, stop_reason)  # the answer tool: a whole answer
        return Finish(_FINISH.get(stop_reason, FinishReason.STOP), stop_reason)

    def _event(self, data: str, name: str) -> Mapping[str, Any]:
        parsed = parse_json(
            data, provider=self.name, what=f"a {name[:64]} event", broken=MalformedChunk
        )
        if not isinstance(parsed, Mapping):
            raise MalformedChunk(
                f"{self.name}: a stream event is not a JSON object", provider=self.name
            )
        return parsed

    async def complete(self, request: ProviderRequest) -> Completion:
        url = f"{self._http.base_url}/v1/messages"
        body, betas = self._body(request, stream=False)
        async with self._http.request(
            "POST",
            url,
            json_body=body,
            headers=self._headers(betas),
            timeouts=request.timeouts,
        ) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        if data.get("type") == "error":
            raise self._http.scrub(error_from_body(self.name, None, data))
        content = data.get("content")
        if not isinstance(content, list):
            raise self._http.error(ProviderServerError, "the reply has no content", status=200)
        answer = answer_tool(request, self._structured)
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[ToolCall] = []
        kept: list[ReasoningBlock] = []
        for i, block in enumerate(content):
            if not isinstance(block, Mapping):
                continue
            where = f"reply.content[{i}]"
            btype = block.get("type")
            if btype == "text":
                texts.append(_field(block, "text", where))
            elif btype == "thinking":
                thought = _field(block, "thinking", where)
                thoughts.append(thought)
                signature = block.get("signature")
                if isinstance(signature, str) and signature:
                    kept.append(ReasoningBlock(format=THINKING, text=thought, signature=signature))
            elif btype == "redacted_thinking":
                kept.append(ReasoningBlock(format=REDACTED, data=_field(block, "data", where)))
            elif btype == "tool_use":
                name = _field(block, "name", where)
                arguments = json.dumps(block.get("input", {}), ensure_ascii=False)
                if name == answer:
                    texts.append(arguments)
                else:
                    calls.append(
                        ToolCall(id=_field(block, "id", where), name=name, arguments=arguments)
                    )
        text = "".join(texts)
        reasoning = "".join(thoughts)
        raw_usage = data.get("usage")
        usage = await reported_usage(
            usage_counts(raw_usage) if isinstance(raw_usage, Mapping) else None,
            messages=request.messages,
            output_text=text + reasoning + "".join(c.name + c.arguments for c in calls),
            model=request.model,
            extra_input_tokens=prompt_extra_tokens(request),
        )
        stop_reason = _stop_reason(data.get("stop_reason"), "reply")
        return Completion(
            text=text,
            finish=self._finish(stop_reason, answer),
            usage=usage,
            tool_calls=tuple(calls),
            reasoning=reasoning,
            reasoning_kind=_reasoning_kind(request.model),
            reasoning_blocks=tuple(kept),
        )

    async def embed(self, request: EmbedRequest) -> Embeddings:
        raise UpstreamRejected("anthropic has no embeddings API", provider=self.name)

    async def list_models(self) -> list[str]:
        url = f"{self._http.base_url}/v1/models?limit=1000"
        async with self._http.request("GET", url, headers=self._headers()) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        return model_ids(data)

    async def aclose(self) -> None:
        await self._http.aclose()


def _block_index(data: Mapping[str, Any]) -> int:
    index = data.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int):
        raise MalformedReply(f"a content block's index is {json_type(index)}, not a number")
    return index
