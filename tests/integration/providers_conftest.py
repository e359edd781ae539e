"""The rig shared by the provider end-to-end and secret-canary tests: one fake upstream per
provider kind on 127.0.0.1, and two in-process Aurea servers configured against all of them (one
that never retries, one that retries twice), plus helpers to run calls and decode their status.

Not a conftest (pytest does not load it by itself): test modules import what they use.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from aurea.testing import RunningServer, running_server, test_settings
from aurea.testing.fakes import (
    FakeAnthropic,
    FakeGemini,
    FakeHTTPModel,
    FakeLambda,
    FakeOpenAI,
    FakeRunPod,
    FakeServer,
)
from aurea.v1 import admin_pb2_grpc, inference_pb2_grpc
from aurea.v1 import inference_pb2 as pb

RUNPOD_ENDPOINT = "e2e-endpoint"
LAMBDA_FUNCTION = "echo-llm"
LAMBDA_REGION = "eu-west-1"


@dataclass(frozen=True)
class Case:
    """One provider block of the rig and the chat model it serves."""

    provider: str  # Aurea's name for the provider block
    kind: str  # the block's ``kind``
    model: str  # catalog name of its chat model
    upstream: str  # the provider's own model id
    input_usd: str  # catalog prices, USD per million tokens
    cached_usd: str
    output_usd: str
    key_env: str  # the env var named by ``api_key_env`` ("" for lambda: AWS credentials)
    sse: bool = True  # the upstream streams one event per token (SSE)
    embed_model: str = ""  # catalog name of its embedding model, if any
    embed_upstream: str = ""


CASES: tuple[Case, ...] = (
    Case("openai", "openai", "gpt-x", "gpt-4o-mini", "0.15", "0.075", "0.60", "E2E_OPENAI_KEY",
         embed_model="oa-embed", embed_upstream="text-embedding-3-small"),
    Case("compat", "openai", "compat-llama", "llama-3.1-8b", "0.05", "0.05", "0.08",
         "E2E_COMPAT_KEY"),
    Case("anthropic", "anthropic", "claude-x", "claude-3-5-haiku-20241022", "0.80", "0.08",
         "4.00", "E2E_ANTHROPIC_KEY"),
    Case("gemini", "gemini", "gemini-x", "gemini-2.0-flash", "0.10", "0.025", "0.40",
         "E2E_GEMINI_KEY", embed_model="gem-embed", embed_upstream="text-embedding-004"),
    # A price with a fraction of a nano-dollar per token: cost must round up.
    Case("http", "http", "http-x", "custom-1", "0.1234567", "0.1234567", "0.7654321",
         "E2E_HTTP_KEY"),
    Case("lambda", "lambda", "lambda-x", "echo-model", "0.20", "0.20", "0.20", "", sse=False),
    Case("runpod", "runpod", "runpod-x", "llama-rp", "0.30", "0.30", "0.90", "E2E_RUNPOD_KEY",
         sse=False),
)  # fmt: skip
BY_PROVIDER = {c.provider: c for c in CASES}

# Usage knobs of the fakes (what each provider reports beyond plain counts).
OPENAI_CACHED, OPENAI_REASONING = 2, 1
ANTHROPIC_CACHE_READ, ANTHROPIC_CACHE_WRITE = 2, 1
GEMINI_CACHED, GEMINI_THOUGHTS = 1, 2

# A provider block whose key variable is never set (its model: "nokey-model").
UNSET_KEY_ENV = "E2E_UNSET_PROVIDER_KEY"
AWS_ACCESS_ENV = "E2E_AWS_ACCESS_KEY_ID"
AWS_SECRET_ENV = "E2E_AWS_SECRET_ACCESS_KEY"
AWS_TOKEN_ENV = "E2E_AWS_SESSION_TOKEN"


@dataclass(frozen=True)
class Secrets:
    """The credentials the rig puts in the environment (and the fakes accept)."""

    keys: Mapping[str, str]  # provider name -> API key (every provider but lambda)
    aws_access_key: str
    aws_secret_key: str
    aws_session_token: str

    def all(self) -> list[str]:
        return [*self.keys.values(), self.aws_secret_key, self.aws_session_token]


@dataclass
class Rig:
    fakes: dict[str, FakeServer]  # provider name -> its fake
    strict: RunningServer  # retry.max_retries = 0
    retrying: RunningServer  # retry.max_retries = 2
    secrets: Secrets

    def fake(self, provider: str) -> Any:
        return self.fakes[provider]

    def reset(self) -> None:
        """Forget queued faults and per-test knobs (the fakes live for the whole module)."""
        for fake in self.fakes.values():
            fake.faults.clear()
            fake.token_delay_s = 0.0
            fake.stream_aborted.clear()


def words(*texts: str) -> int:
    """The fakes' token count: whitespace-separated words."""
    return sum(len(t.split()) for t in texts)


def hand_cost(case: Case, input_tokens: int, cached: int, output: int) -> int:
    """Catalog price of a call in nano-dollars, rounded up (1 USD/Mtok = 1000 nanos/token)."""
    nanos = (
        Decimal(input_tokens - cached) * Decimal(case.input_usd)
        + Decimal(cached) * Decimal(case.cached_usd)
        + Decimal(output) * Decimal(case.output_usd)
    ) * 1000
    return math.ceil(nanos)


def _provider_block(case: Case, fake: FakeServer) -> dict[str, Any]:
    block: dict[str, Any] = {
        "kind": case.kind,
        "base_url": fake.base_url,
        "connect_timeout_s": 2,
        "first_byte_timeout_s": 5,
        "idle_timeout_s": 5,
        "total_timeout_s": 20,
    }
    if case.key_env:
        block["api_key_env"] = case.key_env
    if case.kind == "http":
        origin = fake.origin
        block["base_url"] = f"{origin}/generate"
        block["options"] = {
            "stream_url": f"{origin}/generate/stream",
            "headers": {"X-Api-Key": "{api_key}"},
            "text_pointer": "/output/text",
            "stream_text_pointer": "/delta/text",
            "input_tokens_pointer": "/usage/prompt_tokens",
            "output_tokens_pointer": "/usage/completion_tokens",
            "finish_reason_pointer": "/finish",
            "error_pointer": "/error/message",
        }
    elif case.kind == "lambda":
        block["options"] = {
            "function": LAMBDA_FUNCTION,
            "region": LAMBDA_REGION,
            "access_key_env": AWS_ACCESS_ENV,
            "secret_key_env": AWS_SECRET_ENV,
            "session_token_env": AWS_TOKEN_ENV,
        }
    elif case.kind == "runpod":
        block["options"] = {"endpoint_id": RUNPOD_ENDPOINT, "poll_interval_s": 0.01}
    return block


def rig_config(fakes: Mapping[str, FakeServer], max_retries: int) -> dict[str, Any]:
    providers: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for case in CASES:
        providers[case.provider] = _provider_block(case, fakes[case.provider])
        models[case.model] = {
            "provider": case.provider,
            "upstream": case.upstream,
            "input_usd_per_mtok": case.input_usd,
            "cached_input_usd_per_mtok": case.cached_usd,
            "output_usd_per_mtok": case.output_usd,
        }
        if case.embed_model:
            models[case.embed_model] = {
                "provider": case.provider,
                "upstream": case.embed_upstream,
                "kind": "embedding",
                "input_usd_per_mtok": case.input_usd,
            }
    providers["nokey"] = {**_provider_block(BY_PROVIDER["openai"], fakes["openai"])}
    providers["nokey"]["api_key_env"] = UNSET_KEY_ENV
    models["nokey-model"] = {"provider": "nokey", "upstream": "gpt-4o-mini"}
    return {
        "providers": providers,
        "models": models,
        "routing": {"default_model": "gpt-x", "default_embedding_model": "oa-embed"},
        "retry": {"max_retries": max_retries, "backoff_base_s": 0.01, "backoff_max_s": 0.05},
        # The rig's servers serve every test of a module: one test's faults must not open a
        # breaker or hold a model back for the next (issue 8's resilience has its own tests).
        "breaker": {"failure_threshold": 1_000_000},
        "limits": {"upstream_hold_max_s": 0},
    }


def make_fakes(secrets: Secrets) -> dict[str, FakeServer]:
    keys = secrets.keys
    openai = FakeOpenAI(api_key=keys["openai"])
    openai.cached_input_tokens = OPENAI_CACHED
    openai.reasoning_tokens = OPENAI_REASONING
    compat = FakeOpenAI(api_key=keys["compat"])
    compat.ignore_include_usage = True  # like vLLM / llama.cpp builds that never send usage
    anthropic = FakeAnthropic(api_key=keys["anthropic"])
    anthropic.cached_input_tokens = ANTHROPIC_CACHE_READ
    anthropic.cache_creation_input_tokens = ANTHROPIC_CACHE_WRITE
    gemini = FakeGemini(api_key=keys["gemini"])
    gemini.cached_input_tokens = GEMINI_CACHED
    gemini.reasoning_tokens = GEMINI_THOUGHTS
    lam = FakeLambda(
        access_key=secrets.aws_access_key, secret_key=secrets.aws_secret_key, region=LAMBDA_REGION
    )
    return {
        "openai": openai,
        "compat": compat,
        "anthropic": anthropic,
        "gemini": gemini,
        "http": FakeHTTPModel(api_key=keys["http"]),
        "lambda": lam,
        "runpod": FakeRunPod(api_key=keys["runpod"], endpoint_id=RUNPOD_ENDPOINT),
    }


@contextlib.asynccontextmanager
async def open_rig(
    secrets: Secrets, fakes: dict[str, FakeServer] | None = None
) -> AsyncIterator[Rig]:
    """Put ``secrets`` in the environment (named by the config, never in it), start the fakes and
    two Aurea servers; undo all of it on exit."""
    fakes = fakes or make_fakes(secrets)
    with pytest.MonkeyPatch.context() as mp:
        for case in CASES:
            if case.key_env:
                mp.setenv(case.key_env, secrets.keys[case.provider])
        mp.setenv(AWS_ACCESS_ENV, secrets.aws_access_key)
        mp.setenv(AWS_SECRET_ENV, secrets.aws_secret_key)
        mp.setenv(AWS_TOKEN_ENV, secrets.aws_session_token)
        mp.delenv(UNSET_KEY_ENV, raising=False)
        async with contextlib.AsyncExitStack() as stack:
            for fake in fakes.values():
                await stack.enter_async_context(fake)
            strict = await stack.enter_async_context(
                running_server(test_settings(rig_config(fakes, 0)))
            )
            retrying = await stack.enter_async_context(
                running_server(test_settings(rig_config(fakes, 2)))
            )
            yield Rig(fakes, strict, retrying, secrets)


def inference(rs: RunningServer) -> inference_pb2_grpc.InferenceServiceStub:
    return inference_pb2_grpc.InferenceServiceStub(rs.channel)


def admin(rs: RunningServer) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(rs.channel)


# -- failed calls ---------------------------------------------------------------------------------
_DETAIL_TYPES = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.QuotaFailure,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.DebugInfo,
    error_details_pb2.ResourceInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
    error_details_pb2.RequestInfo,
)


@dataclass
class Failure:
    """Everything a failed call carried, decoded."""

    code: grpc.StatusCode
    message: str
    status: status_pb2.Status | None
    details: list[Any]  # every google.rpc detail, unpacked (an unknown one stays an Any)
    trailing: list[tuple[str, str | bytes]]
    debug: str  # grpc's debug error string
    raw: str = ""  # str() and repr() of the client's exception

    def detail(self, cls: type[Any]) -> Any:
        found = [d for d in self.details if isinstance(d, cls)]
        return found[0] if found else None

    @property
    def reason(self) -> str:
        info = self.detail(error_details_pb2.ErrorInfo)
        return str(info.reason) if info is not None else ""

    @property
    def error_info(self) -> error_details_pb2.ErrorInfo | None:
        return self.detail(error_details_pb2.ErrorInfo)  # type: ignore[no-any-return]

    @property
    def retry_info(self) -> error_details_pb2.RetryInfo | None:
        return self.detail(error_details_pb2.RetryInfo)  # type: ignore[no-any-return]

    def texts(self) -> list[str]:
        """Every text form of the failure (for the secret canary)."""
        out = [self.code.name, self.message, self.debug, self.raw, str(self.status)]
        out += [str(d) for d in self.details]
        for key, value in self.trailing:
            out.append(key)
            out.append(value.decode("latin-1") if isinstance(value, bytes) else value)
        return out


def _unpack(any_msg: any_pb2.Any) -> Any:
    for cls in _DETAIL_TYPES:
        if any_msg.Is(cls.DESCRIPTOR):
            msg = cls()
            any_msg.Unpack(msg)
            return msg
    return any_msg


def failure_of(err: grpc.RpcError) -> Failure:
    """Decode a failed call's status, ``grpc-status-details-bin`` and trailers."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    details = [_unpack(a) for a in status.details] if status is not None else []
    code = err.code()  # type: ignore[attr-defined]
    if status is not None:
        assert status.code == code.value[0], "the details' code differs from the call's"
    return Failure(
        code=code,
        message=err.details() or "",  # type: ignore[attr-defined]
        status=status,
        details=details,
        trailing=list(err.trailing_metadata() or ()),  # type: ignore[attr-defined]
        debug=err.debug_error_string() or "",  # type: ignore[attr-defined]
        raw=f"{err}\n{err!r}",
    )


# -- streams ---------------------------------------------------------------------------------------
@dataclass
class StreamRun:
    events: list[pb.GenerateStreamResponse]
    failure: Failure | None
    initial: list[tuple[str, str | bytes]]
    trailing: list[tuple[str, str | bytes]]

    @property
    def kinds(self) -> list[str]:
        return [str(e.WhichOneof("event")) for e in self.events]

    @property
    def text(self) -> str:
        return "".join(e.delta.text for e in self.events if e.HasField("delta"))

    @property
    def deltas(self) -> int:
        return sum(e.HasField("delta") for e in self.events)

    @property
    def final(self) -> pb.StreamFinal:
        finals = [e.final for e in self.events if e.HasField("final")]
        assert len(finals) == 1, self.kinds
        return finals[0]

    def check_order(self) -> None:
        """The order the proto promises: ``started`` once and first; no ``fallback`` after a
        ``delta``; ``final`` once and last on success, never on failure."""
        kinds = self.kinds
        assert kinds and kinds[0] == "started" and kinds.count("started") == 1, kinds
        if "delta" in kinds:
            assert "fallback" not in kinds[kinds.index("delta") :], kinds
        if self.failure is None:
            assert kinds[-1] == "final" and kinds.count("final") == 1, kinds
        else:
            assert "final" not in kinds, kinds


async def run_stream(
    rs: RunningServer, request: pb.GenerateStreamRequest, timeout_s: float = 20.0
) -> StreamRun:
    call = inference(rs).GenerateStream(request, timeout=timeout_s)
    events: list[pb.GenerateStreamResponse] = []
    failure: Failure | None = None
    try:
        async for event in call:
            events.append(event)
    except grpc.RpcError as err:
        failure = failure_of(err)
    initial = list(await call.initial_metadata() or ())
    trailing = list(await call.trailing_metadata() or ())
    return StreamRun(events, failure, initial, trailing)


async def wait_until(event: asyncio.Event, timeout_s: float = 5.0) -> bool:
    """Wait (bounded) for ``event``; whether it was set."""
    try:
        await asyncio.wait_for(event.wait(), timeout=timeout_s)
    except TimeoutError:
        return False
    return True
