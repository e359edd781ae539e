"""The shape of a generic HTTP provider's endpoint (``aurea.providers.http_generic``): its
options checked and read, request values and headers rendered from the templates, and replies
read through the configured JSON pointers (errors mapped to ``ProviderError`` s)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    FieldViolation,
    ProviderError,
    ProviderServerError,
    UnsupportedFeature,
)
from aurea.providers._base import Finish, ProviderRequest, ProviderSpec, ResponseFormatType, Role
from aurea.providers._boundary import check_options
from aurea.providers._http import (
    HttpClient,
    error_for_status,
    is_content_filter,
    is_context_length,
    retry_after_from_headers,
)
from aurea.providers._openai_shapes import messages_json, rich_fields
from aurea.providers._templates import (
    MISSING,
    check_pointer,
    finish_from,
    read_count,
    references,
    render_template,
    resolve_pointer,
)

__all__ = ["OPTIONS", "GenericShape"]

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
        "tool_calls_pointer",
        "reasoning_pointer",
        "stream_tool_calls_pointer",
        "stream_reasoning_pointer",
    }
)
_DEFAULT_BODY = {"model": "{model}", "messages": "{messages}", "max_tokens": "{max_tokens}"}


class GenericShape:
    """A configured JSON HTTP endpoint's shape: its options, the values its templates are
    rendered with, and where its replies hold text, counts, the finish reason and errors."""

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
                "tool_calls_pointer",
                "reasoning_pointer",
                "stream_tool_calls_pointer",
                "stream_reasoning_pointer",
            )
            if options.get(name) is not None
        }
        self._pointers.setdefault("text_pointer", "/text")
        streaming = "stream_text_pointer" in self._pointers
        stream_template = options.get("stream_body_template", self._body_template)
        self._uses = {
            False: references(self._body_template),
            True: references(stream_template) if streaming else references(self._body_template),
        }

    # -- request building ------------------------------------------------------------------------
    def _values(self, request: ProviderRequest, stream: bool = False) -> dict[str, Any]:
        system = [m.content for m in request.messages if m.role == Role.SYSTEM]
        values: dict[str, Any] = {
            "prompt": "\n\n".join(m.content for m in request.messages if m.role != Role.SYSTEM),
            "system": "\n\n".join(system),
            "messages": messages_json(request.messages),
            "model": request.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed,
            "stop": list(request.stop),
            "request_id": request.request_id,
        }
        if request.rich:
            self._check_rich(request, self._uses[stream])
            rich = rich_fields(request)
            fmt = request.response_format
            values.update(
                tools=rich.get("tools"),
                tool_choice=rich.get("tool_choice"),
                parallel_tool_calls=rich.get("parallel_tool_calls"),
                response_format=rich.get("response_format"),
                json_schema=dict(fmt.schema) if fmt is not None and fmt.schema else None,
                reasoning_effort=rich.get("reasoning_effort"),
            )
        return values

    def _check_rich(self, request: ProviderRequest, uses: set[str]) -> None:
        """UnsupportedFeature for what the request needs and the template cannot carry."""
        fmt = request.response_format
        turns = any(m.parts or m.tool_calls or m.tool_call_id for m in request.messages)
        lacks = [
            (field, what)
            for needed, missing, field, what in (
                (request.tools, "tools" not in uses, "tools", "tools ({tools})"),
                (
                    turns,
                    "messages" not in uses,
                    "messages",
                    "images or tool turns in messages ({messages})",
                ),
                (
                    fmt is not None and fmt.type is not ResponseFormatType.TEXT,
                    not uses & {"response_format", "json_schema"},
                    "response_format",
                    "a JSON response format ({response_format} or {json_schema})",
                ),
                (
                    request.reasoning is not None,
                    "reasoning_effort" not in uses,
                    "reasoning_effort",
                    "a reasoning effort ({reasoning_effort})",
                ),
            )
            if needed and missing
        ]
        if lacks:
            raise UnsupportedFeature(
                f"{self.name}: model {request.model!r} cannot take "
                f"{', '.join(w for _, w in lacks)}: its body template does not reference it",
                [
                    FieldViolation(f, "not referenced by the provider's body template")
                    for f, _ in lacks
                ],
            )

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
