"""OpenAI Chat Completions adapter; it also serves any OpenAI-compatible server (vLLM, llama.cpp
server, Ollama, LM Studio) through ``base_url``.

Options: ``max_tokens_param`` (``"max_completion_tokens"`` for api.openai.com, else
``"max_tokens"``), ``include_usage`` (send ``stream_options``; default True), ``organization``,
``project``, ``headers`` (extra headers), ``schema_style`` (``"openai"``, or ``"llama_cpp"`` for
llama-cpp-python's server, which takes a JSON schema as ``{"type": "json_object", "schema":
...}`` and turns it into a grammar).

Rich generation maps one to one (``_openai_shapes``): image parts as ``image_url`` (inline
bytes as a ``data:`` URL), tool calls and ``tool`` messages, ``tools``, ``tool_choice``,
``parallel_tool_calls``, ``response_format``, ``reasoning_effort``; streamed ``tool_calls``
deltas become ``ToolCallDelta`` s as they come, and ``reasoning_content`` (OpenAI-compatible
servers) ``ReasoningDelta`` s.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aurea.errors import (
    ProviderError,
    ProviderServerError,
    StreamBroken,
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
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
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
    retry_after_from_headers,
)
from aurea.providers._openai_shapes import (
    SCHEMA_STYLES,
    messages_json,
    reasoning_text,
    rich_fields,
    tool_call_deltas,
    tool_calls_of,
)
from aurea.providers._openai_wire import (
    _choices,
    _finish_of,
    _object,
    choice_index,
    content_text,
    error_from_body,
    finish_reason,
    parse_usage,
)
from aurea.providers._tokens import estimate_text_tokens_async, prompt_extra_tokens
from aurea.providers._values import Counts, float_vector, reported_usage, token_count

__all__ = [
    "DEFAULT_BASE_URL",
    "OPTIONS",
    "OpenAIProvider",
    "choice_index",
    "content_text",
    "finish_reason",
    "parse_usage",
]

OPTIONS = frozenset(
    {"max_tokens_param", "include_usage", "organization", "project", "headers", "schema_style"}
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"


@adapter_boundary
class OpenAIProvider:
    """The Provider protocol over OpenAI's ``/chat/completions``, ``/embeddings``, ``/models``."""

    def __init__(self, spec: ProviderSpec) -> None:
        check_options(spec, OPTIONS)
        self.name = spec.name
        self._options = spec.options
        self._http = HttpClient(spec, default_base_url=DEFAULT_BASE_URL, parse_error=self._error)
        official = self._http.base_url.startswith("https://api.openai.com")
        default_param = "max_completion_tokens" if official else "max_tokens"
        self._max_tokens_param = str(spec.options.get("max_tokens_param", default_param))
        self._include_usage = bool(spec.options.get("include_usage", True))
        self._schema_style = str(spec.options.get("schema_style", "openai"))
        if self._schema_style not in SCHEMA_STYLES:
            raise ValueError(f"option schema_style must be one of {', '.join(SCHEMA_STYLES)}")

    def _error(self, status: int, body: str, headers: Mapping[str, str]) -> ProviderError:
        retry_after = retry_after_from_headers(headers)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping) and "error" in parsed:
            return error_from_body(self.name, status, parsed["error"], retry_after)
        return error_for_status(self.name, status, body.strip()[:500], retry_after_s=retry_after)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._http.api_key_env:  # OpenAI-compatible local servers often need no key
            headers["Authorization"] = f"Bearer {self._http.api_key}"
        if self._options.get("organization"):
            headers["OpenAI-Organization"] = str(self._options["organization"])
        if self._options.get("project"):
            headers["OpenAI-Project"] = str(self._options["project"])
        headers.update({str(k): str(v) for k, v in dict(self._options.get("headers", {})).items()})
        return headers

    def _body(self, request: ProviderRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model, "messages": messages_json(request.messages)}
        if request.max_tokens is not None:
            body[self._max_tokens_param] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.rich:
            body.update(rich_fields(request, self._schema_style))
        if stream:
            body["stream"] = True
            if self._include_usage:
                body["stream_options"] = {"include_usage": True}
        return body

    def _chunk(
        self, data: str
    ) -> tuple[str, Finish | None, Counts | None, list[ToolCallDelta], str]:
        """(text, finish, usage counts, tool-call pieces, reasoning) of one stream chunk;
        MalformedChunk / MalformedReply for a chunk that breaks the format, the error it names
        for an in-stream error."""
        chunk = parse_json(data, provider=self.name, what="a stream chunk", broken=MalformedChunk)
        if not isinstance(chunk, Mapping):
            raise MalformedChunk(
                f"{self.name}: a stream chunk is not a JSON object", provider=self.name
            )
        if "error" in chunk:
            raise self._http.scrub(error_from_body(self.name, None, chunk["error"]))
        counts = parse_usage(chunk.get("usage"))
        texts: list[str] = []
        finish: Finish | None = None
        calls: list[ToolCallDelta] = []
        reasoning = ""
        for i, choice in enumerate(_choices(chunk, "chunk")):
            where = f"chunk.choices[{i}]"
            if choice_index(choice.get("index"), where) != 0:
                continue  # Aurea asks for one choice; a server sending more is ignored
            delta = _object(choice.get("delta"), f"{where}.delta")
            texts.append(content_text(delta.get("content"), f"{where}.delta.content"))
            if "tool_calls" in delta:
                calls += tool_call_deltas(delta["tool_calls"], f"{where}.delta.tool_calls")
            if "reasoning_content" in delta or "reasoning" in delta:
                reasoning += reasoning_text(delta, f"{where}.delta")
            finish = _finish_of(choice, where) or finish
        return "".join(texts), finish, counts, calls, reasoning

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        url = f"{self._http.base_url}/chat/completions"
        body = self._body(request, stream=True)
        parts: list[str] = []
        counts: Counts | None = None
        finish: Finish | None = None
        skipper = ChunkSkipper(self.name)
        async with self._http.request(
            "POST",
            url,
            json_body=body,
            headers=self._headers(),
            streaming=True,
            timeouts=request.timeouts,
        ) as response:
            async for event in response.events():
                if event.data.strip() == "[DONE]":
                    finish = finish or Finish(FinishReason.STOP, "")
                    break
                try:
                    text, seen, reported, calls, reasoning = self._chunk(event.data)
                except SKIPPABLE as exc:
                    skipper.skip(exc)
                    continue
                counts = reported or counts
                finish = seen or finish
                if reasoning:
                    parts.append(reasoning)
                    yield ReasoningDelta(reasoning)
                if text:
                    parts.append(text)
                    yield TextDelta(text)
                for call in calls:
                    parts.append(call.name + call.arguments)
                    yield call
        # No ``[DONE]`` but a finish_reason: the answer is complete (some servers never send
        # the marker); neither: the stream was cut.
        if finish is None:
            raise self._http.error(StreamBroken, "the stream ended before any finish_reason")
        yield UsageReport(
            await reported_usage(
                counts,
                messages=request.messages,
                output_text="".join(parts),
                model=request.model,
                extra_input_tokens=prompt_extra_tokens(request),
            )
        )
        yield finish

    async def complete(self, request: ProviderRequest) -> Completion:
        url = f"{self._http.base_url}/chat/completions"
        async with self._http.request(
            "POST",
            url,
            json_body=self._body(request, stream=False),
            headers=self._headers(),
            timeouts=request.timeouts,
        ) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        choices = [
            c for c in _choices(data, "reply") if choice_index(c.get("index"), "choice") == 0
        ]
        if not choices:
            raise self._http.error(ProviderServerError, "the response has no choices", status=200)
        choice = choices[0]
        message = _object(choice.get("message"), "reply.choices[0].message")
        text = content_text(message.get("content"), "reply.choices[0].message.content")
        calls = tool_calls_of(message, "reply.choices[0].message")
        reasoning = reasoning_text(message, "reply.choices[0].message")
        usage = await reported_usage(
            parse_usage(data.get("usage")),
            messages=request.messages,
            output_text=text + reasoning + "".join(c.name + c.arguments for c in calls),
            model=request.model,
            extra_input_tokens=prompt_extra_tokens(request),
        )
        finish = _finish_of(choice, "reply.choices[0]") or finish_reason("")
        return Completion(
            text=text, finish=finish, usage=usage, tool_calls=calls, reasoning=reasoning
        )

    async def embed(self, request: EmbedRequest) -> Embeddings:
        url = f"{self._http.base_url}/embeddings"
        body = {"model": request.model, "input": list(request.inputs), "encoding_format": "float"}
        async with self._http.request(
            "POST", url, json_body=body, headers=self._headers()
        ) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        items = data.get("data")
        if not isinstance(items, list):
            raise MalformedReply(f"reply.data is {json_type(items)}, not a list")
        vectors: dict[int, tuple[float, ...]] = {}
        for i, item in enumerate(items):
            where = f"reply.data[{i}]"
            item = _object(item, where)
            vector = float_vector(item.get("embedding"))
            if vector is None:
                raise MalformedReply(f"{where}.embedding is not a list of finite numbers")
            vectors[choice_index(item.get("index", i), where)] = vector
        if len(items) != len(request.inputs):
            raise self._http.error(
                ProviderServerError, f"{len(items)} embeddings for {len(request.inputs)} inputs"
            )
        if sorted(vectors) != list(range(len(items))):
            raise MalformedReply("the embeddings' indexes are not 0..n-1")
        reported = data.get("usage")  # not an object: no usage reported, so it is estimated
        prompt_tokens = (
            token_count(reported.get("prompt_tokens")) if isinstance(reported, Mapping) else None
        )
        if prompt_tokens is not None:
            usage = Usage(input_tokens=prompt_tokens)
        else:
            count = 0
            for text in request.inputs:
                count += await estimate_text_tokens_async(text, request.model)
            usage = Usage(input_tokens=count, estimated=True)
        return Embeddings(vectors=tuple(vectors[i] for i in sorted(vectors)), usage=usage)

    async def list_models(self) -> list[str]:
        url = f"{self._http.base_url}/models"
        async with self._http.request("GET", url, headers=self._headers()) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        return model_ids(data)

    async def aclose(self) -> None:
        await self._http.aclose()
