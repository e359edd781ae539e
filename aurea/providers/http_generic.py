"""A configurable adapter for any JSON-over-HTTP model endpoint (``kind = "http"``).

Options (all but ``url`` optional):

- ``url`` (default: ``base_url``), ``method`` (``POST``), ``headers`` (values may use
  ``{api_key}``);
- ``body_template``: a JSON value whose string leaves may use placeholders; a leaf that is exactly
  one placeholder becomes the typed value (``"{max_tokens}"`` -> ``256``; ``"{messages}"`` -> the
  list of ``{"role", "content"}``), and an object member whose value resolves to null is dropped.
  Placeholders: ``prompt`` (the non-system messages' contents joined by blank lines), ``system``,
  ``messages``, ``model``, ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``,
  ``request_id``. Default: ``{"model": "{model}", "messages": "{messages}",
  "max_tokens": "{max_tokens}"}``;
- JSON pointers (RFC 6901): ``text_pointer`` (``/text``), ``input_tokens_pointer``,
  ``output_tokens_pointer``, ``finish_reason_pointer``, ``error_pointer``;
- streaming over SSE when ``stream_text_pointer`` is set: ``stream_url`` (default ``url``),
  ``stream_body_template`` (default ``body_template``), ``stream_done`` (the data line that ends
  the stream, ``[DONE]``), ``stream_require_done`` (False: a clean end of stream also completes);
  without it ``stream()`` makes the unary call and yields the whole text as one delta;
- ``embed_url``, ``embeddings_pointer`` (to a list of vectors), ``embed_body_template``
  (placeholders ``model`` and ``inputs``; default ``{"model": "{model}", "input": "{inputs}"}``);
- ``models``: what ``list_models`` returns.

Text found at a text pointer must be a string or a list of strings; anything else is a malformed
reply. Counts are validated (``_values.token_count``); an invalid one is estimated.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    ProviderError,
    ProviderServerError,
    StreamBroken,
    UpstreamRejected,
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
from aurea.providers._boundary import MalformedReply, adapter_boundary, check_options, json_type
from aurea.providers._chunks import SKIPPABLE, ChunkSkipper, MalformedChunk
from aurea.providers._http import (
    HttpClient,
    error_for_status,
    is_content_filter,
    is_context_length,
    json_object,
    parse_json,
    retry_after_from_headers,
)
from aurea.providers._tokens import estimate_text_tokens_async
from aurea.providers._values import Counts, float_vector, reported_usage, token_count

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

OPTIONS = frozenset(
    {
        "url",
        "method",
        "headers",
        "body_template",
        "text_pointer",
        "input_tokens_pointer",
        "output_tokens_pointer",
        "finish_reason_pointer",
        "error_pointer",
        "stream_text_pointer",
        "stream_url",
        "stream_body_template",
        "stream_done",
        "stream_require_done",
        "embed_url",
        "embeddings_pointer",
        "embed_body_template",
        "models",
    }
)
MISSING: Any = object()  # what resolve_pointer returns when the pointer leads nowhere
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_DEFAULT_BODY = {"model": "{model}", "messages": "{messages}", "max_tokens": "{max_tokens}"}
_FINISH_WORDS = {
    "length": FinishReason.LENGTH,
    "max_tokens": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
    "tool_calls": FinishReason.TOOL_CALLS,
}


def check_pointer(pointer: str) -> str:
    """``pointer`` if it is a valid RFC 6901 JSON pointer, else ValueError."""
    if pointer and not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must be empty or start with '/'")
    return pointer


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at ``pointer`` (RFC 6901: ``~1`` is ``/``, ``~0`` is ``~``), or ``MISSING``."""
    check_pointer(pointer)
    if pointer == "":
        return document
    current = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, Mapping):
            if token not in current:
                return MISSING
            current = current[token]
        elif isinstance(current, list):
            if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
                return MISSING
            index = int(token)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def render_template(template: Any, values: Mapping[str, Any]) -> Any:
    """Fill ``template``'s string leaves from ``values`` (see the module docstring)."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]

        def text(match: re.Match[str]) -> str:
            if match.group(1) not in values:
                return match.group(0)  # not ours: leave literal braces alone
            value = values[match.group(1)]
            if value is None:
                return ""
            return value if isinstance(value, str) else json.dumps(value)

        return _PLACEHOLDER.sub(text, template)
    if isinstance(template, Mapping):
        out = {}
        for key, value in template.items():
            rendered = render_template(value, values)
            if rendered is None and value is not None:
                continue
            out[str(key)] = rendered
        return out
    if isinstance(template, list):
        return [render_template(item, values) for item in template]
    return template


def text_of(value: Any, where: str = "the text") -> str:
    """A pointer's value as text: a string as is, a list of strings joined, nothing as "";
    anything else (a number, an object, a list holding one) is a MalformedReply."""
    if value is MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    raise MalformedReply(f"{where} is {json_type(value)}, not text")


def read_count(document: Any, pointer: str | None) -> int | None:
    """A validated token count at ``pointer`` (``_values.token_count``), or None when it is
    absent or not a count."""
    value = resolve_pointer(document, pointer) if pointer is not None else MISSING
    return None if value is MISSING else token_count(value)


async def usage_from_counts(
    counts: tuple[int | None, int | None], request: ProviderRequest, text: str
) -> Usage:
    """Reported (input, output) counts, each missing one estimated (the whole is then
    ``estimated``)."""
    return await reported_usage(
        Counts(input_tokens=counts[0], output_tokens=counts[1]),
        messages=request.messages,
        output_text=text,
        model=request.model,
    )


def finish_from(document: Any, pointer: str | None) -> Finish | None:
    """A ``Finish`` from the word at ``pointer`` (length/max_tokens, content_filter,
    tool_calls; any other string is STOP), or None when there is none."""
    if pointer is None:
        return None
    raw = resolve_pointer(document, pointer)
    if raw in (MISSING, None, ""):
        return None
    if not isinstance(raw, str):
        raise MalformedReply(f"the finish reason at {pointer!r} is {json_type(raw)}, not a string")
    return Finish(_FINISH_WORDS.get(raw.lower(), FinishReason.STOP), raw)


@adapter_boundary
class GenericHTTPProvider:
    """The Provider protocol over a configurable JSON HTTP endpoint."""

    def __init__(self, spec: ProviderSpec) -> None:
        check_options(spec, OPTIONS)
        self.name = spec.name
        options = spec.options
        self._options = options
        self._http = HttpClient(spec, default_base_url="", parse_error=self._error)
        self._url = str(options.get("url") or self._http.base_url)
        if not self._url:
            raise ValueError(f"provider {spec.name!r}: kind 'http' needs options.url or base_url")
        self._method = str(options.get("method", "POST")).upper()
        self._body_template = options.get("body_template", _DEFAULT_BODY)
        self._pointers = {
            name: check_pointer(str(options[name]))
            for name in (
                "text_pointer",
                "input_tokens_pointer",
                "output_tokens_pointer",
                "finish_reason_pointer",
                "error_pointer",
                "stream_text_pointer",
            )
            if options.get(name) is not None
        }
        self._pointers.setdefault("text_pointer", "/text")

    # -- request building ------------------------------------------------------------------------
    def _values(self, request: ProviderRequest) -> dict[str, Any]:
        system = [m.content for m in request.messages if m.role == Role.SYSTEM]
        return {
            "prompt": "\n\n".join(m.content for m in request.messages if m.role != Role.SYSTEM),
            "system": "\n\n".join(system),
            "messages": [{"role": str(m.role), "content": m.content} for m in request.messages],
            "model": request.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "stop": list(request.stop),
            "request_id": request.request_id,
        }

    def _secret_values(self, text: str) -> dict[str, Any]:
        return {"api_key": self._http.api_key} if "{api_key}" in text else {}

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        for key, value in dict(self._options.get("headers", {})).items():
            headers[str(key)] = str(render_template(str(value), self._secret_values(str(value))))
        return headers

    def _target(self, url: str, values: Mapping[str, Any]) -> str:
        return str(render_template(url, {**values, **self._secret_values(url)}))

    # -- reading replies -------------------------------------------------------------------------
    def _error(self, status: int, body: str, headers: Mapping[str, str]) -> ProviderError:
        detail = body.strip()[:500]
        pointer = self._pointers.get("error_pointer")
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = MISSING
        if pointer is not None and parsed is not MISSING:
            found = resolve_pointer(parsed, pointer)
            if found not in (MISSING, None):
                detail = found if isinstance(found, str) else json.dumps(found)
        return error_for_status(
            self.name, status, detail, retry_after_s=retry_after_from_headers(headers)
        )

    def _check_error(self, document: Any, *, in_stream: bool) -> None:
        pointer = self._pointers.get("error_pointer")
        if pointer is None:
            return
        found = resolve_pointer(document, pointer)
        if found in (MISSING, None, "", {}, []):
            return
        detail = found if isinstance(found, str) else json.dumps(found)
        where = "in-stream error" if in_stream else "error in a 2xx reply"
        cls: type[ProviderError] = ProviderServerError
        if is_context_length(detail):
            cls = ContextLengthExceeded
        elif is_content_filter(detail):
            cls = ContentFiltered
        raise self._http.error(cls, f"{where}: {detail}")

    def _reported(self, document: Any) -> tuple[int | None, int | None]:
        return (
            read_count(document, self._pointers.get("input_tokens_pointer")),
            read_count(document, self._pointers.get("output_tokens_pointer")),
        )

    def _finish(self, document: Any) -> Finish | None:
        return finish_from(document, self._pointers.get("finish_reason_pointer"))

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
        return Completion(
            text=text,
            finish=self._finish(document) or Finish(FinishReason.STOP, ""),
            usage=await usage_from_counts(self._reported(document), request, text),
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        if "stream_text_pointer" not in self._pointers:
            completion = await self.complete(request)
            if completion.text:
                yield TextDelta(completion.text)
            assert completion.usage is not None
            yield UsageReport(completion.usage)
            yield completion.finish
            return
        values = self._values(request)
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
                except SKIPPABLE as exc:
                    skipper.skip(exc)
                    continue
                if text:
                    parts.append(text)
                    yield TextDelta(text)
                finish = seen or finish
                seen_in, seen_out = self._reported(document)  # cumulative: the last one wins
                given_in = seen_in if seen_in is not None else given_in
                given_out = seen_out if seen_out is not None else given_out
        # Without the end marker, a finish reason still completes the answer.
        if not done and finish is None and self._options.get("stream_require_done", False):
            raise self._http.error(StreamBroken, f"the stream ended before {done_marker!r}")
        yield UsageReport(await usage_from_counts((given_in, given_out), request, "".join(parts)))
        yield finish or Finish(FinishReason.STOP, "")

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
