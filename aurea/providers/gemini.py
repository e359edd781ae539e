"""Gemini API adapter (``generateContent``, ``streamGenerateContent?alt=sse``, ``embedContent`` /
``batchEmbedContents``, ``models`` listing) over ``x-goog-api-key``.

Usage: ``promptTokenCount`` already includes ``cachedContentTokenCount``; Gemini's
``candidatesTokenCount`` excludes thinking, so Aurea's output is candidates + thoughts and
reasoning is the thoughts. Options: ``api_version`` (default ``v1beta``), ``headers``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

from aurea.errors import (
    ContentFiltered,
    ProviderAuthError,
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
    Role,
    TextDelta,
    Usage,
    UsageReport,
)
from aurea.providers._http import (
    HttpClient,
    error_for_status,
    json_object,
    parse_duration,
    parse_json,
    retry_after_from_headers,
)
from aurea.providers._tokens import estimate_text_tokens, estimate_usage

__all__ = ["DEFAULT_BASE_URL", "GeminiProvider", "error_from_body", "finish_for", "parse_usage"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

_FILTERED = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "LANGUAGE",
}
# google.rpc.Code name -> the HTTP status Google maps it to (for in-stream errors).
_STATUS_HTTP = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def finish_for(raw: str) -> Finish:
    """Gemini's ``finishReason`` as a ``Finish``; unknown or OTHER reasons are ERROR."""
    if raw == "STOP":
        return Finish(FinishReason.STOP, raw)
    if raw == "MAX_TOKENS":
        return Finish(FinishReason.LENGTH, raw)
    if raw in _FILTERED:
        return Finish(FinishReason.CONTENT_FILTER, raw)
    return Finish(FinishReason.ERROR, raw)


def parse_usage(meta: Any) -> Usage | None:
    if not isinstance(meta, Mapping) or "promptTokenCount" not in meta:
        return None
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    return Usage(
        input_tokens=int(meta.get("promptTokenCount") or 0),
        cached_input_tokens=int(meta.get("cachedContentTokenCount") or 0),
        output_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
        reasoning_tokens=thoughts,
    )


def error_from_body(
    provider: str, http_status: int | None, body: Any, retry_after_s: float | None = None
) -> ProviderError:
    """Map ``{"error": {code, message, status, details}}``; ``http_status`` None = in-stream."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        error = {"message": str(body)}
    status_name = str(error.get("status") or "")
    message = str(error.get("message") or "")
    detail = f"{status_name}: {message}" if status_name else message
    reasons = set()
    for item in error.get("details") or []:
        if not isinstance(item, Mapping):
            continue
        if item.get("reason"):
            reasons.add(str(item["reason"]))
        if str(item.get("@type", "")).endswith("google.rpc.RetryInfo") and retry_after_s is None:
            retry_after_s = parse_duration(str(item.get("retryDelay", "")))
    in_stream = http_status is None
    status = http_status or int(error.get("code") or 0) or _STATUS_HTTP.get(status_name, 500)
    if "API_KEY_INVALID" in reasons or status_name in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        where = "in-stream error" if in_stream else f"HTTP {status}"
        return ProviderAuthError(
            f"{provider}: {where}: {detail}",
            provider=provider,
            status=None if in_stream else status,
        )
    return error_for_status(
        provider, status, detail, retry_after_s=retry_after_s, in_stream=in_stream
    )


class GeminiProvider:
    """The Provider protocol over the Gemini Developer API."""

    def __init__(self, spec: ProviderSpec) -> None:
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
        body: dict[str, Any] = {
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
        config: dict[str, Any] = {}
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

    def _read(self, data: Mapping[str, Any]) -> tuple[str, str]:
        """(text, finishReason) of one response object; raises for errors and blocked prompts."""
        if "error" in data:
            raise self._http.scrub(error_from_body(self.name, None, data))
        feedback = data.get("promptFeedback") or {}
        if feedback.get("blockReason"):
            raise self._http.error(
                ContentFiltered, f"prompt blocked: blockReason {feedback['blockReason']}"
            )
        candidates = data.get("candidates") or []
        if not candidates:
            return "", ""
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        text = "".join(
            str(p.get("text") or "")
            for p in parts
            if isinstance(p, Mapping) and not p.get("thought")
        )
        return text, str(candidate.get("finishReason") or "")

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        url = self._url(request.model, "streamGenerateContent") + "?alt=sse"
        parts: list[str] = []
        usage: Usage | None = None
        finish = ""
        async with self._http.request(
            "POST", url, json_body=self._body(request), headers=self._headers(), streaming=True
        ) as response:
            async for event in response.events():
                data = parse_json(
                    event.data, provider=self.name, what="a stream chunk", broken=StreamBroken
                )
                if not isinstance(data, Mapping):
                    raise self._http.error(StreamBroken, "a stream chunk is not a JSON object")
                text, reason = self._read(data)
                usage = parse_usage(data.get("usageMetadata")) or usage
                if text:
                    parts.append(text)
                    yield TextDelta(text)
                finish = reason or finish
        if not finish:
            raise self._http.error(StreamBroken, "the stream ended before any finishReason")
        if usage is None:
            usage = estimate_usage(request.messages, "".join(parts), request.model)
        yield UsageReport(usage)
        yield finish_for(finish)

    async def complete(self, request: ProviderRequest) -> Completion:
        url = self._url(request.model, "generateContent")
        async with self._http.request(
            "POST", url, json_body=self._body(request), headers=self._headers()
        ) as response:
            data = json_object(await response.json(), provider=self.name, what="the reply")
        text, reason = self._read(data)
        if not reason:
            raise self._http.error(ProviderServerError, "the reply has no finishReason")
        usage = parse_usage(data.get("usageMetadata"))
        if usage is None:
            usage = estimate_usage(request.messages, text, request.model)
        return Completion(text=text, finish=finish_for(reason), usage=usage)

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
        raw = [data.get("embedding")] if len(contents) == 1 else data.get("embeddings") or []
        items = [item for item in raw if isinstance(item, Mapping)]
        if len(items) != len(contents):
            raise self._http.error(
                ProviderServerError, f"{len(items)} embeddings for {len(contents)} inputs"
            )
        vectors = tuple(tuple(float(v) for v in item.get("values") or []) for item in items)
        # Gemini reports no token usage for embeddings.
        count = sum(estimate_text_tokens(t, request.model) for t in request.inputs)
        return Embeddings(vectors=vectors, usage=Usage(input_tokens=count, estimated=True))

    async def list_models(self) -> list[str]:
        names: list[str] = []
        token = ""
        for _ in range(100):  # pages; a bound against a server that never stops paging
            url = f"{self._http.base_url}/{self._version}/models?pageSize=1000"
            if token:
                url += f"&pageToken={quote(token)}"
            async with self._http.request("GET", url, headers=self._headers()) as response:
                data = json_object(await response.json(), provider=self.name, what="the reply")
            for item in data.get("models") or []:
                if isinstance(item, Mapping) and item.get("name"):
                    names.append(str(item["name"]).removeprefix("models/"))
            token = str(data.get("nextPageToken") or "")
            if not token:
                break
        return names

    async def aclose(self) -> None:
        await self._http.aclose()
