"""``Client``: ``AsyncClient``'s calls, arguments, typed results and errors without asyncio,
over a blocking grpc channel.

    with Client() as aurea:                                 # $AUREA_TARGET, $AUREA_API_KEY
        answer = aurea.generate("Say hello", max_tokens=20)
        for event in aurea.stream("Count to five"):
            ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc

from aurea_client import _convert
from aurea_client._client_base import ClientBase, channel_args
from aurea_client._invoke import SyncInvoker
from aurea_client._messages import ImageLike, MessageLike, ToolLike
from aurea_client._options import DEFAULT_TIMEOUT_S, RetryPolicy, Tls, metadata, resolve
from aurea_client._pb import inference_pb2 as pb
from aurea_client._pb import inference_pb2_grpc
from aurea_client._services import (
    AdminCalls,
    InfrastructureCalls,
    LedgerCalls,
    RouterCalls,
    TasksCalls,
)
from aurea_client._types import (
    Completion,
    Embeddings,
    Failover,
    Policy,
    ReasoningEffort,
    StreamEvent,
)


class Client(ClientBase):
    """The blocking client: ``AsyncClient``'s calls without asyncio (a stream is an iterator).
    Use one per thread or share it: grpc channels are thread-safe."""

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
            self._channel = grpc.insecure_channel(self.target, options=opts)
        else:
            self._channel = grpc.secure_channel(self.target, creds.credentials(), opts)
        self._invoke = SyncInvoker(
            metadata=metadata(key), retry=retry or RetryPolicy(), timeout_s=timeout_s
        )
        self._inference = inference_pb2_grpc.InferenceServiceStub(self._channel)
        self.tasks = TasksCalls(self._invoke, self._channel)
        self.ledger = LedgerCalls(self._invoke, self._channel)
        self.router = RouterCalls(self._invoke, self._channel)
        self.admin = AdminCalls(self._invoke, self._channel)
        self.infrastructure = InfrastructureCalls(self._invoke, self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def generate(
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
        """See ``AsyncClient.generate``."""
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
        reply = self._invoke.unary(
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
    ) -> Iterator[StreamEvent]:
        """See ``AsyncClient.stream``."""
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

    def embed(
        self,
        inputs: str | Sequence[str],
        *,
        model: str = "",
        job_id: str = "",
        timeout_s: float | None = None,
    ) -> Embeddings:
        """See ``AsyncClient.embed``."""
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        request = pb.EmbedRequest(model=model, inputs=texts, job_id=job_id)
        reply = self._invoke.unary(self._inference.Embed, request, timeout_s)
        return _convert.embeddings(reply)
