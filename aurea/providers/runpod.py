"""RunPod Serverless as a provider: ``/run`` + ``/status`` polling (``run``), ``/runsync``
(``complete``), ``/stream`` polling (``stream``) and ``/cancel`` whenever the caller goes away.

The chat input follows RunPod's vLLM worker: ``{"messages", "sampling_params": {...},
"stream"}``. A job's output may be one object or a list of them (the worker's batches); text and
usage are read from each with JSON pointers and joined. Options: ``endpoint_id`` (required),
``poll_interval_s`` (0.5), ``text_pointer`` (``/choices/0/tokens``; a list of pieces is joined),
``input_tokens_pointer`` (``/usage/input``), ``output_tokens_pointer`` (``/usage/output``),
``finish_reason_pointer``, ``models``. Deadlines: ``first_byte_s`` for the first output of a
stream, ``idle_s`` between outputs, ``total_s`` for a whole job; a job that outlives them is
cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    ProviderError,
    ProviderServerError,
    ProviderTimeout,
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
    TextDelta,
    UsageReport,
)
from aurea.providers._boundary import adapter_boundary, check_options, text_only
from aurea.providers._http import (
    HttpClient,
    error_for_status,
    is_content_filter,
    is_context_length,
    json_object,
    parse_json,
    retry_after_from_headers,
)
from aurea.providers.http_generic import (
    check_pointer,
    finish_from,
    read_count,
    resolve_pointer,
    text_of,
    usage_from_counts,
)

__all__ = ["DEFAULT_BASE_URL", "OPTIONS", "TERMINAL", "RunPodProvider"]

OPTIONS = frozenset(
    {
        "endpoint_id",
        "poll_interval_s",
        "text_pointer",
        "input_tokens_pointer",
        "output_tokens_pointer",
        "finish_reason_pointer",
        "models",
    }
)

DEFAULT_BASE_URL = "https://api.runpod.ai"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


@adapter_boundary
class RunPodProvider:
    """One RunPod Serverless endpoint; a compute provider (``run``) and a chat ``Provider``."""

    def __init__(self, spec: ProviderSpec) -> None:
        check_options(spec, OPTIONS)
        self.name = spec.name
        options = spec.options
        self._options = options
        endpoint_id = str(options.get("endpoint_id") or "")
        if not endpoint_id:
            raise ValueError(f"provider {spec.name!r}: kind 'runpod' needs options.endpoint_id")
        self._http = HttpClient(spec, default_base_url=DEFAULT_BASE_URL, parse_error=self._error)
        self._root = f"{self._http.base_url}/v2/{endpoint_id}"
        self._timeouts = spec.timeouts
        self._poll_s = float(options.get("poll_interval_s", 0.5))
        self._pointers = {
            name: check_pointer(str(options.get(name, default)))
            for name, default in (
                ("text_pointer", "/choices/0/tokens"),
                ("input_tokens_pointer", "/usage/input"),
                ("output_tokens_pointer", "/usage/output"),
                ("finish_reason_pointer", "/finish_reason"),
            )
        }

    # -- HTTP ----------------------------------------------------------------------------------
    def _error(self, status: int, body: str, headers: Mapping[str, str]) -> ProviderError:
        detail = body.strip()[:500]
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, Mapping):
                found = parsed.get("error") or parsed.get("message")
                if found:
                    detail = found if isinstance(found, str) else json.dumps(found)
        return error_for_status(
            self.name, status, detail, retry_after_s=retry_after_from_headers(headers)
        )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._http.api_key}", "Content-Type": "application/json"}

    async def _call(
        self, method: str, path: str, body: Any = None, *, poll: bool = False, quick: bool = True
    ) -> Mapping[str, Any]:
        """One API call; ``poll``: a status/stream poll, where a vanished job breaks the stream
        and a malformed answer is a broken stream too. ``quick`` calls must answer within
        ``first_byte_s``; ``/runsync`` holds the request open while the job runs, so it is not."""
        try:
            async with self._http.request(
                method,
                f"{self._root}{path}",
                json_body=body,
                headers=self._headers(),
                streaming=quick,
            ) as response:
                raw = await response.read()
        except UpstreamRejected as exc:
            if poll and exc.status == 404:
                raise self._http.error(StreamBroken, f"the job is gone ({exc.message})") from exc
            raise
        broken = StreamBroken if poll else ProviderServerError
        data = parse_json(raw, provider=self.name, what=f"the {path} reply", broken=broken)
        return json_object(data, provider=self.name, what=f"the {path} reply")

    async def _submit(self, path: str, body: Any, *, quick: bool = True) -> Mapping[str, Any]:
        """POST a job. If the caller is cancelled mid-request the job may already exist
        upstream: finish learning its id (bounded by the request's own timeouts), cancel it,
        and only then let the cancellation through."""
        call = asyncio.ensure_future(self._call("POST", path, body, quick=quick))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            with contextlib.suppress(ProviderError, OSError):
                job = await call
                if job.get("id") and str(job.get("status")) not in TERMINAL:
                    await self._cancel(str(job["id"]))
            raise

    async def _cancel(self, job_id: str) -> None:
        """Best effort: the caller is gone or gave up; a failure here must not mask that."""
        with contextlib.suppress(ProviderError, OSError):
            await self._call("POST", f"/cancel/{job_id}")

    def _job_error(self, job: Mapping[str, Any]) -> ProviderError:
        status = str(job.get("status"))
        raw = job.get("error")
        message = raw if isinstance(raw, str) else json.dumps(raw)
        with contextlib.suppress(ValueError, TypeError):
            parsed = json.loads(message)
            if isinstance(parsed, Mapping) and parsed.get("error_message"):
                message = f"{parsed.get('error_type', '')}: {parsed['error_message']}".lstrip(": ")
        text = f"job {job.get('id', '?')} {status}: {message}"
        cls: type[ProviderError] = ProviderServerError
        if status == "TIMED_OUT":
            cls = ProviderTimeout
        elif is_context_length(message):
            cls = ContextLengthExceeded
        elif is_content_filter(message):
            cls = ContentFiltered
        return self._http.error(cls, text)

    async def _wait(self, job: Mapping[str, Any]) -> Mapping[str, Any]:
        """Poll ``/status`` until the job is terminal; cancel it if we stop waiting early."""
        job_id = str(job.get("id") or "")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeouts.total_s
        done = False
        try:
            while str(job.get("status")) not in TERMINAL:
                if loop.time() >= deadline:
                    raise self._http.error(
                        ProviderTimeout,
                        f"job {job_id} still {job.get('status')} after "
                        f"{self._timeouts.total_s:g} s (total_s)",
                    )
                await asyncio.sleep(self._poll_s)
                job = await self._call("GET", f"/status/{job_id}", poll=True)
            done = True
        finally:
            if not done and job_id:
                await self._cancel(job_id)
        if job.get("status") != "COMPLETED":
            raise self._job_error(job)
        return job

    # -- compute ---------------------------------------------------------------------------------
    async def run(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Submit ``payload`` as the job input, wait for it and return its output (a non-object
        output is wrapped as ``{"output": value}``). Cancelling the caller cancels the job."""
        job = await self._submit("/run", {"input": dict(payload)})
        output = (await self._wait(job)).get("output")
        return dict(output) if isinstance(output, Mapping) else {"output": output}

    # -- chat ----------------------------------------------------------------------------------
    def _input(self, request: ProviderRequest, *, stream: bool) -> dict[str, Any]:
        text_only(self.name, request)
        params: dict[str, Any] = {}
        for name in ("max_tokens", "temperature", "top_p", "seed"):
            if getattr(request, name) is not None:
                params[name] = getattr(request, name)
        if request.stop:
            params["stop"] = list(request.stop)
        payload: dict[str, Any] = {
            "messages": [{"role": str(m.role), "content": m.content} for m in request.messages],
            "sampling_params": params,
        }
        if stream:
            payload["stream"] = True
        return payload

    def _read(self, outputs: list[Any]) -> tuple[str, tuple[int | None, int | None], Finish | None]:
        text: list[str] = []
        given: list[int | None] = [None, None]
        finish: Finish | None = None
        for output in outputs:
            pointer = self._pointers["text_pointer"]
            text.append(text_of(resolve_pointer(output, pointer), f"the text at {pointer!r}"))
            for i, name in enumerate(("input_tokens_pointer", "output_tokens_pointer")):
                count = read_count(output, self._pointers[name])
                given[i] = count if count is not None else given[i]  # cumulative: last wins
            finish = finish_from(output, self._pointers["finish_reason_pointer"]) or finish
        return "".join(text), (given[0], given[1]), finish

    async def complete(self, request: ProviderRequest) -> Completion:
        body = {"input": self._input(request, stream=False)}
        job = await self._submit("/runsync", body, quick=False)
        job = await self._wait(job)
        output = job.get("output")
        text, counts, finish = self._read(output if isinstance(output, list) else [output])
        return Completion(
            text=text,
            finish=finish or Finish(FinishReason.STOP, ""),
            usage=await usage_from_counts(counts, request, text),
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        job = await self._submit("/run", {"input": self._input(request, stream=True)})
        job_id = str(job.get("id") or "")
        loop = asyncio.get_running_loop()
        start = loop.time()
        last_output = start
        parts: list[str] = []
        counts: tuple[int | None, int | None] = (None, None)
        finish: Finish | None = None
        status = str(job.get("status"))
        terminal = False
        try:
            while True:
                page = await self._call("GET", f"/stream/{job_id}", poll=True)
                status = str(page.get("status"))
                pieces = page.get("stream")
                outputs = [
                    item.get("output")
                    for item in (pieces if isinstance(pieces, list) else [])
                    if isinstance(item, Mapping)
                ]
                if outputs:
                    last_output = loop.time()
                    text, seen, seen_finish = self._read(outputs)
                    counts = (
                        seen[0] if seen[0] is not None else counts[0],
                        seen[1] if seen[1] is not None else counts[1],
                    )
                    finish = seen_finish or finish
                    if text:
                        parts.append(text)
                        yield TextDelta(text)
                if status in TERMINAL:
                    terminal = True
                    break
                now = loop.time()
                limit, label = self._timeouts.first_byte_s, "first_byte_s"
                if parts:
                    limit, label = self._timeouts.idle_s, "idle_s"
                if now - start > self._timeouts.total_s:
                    limit, label = 0.0, "total_s"
                if now - last_output > limit:
                    raise self._http.error(
                        ProviderTimeout, f"job {job_id}: no output in time ({label})"
                    )
                await asyncio.sleep(self._poll_s)
        finally:
            if not terminal and job_id:
                await self._cancel(job_id)
        if status != "COMPLETED":
            raise self._job_error({**page, "id": job_id})
        if not parts and counts == (None, None):
            # A handler that does not stream: its result only shows in /status.
            final = await self._call("GET", f"/status/{job_id}", poll=True)
            output = final.get("output")
            text, counts, finish = self._read(output if isinstance(output, list) else [output])
            if text:
                parts.append(text)
                yield TextDelta(text)
        yield UsageReport(await usage_from_counts(counts, request, "".join(parts)))
        yield finish or Finish(FinishReason.STOP, "")

    async def embed(self, request: EmbedRequest) -> Embeddings:
        raise UpstreamRejected(
            f"{self.name}: the runpod provider has no embeddings API", provider=self.name
        )

    async def list_models(self) -> list[str]:
        return [str(m) for m in self._options.get("models") or []]

    async def aclose(self) -> None:
        await self._http.aclose()
