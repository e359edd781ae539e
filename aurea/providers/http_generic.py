"""A configurable adapter for any JSON-over-HTTP model endpoint (``kind = "http"``).

Options (all but ``url`` optional):

- ``url`` (default: ``base_url``), ``method`` (``POST``), ``headers`` (values may use
  ``{api_key}``);
- ``body_template``: a JSON value whose string leaves may use placeholders; a leaf that is exactly
  one placeholder becomes the typed value (``"{max_tokens}"`` -> ``256``; ``"{messages}"`` -> the
  list of ``{"role", "content"}``), and an object member whose value resolves to null is dropped.
  Placeholders: ``prompt`` (the non-system messages' contents joined by blank lines), ``system``,
  ``messages`` (OpenAI's shape: image parts, tool calls and tool results included), ``model``,
  ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``, ``request_id``, and for rich
  generation, in OpenAI's shapes: ``tools``, ``tool_choice``, ``parallel_tool_calls``,
  ``response_format``, ``json_schema`` (the bare schema), ``reasoning_effort``. Default:
  ``{"model": "{model}", "messages": "{messages}", "max_tokens": "{max_tokens}"}``. A request
  that needs something its template does not reference (tools without ``{tools}``, images or
  tool turns without ``{messages}``, JSON output without ``{response_format}`` or
  ``{json_schema}``, a reasoning effort without ``{reasoning_effort}``) is refused with
  UnsupportedFeature, never sent without it;
- JSON pointers (RFC 6901): ``text_pointer`` (``/text``), ``input_tokens_pointer``,
  ``output_tokens_pointer``, ``finish_reason_pointer``, ``error_pointer``,
  ``tool_calls_pointer`` (to a list of OpenAI-shaped tool calls), ``reasoning_pointer``;
- streaming over SSE when ``stream_text_pointer`` is set: ``stream_url`` (default ``url``),
  ``stream_body_template`` (default ``body_template``), ``stream_done`` (the data line that ends
  the stream, ``[DONE]``), ``stream_require_done`` (False: a clean end of stream also completes),
  ``stream_tool_calls_pointer`` (to a list of OpenAI-shaped ``tool_calls`` deltas, with their
  ``index``), ``stream_reasoning_pointer``;
  without it ``stream()`` makes the unary call and yields the whole text as one delta;
- ``embed_url``, ``embeddings_pointer`` (to a list of vectors), ``embed_body_template``
  (placeholders ``model`` and ``inputs``; default ``{"model": "{model}", "input": "{inputs}"}``);
- ``models``: what ``list_models`` returns.

Text found at a text pointer must be a string or a list of strings; anything else is a malformed
reply. Counts are validated (``_values.token_count``); an invalid one is estimated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aurea.errors import ProviderServerError, StreamBroken, UpstreamRejected
from aurea.providers._base import (
    Completion,
    Embeddings,
    EmbedRequest,
    Finish,
    FinishReason,
    ProviderEvent,
    ProviderRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageReport,
)
from aurea.providers._boundary import MalformedReply, adapter_boundary
from aurea.providers._chunks import SKIPPABLE, ChunkSkipper, MalformedChunk
from aurea.providers._generic_shape import OPTIONS, GenericShape
from aurea.providers._http import json_object, parse_json
from aurea.providers._openai_shapes import tool_call_deltas, tool_calls_of
from aurea.providers._templates import (
    MISSING,
    check_pointer,
    finish_from,
    read_count,
    render_template,
    resolve_pointer,
    text_of,
    usage_from_counts,
)
from aurea.providers._tokens import estimate_text_tokens_async
from aurea.providers._values import float_vector

__all__ = [
    "MISSING",
    "OPTIONS",
    "GenericHTTPProvider",
    "check_pointer",
    "finish_from",
    "read_count",
    "render_template",
    "resolve_pointer",
    "text_of",
    "usage_from_counts",
]


@adapter_boundary
class GenericHTTPProvider(GenericShape):
    """The Provider protocol over a configurable JSON HTTP endpoint."""

    # -- Provider --------------------------------------------------------------------------------
    async def complete(self, request: ProviderRequest) -> Completion:
        values = self._values(request)
        body = render_template(self._body_template, values)
        async with self._http.request(
            self._method,
            self._target(self._url, values),
            json_body=body,
            headers=self._headers(),
            timeouts=request.timeouts,
        ) as response:
            document = await response.json()
        self._check_error(document, in_stream=False)
        found = resolve_pointer(document, self._pointers["text_pointer"])
        if found is MISSING:
            raise self._http.error(
                ProviderServerError,
                f"the reply has nothing at text_pointer {self._pointers['text_pointer']!r}",
                status=200,
            )
        text = text_of(found, f"the reply's text at {self._pointers['text_pointer']!r}")
        calls: tuple[Any, ...] = ()
        reasoning = ""
        if "tool_calls_pointer" in self._pointers:
            raw = resolve_pointer(document, self._pointers["tool_calls_pointer"])
            if raw not in (MISSING, None):
                calls = tool_calls_of({"tool_calls": raw}, "the reply's tool calls")
        if "reasoning_pointer" in self._pointers:
            raw = resolve_pointer(document, self._pointers["reasoning_pointer"])
            reasoning = text_of(raw, "the reply's reasoning")
        finish = self._finish(document) or Finish(FinishReason.STOP, "")
        if calls and finish.reason is FinishReason.STOP:
            finish = Finish(FinishReason.TOOL_CALLS, finish.raw_reason)
        output = text + reasoning + "".join(c.name + c.arguments for c in calls)
        return Completion(
            text=text,
            finish=finish,
            usage=await usage_from_counts(self._reported(document), request, output),
            tool_calls=calls,
            reasoning=reasoning,
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        if "stream_text_pointer" not in self._pointers:
            completion = await self.complete(request)
            if completion.reasoning:
                yield ReasoningDelta(completion.reasoning)
            if completion.text:
                yield TextDelta(completion.text)
            for i, call in enumerate(completion.tool_calls):
                yield ToolCallDelta(index=i, id=call.id, name=call.name, arguments=call.arguments)
            assert completion.usage is not None
            yield UsageReport(completion.usage)
            yield completion.finish
            return
        values = self._values(request, stream=True)
        url = self._target(str(self._options.get("stream_url") or self._url), values)
        template = self._options.get("stream_body_template", self._body_template)
        done_marker = str(self._options.get("stream_done", "[DONE]"))
        parts: list[str] = []
        given_in: int | None = None
        given_out: int | None = None
        finish: Finish | None = None
        done = False
        skipper = ChunkSkipper(self.name)
        pointer = self._pointers["stream_text_pointer"]
        calls_pointer = self._pointers.get("stream_tool_calls_pointer")
        reasoning_pointer = self._pointers.get("stream_reasoning_pointer")
        n_calls = 0
        async with self._http.request(
            self._method,
            url,
            json_body=render_template(template, values),
            headers=self._headers(),
            streaming=True,
            timeouts=request.timeouts,
        ) as response:
            async for event in response.events():
                if event.data.strip() == done_marker:
                    done = True
                    break
                try:
                    document = parse_json(
                        event.data, provider=self.name, what="a stream event", broken=MalformedChunk
                    )
                    self._check_error(document, in_stream=True)
                    text = text_of(resolve_pointer(document, pointer), f"the text at {pointer!r}")
                    seen = self._finish(document)
                    calls: list[ToolCallDelta] = []
                    if calls_pointer is not None:
                        raw = resolve_pointer(document, calls_pointer)
                        if raw is not MISSING:
                            calls = tool_call_deltas(raw, f"the tool calls at {calls_pointer!r}")
                    thought = ""
                    if reasoning_pointer is not None:
                        raw = resolve_pointer(document, reasoning_pointer)
                        thought = text_of(raw, f"the reasoning at {reasoning_pointer!r}")
                except SKIPPABLE as exc:
                    skipper.skip(exc)
                    continue
                if thought:
                    parts.append(thought)
                    yield ReasoningDelta(thought)
                if text:
                    parts.append(text)
                    yield TextDelta(text)
                for piece in calls:
                    n_calls += 1
                    parts.append(piece.name + piece.arguments)
                    yield piece
                finish = seen or finish
                seen_in, seen_out = self._reported(document)  # cumulative: the last one wins
                given_in = seen_in if seen_in is not None else given_in
                given_out = seen_out if seen_out is not None else given_out
        # Without the end marker, a finish reason still completes the answer.
        if not done and finish is None and self._options.get("stream_require_done", False):
            raise self._http.error(StreamBroken, f"the stream ended before {done_marker!r}")
        yield UsageReport(await usage_from_counts((given_in, given_out), request, "".join(parts)))
        finish = finish or Finish(FinishReason.STOP, "")
        if n_calls and finish.reason is FinishReason.STOP:
            finish = Finish(FinishReason.TOOL_CALLS, finish.raw_reason)
        yield finish

    async def embed(self, request: EmbedRequest) -> Embeddings:
        url = self._options.get("embed_url")
        pointer = self._options.get("embeddings_pointer")
        if not url or pointer is None:
            raise UpstreamRejected(
                f"{self.name}: no embeddings endpoint is configured (embed_url, "
                "embeddings_pointer)",
                provider=self.name,
            )
        values = {"model": request.model, "inputs": list(request.inputs)}
        template = self._options.get(
            "embed_body_template", {"model": "{model}", "input": "{inputs}"}
        )
        async with self._http.request(
            "POST",
            self._target(str(url), values),
            json_body=render_template(template, values),
            headers=self._headers(),
        ) as response:
            document = json_object(await response.json(), provider=self.name, what="the reply")
        found = resolve_pointer(document, check_pointer(str(pointer)))
        if not isinstance(found, list) or len(found) != len(request.inputs):
            raise self._http.error(ProviderServerError, "unexpected embeddings in the reply")
        vectors = tuple(float_vector(v) for v in found)
        if any(v is None for v in vectors):
            raise MalformedReply("an embedding is not a list of finite numbers")
        count = 0
        for text in request.inputs:
            count += await estimate_text_tokens_async(text, request.model)
        return Embeddings(
            vectors=tuple(v for v in vectors if v is not None),
            usage=Usage(input_tokens=count, estimated=True),
        )

    async def list_models(self) -> list[str]:
        return [str(m) for m in self._options.get("models") or []]

    async def aclose(self) -> None:
        await self._http.aclose()
