"""OpenAI Chat Completions adapter; it also serves any OpenAI-compatible server (vLLM, llama.cpp
server, Ollama, LM Studio) through ``base_url``.

Options: ``max_tokens_param`` (``"max_completion_tokens"`` for api.openai.com, else
``"max_tokens"``), ``include_usage`` (send ``stream_options``; default True), ``organization``,
``project``, ``headers`` (extra headers).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
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
    TextDelta,
    Usage,
    UsageReport,
)
from aurea.providers._http import (
    HttpClient,
    error_for_status,
    json_object,
    model_ids,
    parse_json,
    retry_after_from_headers,
)
from aurea.providers._tokens import estimate_text_tokens, estimate_usage

__all__ = ["DEFAULT_BASE_URL", "OpenAIProvider", "finish_reason", "parse_usage"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"

_FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
}


def finish_reason(raw: str) -> Finish:
    """OpenAI's finish_reason as a ``Finish`` (servers' own words such as "eos" count as STOP)."""
    return Finish(_FINISH.get(raw, FinishReason.STOP), raw)


def parse_usage(data: Any) -> Usage | None:
    """OpenAI's usage object, already in Aurea's convention (cached and reasoning included)."""
    if not isinstance(data, Mapping):
        return None
    prompt_details = data.get("prompt_tokens_details") or {}
    completion_details = data.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(data.get("prompt_tokens") or 0),
        cached_input_tokens=int(prompt_details.get("cached_tokens") or 0),
        output_tokens=int(data.get("completion_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


def error_from_body(
    provider: str, status: int | None, error: Any, retry_after_s: float | None = None
) -> ProviderError:
    """Map ``{"error": {message, type, param, code}}`` onto aurea.errors.

    ``status`` None means the error arrived as an event inside a stream.
    """
    if not isinstance(error, Mapping):
        error = {"message": str(error)}
    message = str(error.get("message") or "")
    type_ = str(error.get("type") or "")
    code = str(error.get("code") or "")
    detail = f"{type_}: {message}" if type_ else message
    if code:
        detail = f"{detail} (code {code})"
    in_stream = status is None
    if status is None:  # classify an in-stream error by the status OpenAI uses for its type
        status = 400 if type_ == "invalid_request_error" else 500
        if "rate_limit" in f"{type_} {code}":
            status = 429
        if code.isdigit() and 400 <= int(code) < 600:  # vLLM / llama.cpp put the status here
            status = int(code)
    where = "in-stream error" if in_stream else f"HTTP {status}"
    text = f"{provider}: {where}: {detail}"
    reported = None if in_stream else status
    if code == "context_length_exceeded":
        return ContextLengthExceeded(text, provider=provider, status=reported)
    if code in ("content_filter", "content_policy_violation"):
        return ContentFiltered(text, provider=provider, status=reported)
    return error_for_status(
        provider, status, detail, retry_after_s=retry_after_s, in_stream=in_stream
    )


class OpenAIProvider:
    """The Provider protocol over OpenAI's ``/chat/completions``, ``/embeddings``, ``/models``."""

    def __init__(self, spec: ProviderSpec) -> None:
        self.name = spec.name
        self._options = spec.options
        self._http = HttpClient(spec, default_base_url=DEFAULT_BASE_URL, parse_error=self._error)
        official = self._http.base_url.startswith("https://api.openai.com")
        default_param = "max_completion_tokens" if official else "max_tokens"
        self._max_tokens_param = str(spec.options.get("max_tokens_param", default_param))
        self._include_usage = bool(spec.options.get("include_usage", True))

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
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": str(m.role), "content": m.content} for m in request.messages],
        }
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
        if stream:
            body["stream"] = True
            if self._include_usage:
                body["stream_options"] = {"include_usage": True}
        return body

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        url = f"{self._http.base_url}/chat/completions"
        body = self._body(request, stream=True)
        parts: list[str] = []
        usage: Usage | None = None
        finish: Finish | None = None
        async with self._http.request(
            "POST", url, json_body=body, headers=self._headers(), streaming=True
        ) as response:
            async for event in response.events():
                if event.data.strip() == "[DONE]":
                    finish = finish or Finish(FinishReason.STOP, "")
                    break
                chunk = parse_json(
                    event.data, provider=self.name, what="a stream chunk", broken=StreamBroken
                )
                if not isinstance(chunk, Mapping):
                    raise self._http.error(StreamBroken, "a stream chunk is not a JSON object")
                if "error" in chunk:
                    raise self._http.scrub(error_from_body(self.name, None, chunk["error"]))
                usage = parse_usage(chunk.get("usage")) or usage
                for choice in chunk.get("choices") or []:
                    if choice.get("index", 0) != 0:
                        continue
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        parts.append(text)
                        yield TextDelta(text)
                    if choice.get("finish_reason"):
                        finish = finish_reason(str(choice["finish_reason"]))
        if finish is None:
            raise self._http.error(StreamBroken, "the stream ended before any finish_reason")
        if usage is None:
            usage = estimate_usage(request.messages, "".join(parts), request.model)
        yield UsageReport(usage)
        yield finish

    async def complete(self, request: ProviderRequest) -> Completion:
        url = f"{self._http.base_url}/chat/completions"
        async with self._http.request(
            "POST", url, json_body=self._body(request, stream=False), headers=self._headers()
        ) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        choices = data.get("choices")
        if not choices:
            raise self._http.error(ProviderServerError, "the response has no choices", status=200)
        choice = choices[0]
        text = str((choice.get("message") or {}).get("content") or "")
        usage = parse_usage(data.get("usage"))
        if usage is None:
            usage = estimate_usage(request.messages, text, request.model)
        return Completion(
            text=text, finish=finish_reason(str(choice.get("finish_reason") or "")), usage=usage
        )

    async def embed(self, request: EmbedRequest) -> Embeddings:
        url = f"{self._http.base_url}/embeddings"
        body = {"model": request.model, "input": list(request.inputs), "encoding_format": "float"}
        async with self._http.request(
            "POST", url, json_body=body, headers=self._headers()
        ) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        items = sorted(data.get("data") or [], key=lambda item: int(item.get("index", 0)))
        if len(items) != len(request.inputs):
            raise self._http.error(
                ProviderServerError, f"{len(items)} embeddings for {len(request.inputs)} inputs"
            )
        vectors = tuple(tuple(float(v) for v in item["embedding"]) for item in items)
        reported = data.get("usage")
        if isinstance(reported, Mapping) and "prompt_tokens" in reported:
            usage = Usage(input_tokens=int(reported["prompt_tokens"]))
        else:
            count = sum(estimate_text_tokens(t, request.model) for t in request.inputs)
            usage = Usage(input_tokens=count, estimated=True)
        return Embeddings(vectors=vectors, usage=usage)

    async def list_models(self) -> list[str]:
        url = f"{self._http.base_url}/models"
        async with self._http.request("GET", url, headers=self._headers()) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        return model_ids(data)

    async def aclose(self) -> None:
        await self._http.aclose()
