"""``AsyncClient``: Aurea's calls from asyncio, over a ``grpc.aio`` channel (``Client``, in
``_sync_client``, makes the same calls blocking).

    async with AsyncClient() as aurea:                      # $AUREA_TARGET, $AUREA_API_KEY
        answer = await aurea.generate("Say hello", max_tokens=20)
        async for event in aurea.stream("Count to five"):
            ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc

from aurea_client import _convert
from aurea_client._client_base import ClientBase, channel_args
from aurea_client._invoke import AioInvoker
from aurea_client._messages import ImageLike, MessageLike, ToolLike
from aurea_client._options import DEFAULT_TIMEOUT_S, RetryPolicy, Tls, metadata, resolve
from aurea_client._pb import inference_pb2 as pb
from aurea_client._pb import inference_pb2_grpc
from aurea_client._services import (
    AsyncAdminCalls,
    AsyncInfrastructureCalls,
    AsyncLedgerCalls,
    AsyncRouterCalls,
    AsyncTasksCalls,
)
from aurea_client._types import (
    Completion,
    Embeddings,
    Failover,
    Policy,
    ReasoningEffort,
    StreamEvent,
)


class AsyncClient(ClientBase):
    """An asyncio client of one Aurea server. ``target`` is ``host:port`` (default
    $AUREA_TARGET, else 127.0.0.1:50051); ``api_key`` is sent as ``authorization: Bearer``
    (default $AUREA_API_KEY); ``tls`` True uses the system's roots, or pass a ``Tls``;
    ``timeout_s`` is every call's default deadline (None: no deadline; retries included)."""

    def __init__(
        self,
        target: str | None = None,
        *,
        api_key: str | None = None,
        tls: Tls | bool | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target, key = resolve(target, api_key)
        creds, extra = channel_args(tls)
        opts = [*extra, *options]
        if creds is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=opts)
        else:
            self._channel = grpc.aio.secure_channel(self.target, creds.credentials(), opts)
        self._invoke = AioInvoker(
            metadata=metadata(key), retry=retry or RetryPolicy(), timeout_s=timeout_s
        )
        self._inference = inference_pb2_grpc.InferenceServiceStub(self._channel)
        self.tasks = AsyncTasksCalls(self._invoke, self._channel)
        self.ledger = AsyncLedgerCalls(self._invoke, self._channel)
        self.router = AsyncRouterCalls(self._invoke, self._channel)
        self.admin = AsyncAdminCalls(self._invoke, self._channel)
        self.infrastructure = AsyncInfrastructureCalls(self._invoke, self._channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[MessageLike] = (),
        system: str | None = None,
        model: str = "",
        max_tokens: int = 0,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        job_id: str = "",
        policy: Policy | None = None,
        fallbacks: Sequence[str] = (),
        cache_bypass: bool = False,
        labels: Mapping[str, str] | None = None,
        tools: Sequence[ToolLike] = (),
        tool_choice: str | None = None,
        parallel_tool_calls: bool | None = None,
        json_schema: Mapping[str, Any] | None = None,
        schema_name: str = "",
        strict: bool = False,
        json_object: bool = False,
        reasoning_effort: ReasoningEffort | None = None,
        images: Sequence[ImageLike] = (),
        timeout_s: float | None = None,
    ) -> Completion:
        """One whole completion. Give ``prompt`` or ``messages`` (``system`` adds a system
        message first; ``images`` go with the prompt). ``model`` empty lets Aurea route by
        ``policy``.

        ``tools`` the model may call (``Tool``s or mappings), ``tool_choice`` "auto", "none",
        "required" or a tool's name; the answer's ``tool_calls`` are answered by sending
        ``answer.message()`` and a ``Message.tool_result(call.id, ...)`` per call next.
        ``json_schema`` (a JSON Schema object; ``strict`` to enforce it exactly) or
        ``json_object`` asks for JSON text. ``reasoning_effort`` "low", "medium" or "high"
        asks a reasoning model to think (its reasoning comes back apart from the text)."""
        fields = self._generate_fields(
            prompt,
            messages=messages,
            system=system,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            job_id=job_id,
            policy=policy,
            fallbacks=fallbacks,
            cache_bypass=cache_bypass,
            labels=labels,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            json_schema=json_schema,
            schema_name=schema_name,
            strict=strict,
            json_object=json_object,
            reasoning_effort=reasoning_effort,
            images=images,
        )
        reply = await self._invoke.unary(
            self._inference.Generate, pb.GenerateRequest(**fields), timeout_s
        )
        return _convert.completion(reply)

    def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[MessageLike] = (),
        system: str | None = None,
        model: str = "",
        max_tokens: int = 0,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        job_id: str = "",
        policy: Policy | None = None,
        fallbacks: Sequence[str] = (),
        cache_bypass: bool = False,
        labels: Mapping[str, str] | None = None,
        tools: Sequence[ToolLike] = (),
        tool_choice: str | None = None,
        parallel_tool_calls: bool | None = None,
        json_schema: Mapping[str, Any] | None = None,
        schema_name: str = "",
        strict: bool = False,
        json_object: bool = False,
        reasoning_effort: ReasoningEffort | None = None,
        images: Sequence[ImageLike] = (),
        usage_interval_deltas: int = 0,
        failover: Failover | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The completion as typed events: ``Started`` first, then ``Fallback``, ``Delta``,
        ``ToolCallDelta``, ``ReasoningDelta`` and ``UsageUpdate``, then ``Final`` (with the
        whole tool calls and the reasoning blocks: ``final.message(text)`` repeats the answer).
        The arguments are ``generate``'s. A stream that fails raises its error instead of
        ``Final`` (the text so far is incomplete). ``failover`` says what happens when the
        upstream breaks after text was sent (default: continue by prefill, else fail; with a
        restart, a ``Fallback`` with ``restart`` True tells the reader to discard its text)."""
        fields = self._generate_fields(
            prompt,
            messages=messages,
            system=system,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            job_id=job_id,
            policy=policy,
            fallbacks=fallbacks,
            cache_bypass=cache_bypass,
            labels=labels,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            json_schema=json_schema,
            schema_name=schema_name,
            strict=strict,
            json_object=json_object,
            reasoning_effort=reasoning_effort,
            images=images,
        )
        request = pb.GenerateStreamRequest(
            request=pb.GenerateRequest(**fields),
            usage_interval_deltas=usage_interval_deltas,
            mid_stream_failover=_convert.failover(failover),
        )
        return self._invoke.stream(
            self._inference.GenerateStream, request, _convert.event, timeout_s
        )

    async def embed(
        self,
        inputs: str | Sequence[str],
        *,
        model: str = "",
        job_id: str = "",
        timeout_s: float | None = None,
    ) -> Embeddings:
        """One vector per input text, in input order."""
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        request = pb.EmbedRequest(model=model, inputs=texts, job_id=job_id)
        reply = await self._invoke.unary(self._inference.Embed, request, timeout_s)
        return _convert.embeddings(reply)
