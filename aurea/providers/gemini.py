"""Gemini API adapter (``generateContent``, ``streamGenerateContent?alt=sse``, ``embedContent`` /
``batchEmbedContents``, ``models`` listing) over ``x-goog-api-key``.

Usage: ``promptTokenCount`` already includes ``cachedContentTokenCount``; Gemini's
``candidatesTokenCount`` excludes thinking, so Aurea's output is candidates + thoughts and
reasoning is the thoughts. Options: ``api_version`` (default ``v1beta``), ``headers``.

Rich generation (``_gemini_shapes``): images as ``inlineData`` / ``fileData``, tools as
``functionDeclarations``, JSON output as ``responseMimeType`` + ``responseSchema``, reasoning as
``thinkingConfig``; ``functionCall`` parts come back as tool calls (whole: Gemini streams a call
in one piece), thought parts as ``ReasoningDelta`` summaries. Gemini says STOP after function
calls; Aurea reports TOOL_CALLS. Thought signatures (``thoughtSignature``) are kept to go back:
a function call's on its ``ToolCall``, a thought part's and a text part's as ``ReasoningBlock`` s
(``_gemini_shapes`` puts each back on the part it came on).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

from aurea.errors import (
    ContentFiltered,
    ProviderError,
    ProviderServerError,
    StreamBroken,
)
from aurea.providers._base import (
    Completion,
    Embeddings,
    EmbedRequest,
    ProviderEvent,
    ProviderRequest,
    ProviderSpec,
    ReasoningBlock,
    ReasoningDelta,
    ReasoningFormat,
    ReasoningKind,
    Role,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageReport,
)
from aurea.providers._boundary import MalformedReply, adapter_boundary, check_options, json_type
from aurea.providers._chunks import SKIPPABLE, ChunkSkipper, MalformedChunk
from aurea.providers._gemini_shapes import call_id, contents_json, rich_fields
from aurea.providers._gemini_wire import (
    _Call,
    _call,
    _finish,
    _list,
    _mapping,
    error_from_body,
    finish_for,
    parse_usage,
    signature_of,
)
from aurea.providers._http import (
    HttpClient,
    error_for_status,
    json_object,
    parse_json,
    retry_after_from_headers,
)
from aurea.providers._tokens import estimate_text_tokens_async, prompt_extra_tokens
from aurea.providers._values import Counts, float_vector, reported_usage

__all__ = [
    "DEFAULT_BASE_URL",
    "OPTIONS",
    "GeminiProvider",
    "error_from_body",
    "finish_for",
    "parse_usage",
]

OPTIONS = frozenset({"api_version", "headers"})

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
THOUGHT = ReasoningFormat.GEMINI_THOUGHT
TEXT_SIGNATURE = ReasoningFormat.GEMINI_TEXT_SIGNATURE


@adapter_boundary
class GeminiProvider:
    """The Provider protocol over the Gemini Developer API."""

    def __init__(self, spec: ProviderSpec) -> None:
        check_options(spec, OPTIONS)
        self.name = spec.name
        self._options = spec.options
        self._http = HttpClient(spec, default_base_url=DEFAULT_BASE_URL, parse_error=self._error)
        self._version = str(spec.options.get("api_version", "v1beta"))

    def _error(self, status: int, body: str, headers: Mapping[str, str]) -> ProviderError:
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        retry_after = retry_after_from_headers(headers)
        if isinstance(parsed, Mapping) and isinstance(parsed.get("error"), Mapping):
            return error_from_body(self.name, status, parsed, retry_after)
        return error_for_status(self.name, status, body.strip()[:500], retry_after_s=retry_after)

    def _headers(self) -> dict[str, str]:
        headers = {"x-goog-api-key": self._http.api_key, "Content-Type": "application/json"}
        headers.update({str(k): str(v) for k, v in dict(self._options.get("headers", {})).items()})
        return headers

    def _url(self, model: str, method: str) -> str:
        model_id = quote(model.removeprefix("models/"), safe="-._~")
        return f"{self._http.base_url}/{self._version}/models/{model_id}:{method}"

    def _body(self, request: ProviderRequest) -> dict[str, Any]:
        system = [m.content for m in request.messages if m.role == Role.SYSTEM]
        config: dict[str, Any] = {}
        if request.rich:
            more, config = rich_fields(request, self.name)
            body = {"contents": contents_json(request, self.name), **more}
        else:
            body = {
                "contents": [
                    {
                        "role": "model" if m.role == Role.ASSISTANT else "user",
                        "parts": [{"text": m.content}],
                    }
                    for m in request.messages
                    if m.role != Role.SYSTEM
                ]
            }
        if system:
            body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.top_p is not None:
            config["topP"] = request.top_p
        if request.stop:
            config["stopSequences"] = list(request.stop)
        if request.seed is not None:
            config["seed"] = request.seed
        if config:
            body["generationConfig"] = config
        return body

    def _read(
        self, data: Mapping[str, Any]
    ) -> tuple[str, str, list[_Call], str, list[ReasoningBlock]]:
        """(text, finishReason, function calls, thoughts, signed reasoning blocks) of one
        response object; raises for errors and blocked prompts."""
        if "error" in data:
            raise self._http.scrub(error_from_body(self.name, None, data))
        block = _mapping(data.get("promptFeedback")).get("blockReason")
        if block:
            raise self._http.error(ContentFiltered, f"prompt blocked: blockReason {block}")
        candidates = _list(data.get("candidates"), "candidates")
        if not candidates:
            return "", "", [], "", []
        candidate = candidates[0]
        if not isinstance(candidate, Mapping):
            raise MalformedReply(f"candidates[0] is {json_type(candidate)}, not an object")
        texts: list[str] = []
        calls: list[_Call] = []
        thoughts: list[str] = []
        kept: list[ReasoningBlock] = []
        parts = _list(
            _mapping(candidate.get("content")).get("parts"), "candidates[0].content.parts"
        )
        for i, part in enumerate(parts):
            where = f"candidates[0].content.parts[{i}]"
            if not isinstance(part, Mapping):
                raise MalformedReply(f"{where} is {json_type(part)}")
            signature = signature_of(part, where)
            if "functionCall" in part:
                calls.append(_call(part["functionCall"], f"{where}.functionCall", signature))
                continue
            if "text" not in part:
                if signature:  # a signature on a part of its own (streams end so)
                    kept.append(ReasoningBlock(format=TEXT_SIGNATURE, signature=signature))
                continue  # inline data, code execution, ...: not answer text
            text = part["text"]
            if not isinstance(text, str):
                raise MalformedReply(f"{where}.text is {json_type(text)}, not text")
            thought = bool(part.get("thought"))
            (thoughts if thought else texts).append(text)
            if signature and thought:
                kept.append(ReasoningBlock(format=THOUGHT, text=text, signature=signature))
            elif signature:
                kept.append(ReasoningBlock(format=TEXT_SIGNATURE, signature=signature))
        reason = candidate.get("finishReason")
        if reason is not None and not isinstance(reason, str):
            raise MalformedReply(f"candidates[0].finishReason is {json_type(reason)}")
        return "".join(texts), reason or "", calls, "".join(thoughts), kept

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        url = self._url(request.model, "streamGenerateContent") + "?alt=sse"
        parts: list[str] = []
        counts: Counts | None = None
        finish = ""
        skipper = ChunkSkipper(self.name)
        n_calls = 0
        async with self._http.request(
            "POST",
            url,
            json_body=self._body(request),
            headers=self._headers(),
            streaming=True,
            timeouts=request.timeouts,
        ) as response:
            async for event in response.events():
                try:
                    data = parse_json(
                        event.data, provider=self.name, what="a stream chunk", broken=MalformedChunk
                    )
                    if not isinstance(data, Mapping):
                        raise MalformedChunk(
                            f"{self.name}: a stream chunk is not a JSON object", provider=self.name
                        )
                    text, reason, calls, thoughts, kept = self._read(data)
                except SKIPPABLE as exc:
                    skipper.skip(exc)
                    continue
                counts = parse_usage(data.get("usageMetadata")) or counts
                if thoughts:
                    parts.append(thoughts)
                    yield ReasoningDelta(thoughts, ReasoningKind.SUMMARY)
                if text:
                    parts.append(text)
                    yield TextDelta(text)
                for name, arguments, given, signature in calls:
                    parts.append(name + arguments)
                    yield ToolCallDelta(
                        index=n_calls,
                        id=given or call_id(n_calls, name, arguments),
                        name=name,
                        arguments=arguments,
                        signature=signature,
                    )
                    n_calls += 1
                for block in kept:
                    yield block
                finish = reason or finish
        if not finish:
            raise self._http.error(StreamBroken, "the stream ended before any finishReason")
        yield UsageReport(
            await reported_usage(
                counts,
                messages=request.messages,
                output_text="".join(parts),
                model=request.model,
                extra_input_tokens=prompt_extra_tokens(request),
            )
        )
        yield _finish(finish, n_calls)

    async def complete(self, request: ProviderRequest) -> Completion:
        url = self._url(request.model, "generateContent")
        async with self._http.request(
            "POST",
            url,
            json_body=self._body(request),
            headers=self._headers(),
            timeouts=request.timeouts,
        ) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        text, reason, calls, thoughts, kept = self._read(data)
        if not reason:
            raise self._http.error(ProviderServerError, "the reply has no finishReason")
        tool_calls = tuple(
            ToolCall(
                id=given or call_id(i, name, arguments),
                name=name,
                arguments=arguments,
                signature=signature,
            )
            for i, (name, arguments, given, signature) in enumerate(calls)
        )
        usage = await reported_usage(
            parse_usage(data.get("usageMetadata")),
            messages=request.messages,
            output_text=text + thoughts + "".join(c.name + c.arguments for c in tool_calls),
            model=request.model,
            extra_input_tokens=prompt_extra_tokens(request),
        )
        return Completion(
            text=text,
            finish=_finish(reason, len(tool_calls)),
            usage=usage,
            tool_calls=tool_calls,
            reasoning=thoughts,
            reasoning_kind=ReasoningKind.SUMMARY,
            reasoning_blocks=tuple(kept),
        )

    async def embed(self, request: EmbedRequest) -> Embeddings:
        model = f"models/{request.model.removeprefix('models/')}"
        contents: list[dict[str, Any]] = [{"parts": [{"text": t}]} for t in request.inputs]
        body: dict[str, Any]
        if len(contents) == 1:
            url = self._url(request.model, "embedContent")
            body = {"model": model, "content": contents[0]}
        else:
            url = self._url(request.model, "batchEmbedContents")
            body = {"requests": [{"model": model, "content": c} for c in contents]}
        async with self._http.request(
            "POST", url, json_body=body, headers=self._headers()
        ) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        if len(contents) == 1:
            raw = [data.get("embedding")]
        else:
            raw = _list(data.get("embeddings"), "embeddings")
        items = [item for item in raw if isinstance(item, Mapping)]
        if len(items) != len(contents):
            raise self._http.error(
                ProviderServerError, f"{len(items)} embeddings for {len(contents)} inputs"
            )
        vectors = []
        for i, item in enumerate(items):
            vector = float_vector(item.get("values"))
            if vector is None:
                raise MalformedReply(f"embeddings[{i}].values is not a list of finite numbers")
            vectors.append(vector)
        # Gemini reports no token usage for embeddings.
        count = 0
        for text in request.inputs:
            count += await estimate_text_tokens_async(text, request.model)
        return Embeddings(vectors=tuple(vectors), usage=Usage(input_tokens=count, estimated=True))

    async def list_models(self) -> list[str]:
        names: list[str] = []
        token = ""
        for _ in range(100):  # pages; a bound against a server that never stops paging
            url = f"{self._http.base_url}/{self._version}/models?pageSize=1000"
            if token:
                url += f"&pageToken={quote(token)}"
            async with self._http.request("GET", url, headers=self._headers()) as response:
                data = json_object(await response.json(), provider=self.name, what="the reply")
            for item in _list(data.get("models"), "models"):
                if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                    names.append(item["name"].removeprefix("models/"))
            next_token = data.get("nextPageToken")
            token = next_token if isinstance(next_token, str) and len(next_token) <= 4096 else ""
            if not token:
                break
        return names

    async def aclose(self) -> None:
        await self._http.aclose()
