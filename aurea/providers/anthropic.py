"""Anthropic Messages API adapter (``POST /v1/messages``, streaming and unary; ``GET /v1/models``).

Options: ``default_max_tokens`` (the API requires ``max_tokens``; default 1024),
``anthropic_version`` (default ``2023-06-01``), ``beta`` (an ``anthropic-beta`` header value),
``headers`` (extra headers). Usage is normalized to Aurea's convention: input tokens include
cache reads and cache writes; ``cached_input_tokens`` are the cache reads.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aurea.errors import ProviderError, ProviderServerError, StreamBroken, UpstreamRejected
from aurea.providers._base import (
    Completion,
    Embeddings,
    EmbedRequest,
    Finish,
    FinishReason,
    ProviderEvent,
    ProviderRequest,
    ProviderSpec,
    Role,
    TextDelta,
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
from aurea.providers._retry import parse_reset_time
from aurea.providers._values import Counts, reported_usage, token_count

__all__ = ["DEFAULT_BASE_URL", "OPTIONS", "AnthropicProvider", "error_from_body", "usage_counts"]

OPTIONS = frozenset({"default_max_tokens", "anthropic_version", "beta", "headers"})

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"

_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}
# The HTTP status Anthropic uses for each error type (to classify in-stream ``error`` events).
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def usage_counts(raw: Mapping[str, Any]) -> Counts:
    """Anthropic's usage (input excludes cache reads and writes) as counts in Aurea's convention:
    input is all three added up (unknown when ``input_tokens`` itself is invalid)."""
    fresh = token_count(raw.get("input_tokens"))
    read = token_count(raw.get("cache_read_input_tokens")) or 0
    written = token_count(raw.get("cache_creation_input_tokens")) or 0
    return Counts(
        input_tokens=None if fresh is None else fresh + read + written,
        cached_input_tokens=read,
        output_tokens=raw.get("output_tokens"),
    )


def _stop_reason(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedReply(f"{where}.stop_reason is {json_type(value)}, not a string")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text_delta(delta: Mapping[str, Any]) -> str:
    """The text of a content_block_delta's ``delta`` ("" for other delta types)."""
    if delta.get("type") != "text_delta":
        return ""
    text = delta.get("text")
    if not isinstance(text, str):
        raise MalformedReply(f"content_block_delta.delta.text is {json_type(text)}, not text")
    return text


def error_from_body(
    provider: str, status: int | None, body: Any, retry_after_s: float | None = None
) -> ProviderError:
    """Map ``{"type": "error", "error": {type, message}}``; ``status`` None = in-stream event."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        error = {"message": str(body)}
    type_ = str(error.get("type") or "")
    message = str(error.get("message") or "")
    detail = f"{type_}: {message}" if type_ else message
    in_stream = status is None
    if status is None:
        status = _TYPE_STATUS.get(type_, 500)
    return error_for_status(
        provider, status, detail, retry_after_s=retry_after_s, in_stream=in_stream
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    seconds = retry_after_from_headers(headers)
    if seconds is not None:
        return seconds
    resets = [
        parse_reset_time(headers.get(f"anthropic-ratelimit-{name}-reset"))
        for name in ("requests", "tokens", "input-tokens", "output-tokens")
    ]
    known = [r for r in resets if r is not None]
    return max(known) if known else None


@adapter_boundary
class AnthropicProvider:
    """The Provider protocol over Anthropic's Messages API."""

    def __init__(self, spec: ProviderSpec) -> None:
        check_options(spec, OPTIONS)
        self.name = spec.name
        self._options = spec.options
        self._http = HttpClient(spec, default_base_url=DEFAULT_BASE_URL, parse_error=self._error)
        self._default_max_tokens = int(spec.options.get("default_max_tokens", 1024))

    def _error(self, status: int, body: str, headers: Mapping[str, str]) -> ProviderError:
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        retry_after = _retry_after(headers)
        if isinstance(parsed, Mapping) and isinstance(parsed.get("error"), Mapping):
            return error_from_body(self.name, status, parsed, retry_after)
        return error_for_status(self.name, status, body.strip()[:500], retry_after_s=retry_after)

    def _headers(self) -> dict[str, str]:
        headers = {
            "x-api-key": self._http.api_key,
            "anthropic-version": str(self._options.get("anthropic_version", API_VERSION)),
            "content-type": "application/json",
        }
        if self._options.get("beta"):
            headers["anthropic-beta"] = str(self._options["beta"])
        headers.update({str(k): str(v) for k, v in dict(self._options.get("headers", {})).items()})
        return headers

    def _body(self, request: ProviderRequest, *, stream: bool) -> dict[str, Any]:
        system = [m.content for m in request.messages if m.role == Role.SYSTEM]
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or self._default_max_tokens,
            "messages": [
                {"role": str(m.role), "content": m.content}
                for m in request.messages
                if m.role != Role.SYSTEM
            ],
        }
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
        return body

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        url = f"{self._http.base_url}/v1/messages"
        parts: list[str] = []
        usage: dict[str, Any] = {}
        stop_reason = ""
        finished = False
        skipper = ChunkSkipper(self.name)
        async with self._http.request(
            "POST",
            url,
            json_body=self._body(request, stream=True),
            headers=self._headers(),
            streaming=True,
            timeouts=request.timeouts,
        ) as response:
            async for event in response.events():
                text = ""
                try:
                    data = self._event(event.data, event.event)
                    kind = data.get("type") or event.event
                    if kind == "message_start":
                        usage.update(_mapping(_mapping(data.get("message")).get("usage")))
                    elif kind == "content_block_delta":
                        text = _text_delta(_mapping(data.get("delta")))
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
                if text:
                    parts.append(text)
                    yield TextDelta(text)
        # No message_stop but a stop_reason (message_delta): the answer is complete; neither:
        # the stream was cut.
        if not finished and not stop_reason:
            raise self._http.error(StreamBroken, "the stream ended before message_stop")
        final = await reported_usage(
            usage_counts(usage) if usage else None,
            messages=request.messages,
            output_text="".join(parts),
            model=request.model,
        )
        yield UsageReport(final)
        yield Finish(_FINISH.get(stop_reason, FinishReason.STOP), stop_reason)

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
        async with self._http.request(
            "POST",
            url,
            json_body=self._body(request, stream=False),
            headers=self._headers(),
            timeouts=request.timeouts,
        ) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        if data.get("type") == "error":
            raise self._http.scrub(error_from_body(self.name, None, data))
        content = data.get("content")
        if not isinstance(content, list):
            raise self._http.error(ProviderServerError, "the reply has no content", status=200)
        texts = []
        for i, block in enumerate(content):
            if isinstance(block, Mapping) and block.get("type") == "text":
                text = block.get("text")
                if not isinstance(text, str):
                    raise MalformedReply(f"reply.content[{i}].text is {json_type(text)}, not text")
                texts.append(text)
        text = "".join(texts)
        raw_usage = data.get("usage")
        usage = await reported_usage(
            usage_counts(raw_usage) if isinstance(raw_usage, Mapping) else None,
            messages=request.messages,
            output_text=text,
            model=request.model,
        )
        stop_reason = _stop_reason(data.get("stop_reason"), "reply")
        return Completion(
            text=text,
            finish=Finish(_FINISH.get(stop_reason, FinishReason.STOP), stop_reason),
            usage=usage,
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
