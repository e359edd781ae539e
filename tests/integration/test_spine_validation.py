"""Bad requests give INVALID_ARGUMENT or NOT_FOUND with google.rpc details naming the field, on
Generate, GenerateStream and Embed alike; no bad request ever gives INTERNAL or UNKNOWN."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio

from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as settings_for
from aurea.v1 import admin_pb2, admin_pb2_grpc, inference_pb2_grpc
from aurea.v1 import inference_pb2 as pb

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
BUGS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
USER = pb.ROLE_USER

# (id, request fields, expected code, field named by BadRequest, ErrorInfo reason)
GENERATE_CASES: list[tuple[str, dict[str, Any], grpc.StatusCode, str, str]] = [
    ("empty-prompt", {"prompt": ""}, INVALID, "prompt", "INVALID_REQUEST"),
    ("negative-max-tokens", {"prompt": "hi", "max_tokens": -1}, INVALID, "max_tokens", ""),
    ("huge-max-tokens", {"prompt": "hi", "max_tokens": 1_000_001}, INVALID, "max_tokens", ""),
    ("unknown-model", {"prompt": "hi", "model": "no-such-model"}, NOT_FOUND, "model", ""),
    (
        "unspecified-role",
        {"messages": [pb.ChatMessage(role=pb.ROLE_UNSPECIFIED, content="x")]},
        INVALID,
        "messages[0].role",
        "",
    ),
    (
        "unknown-role",
        {
            "messages": [
                pb.ChatMessage(role=USER, content="a"),
                pb.ChatMessage(role=42, content="b"),
            ]
        },
        INVALID,
        "messages[1].role",
        "",
    ),
    (
        "empty-content",
        {"messages": [pb.ChatMessage(role=USER, content="")]},
        INVALID,
        "messages[0].content",
        "",
    ),
    (
        "only-system",
        {"messages": [pb.ChatMessage(role=pb.ROLE_SYSTEM, content="be nice")]},
        INVALID,
        "messages",
        "",
    ),
    (
        "prompt-and-messages",
        {"prompt": "hi", "messages": [pb.ChatMessage(role=USER, content="hi")]},
        INVALID,
        "prompt",
        "",
    ),
    ("temperature-high", {"prompt": "hi", "temperature": 3.0}, INVALID, "temperature", ""),
    ("temperature-negative", {"prompt": "hi", "temperature": -0.1}, INVALID, "temperature", ""),
    ("temperature-nan", {"prompt": "hi", "temperature": math.nan}, INVALID, "temperature", ""),
    ("top-p-zero", {"prompt": "hi", "top_p": 0.0}, INVALID, "top_p", ""),
    ("top-p-inf", {"prompt": "hi", "top_p": math.inf}, INVALID, "top_p", ""),
    ("empty-stop", {"prompt": "hi", "stop": [""]}, INVALID, "stop[0]", ""),
    ("too-many-stops", {"prompt": "hi", "stop": list("abcde")}, INVALID, "stop", ""),
    ("long-job-id", {"prompt": "hi", "job_id": "j" * 129}, INVALID, "job_id", ""),
    ("unknown-policy", {"prompt": "hi", "routing_policy": 99}, INVALID, "routing_policy", ""),
    (
        "empty-fallback",
        {"prompt": "hi", "fallback_models": [""]},
        INVALID,
        "fallback_models[0]",
        "",
    ),
    (
        "too-many-fallbacks",
        {"prompt": "hi", "fallback_models": ["sim-large"] * 9},
        INVALID,
        "fallback_models",
        "",
    ),
    (
        "unknown-fallback",
        {"prompt": "hi", "fallback_models": ["sim-large", "nope"]},
        NOT_FOUND,
        "fallback_models[1]",
        "MODEL_NOT_FOUND",
    ),
    (
        "too-many-labels",
        {"prompt": "hi", "labels": {f"k{i}": "v" for i in range(33)}},
        INVALID,
        "labels",
        "",
    ),
    ("embedding-model", {"prompt": "hi", "model": "sim-embed"}, INVALID, "model", ""),
]


def _reason(code: grpc.StatusCode, reason: str) -> str:
    if reason:
        return reason
    return "MODEL_NOT_FOUND" if code is NOT_FOUND else "INVALID_REQUEST"


@pytest.fixture
def inference(server: RunningServer) -> inference_pb2_grpc.InferenceServiceStub:
    return inference_pb2_grpc.InferenceServiceStub(server.channel)


async def call_generate(stub: inference_pb2_grpc.InferenceServiceStub, **fields: Any) -> Any:
    return await stub.Generate(pb.GenerateRequest(**fields), timeout=10)


async def call_stream(stub: inference_pb2_grpc.InferenceServiceStub, **fields: Any) -> Any:
    options = {k: fields.pop(k) for k in ("usage_interval_deltas",) if k in fields}
    request = pb.GenerateStreamRequest(request=pb.GenerateRequest(**fields), **options)
    events = [e async for e in stub.GenerateStream(request, timeout=10)]
    return events


async def expect_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


@pytest.mark.parametrize("rpc", ["Generate", "GenerateStream"])
@pytest.mark.parametrize(
    ("fields", "code", "field", "reason"),
    [pytest.param(f, c, n, r, id=i) for i, f, c, n, r in GENERATE_CASES],
)
async def test_bad_generate_field_is_named(
    inference: inference_pb2_grpc.InferenceServiceStub,
    details: Callable[[grpc.RpcError], Any],
    rpc: str,
    fields: dict[str, Any],
    code: grpc.StatusCode,
    field: str,
    reason: str,
) -> None:
    call = call_generate if rpc == "Generate" else call_stream
    err = await expect_error(call(inference, **fields))
    d = details(err)
    assert d.code == code, f"{d.code}: {d.message}"
    assert d.status is not None, "no grpc-status-details-bin on the error"
    assert d.error_info is not None and d.error_info.domain == "aurea.v1"
    assert d.reason == _reason(code, reason)
    assert field in d.fields, f"BadRequest names {d.fields}, expected {field!r}"
    assert all(v.description for v in d.bad_request.field_violations)


async def test_every_bad_field_is_reported_at_once(
    inference: inference_pb2_grpc.InferenceServiceStub,
    details: Callable[[grpc.RpcError], Any],
) -> None:
    err = await expect_error(
        call_generate(
            inference,
            prompt="",
            max_tokens=-5,
            temperature=9.0,
            stop=["", "ok"],
            job_id="x" * 200,
        )
    )
    d = details(err)
    assert d.code == INVALID
    assert {"prompt", "max_tokens", "temperature", "stop[0]", "job_id"} <= set(d.fields)
    for name in ("prompt", "max_tokens", "temperature", "stop[0]", "job_id"):
        assert name in d.message  # the message summarizes every violation too


async def test_stream_only_field_is_validated(
    inference: inference_pb2_grpc.InferenceServiceStub,
    details: Callable[[grpc.RpcError], Any],
) -> None:
    for bad in (-1, 10_001):
        err = await expect_error(call_stream(inference, prompt="hi", usage_interval_deltas=bad))
        d = details(err)
        assert d.code == INVALID
        assert d.fields == ["usage_interval_deltas"]


async def test_bad_stream_fails_before_any_event(
    inference: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    call = inference.GenerateStream(
        pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="", max_tokens=-1)), timeout=10
    )
    events = []
    with pytest.raises(grpc.aio.AioRpcError):
        async for e in call:
            events.append(e)
    assert events == []  # no `started` for a request that was never valid
    assert await call.code() == INVALID


EMBED_CASES: list[tuple[str, dict[str, Any], grpc.StatusCode, str]] = [
    ("no-inputs", {"inputs": []}, INVALID, "inputs"),
    ("empty-input", {"inputs": ["a", ""]}, INVALID, "inputs[1]"),
    ("too-many-inputs", {"inputs": ["a"] * 2049}, INVALID, "inputs"),
    ("long-job-id", {"inputs": ["a"], "job_id": "j" * 129}, INVALID, "job_id"),
    ("unknown-model", {"inputs": ["a"], "model": "no-such-embedder"}, NOT_FOUND, "model"),
    ("chat-model", {"inputs": ["a"], "model": "sim-small"}, INVALID, "model"),
]


@pytest.mark.parametrize(
    ("fields", "code", "field"), [pytest.param(f, c, n, id=i) for i, f, c, n in EMBED_CASES]
)
async def test_bad_embed_field_is_named(
    inference: inference_pb2_grpc.InferenceServiceStub,
    details: Callable[[grpc.RpcError], Any],
    fields: dict[str, Any],
    code: grpc.StatusCode,
    field: str,
) -> None:
    err = await expect_error(inference.Embed(pb.EmbedRequest(**fields), timeout=10))
    d = details(err)
    assert d.code == code, f"{d.code}: {d.message}"
    assert d.error_info is not None
    assert field in d.fields, f"BadRequest names {d.fields}, expected {field!r}"


async def test_good_requests_still_work(inference: inference_pb2_grpc.InferenceServiceStub) -> None:
    """The validation above rejects only what is wrong: edge values that are allowed pass."""
    r = await call_generate(
        inference,
        messages=[
            pb.ChatMessage(role=pb.ROLE_SYSTEM, content="be brief"),
            pb.ChatMessage(role=USER, content="hi"),
        ],
        model="sim-large",
        max_tokens=3,
        temperature=2.0,
        top_p=1.0,
        stop=["zzz"] * 4,
        job_id="j" * 128,
        routing_policy=pb.ROUTING_POLICY_COST,
        fallback_models=["sim-small"] * 8,
        labels={f"k{i}": "v" for i in range(32)},
    )
    assert r.model == "sim-large"
    assert r.usage.output_tokens == 3
    assert r.finish_reason == pb.FINISH_REASON_LENGTH
    e = await inference.Embed(pb.EmbedRequest(inputs=["a"] * 3), timeout=10)
    assert len(e.embeddings) == 3


# --- the sweep: many bad requests, none of which may come back INTERNAL or UNKNOWN ---------


@pytest_asyncio.fixture
async def deny_server() -> AsyncIterator[RunningServer]:
    settings = settings_for({"routing": {"denied_models": ["sim-large"]}})
    async with running_server(settings) as rs:
        yield rs


def _sweep_requests() -> list[tuple[str, str, Any]]:
    """(id, rpc, request) for a broad set of wrong or odd requests."""
    out: list[tuple[str, str, Any]] = []
    generate_variants: list[tuple[str, dict[str, Any]]] = [
        ("empty", {}),
        ("whitespace-prompt", {"prompt": " "}),
        ("nul-prompt", {"prompt": "\x00"}),
        ("unicode-prompt", {"prompt": "héllo \U0001f600 中文"}),
        ("huge-prompt", {"prompt": "word " * 20000}),
        ("min-int-max-tokens", {"prompt": "hi", "max_tokens": -(2**31)}),
        ("max-int-max-tokens", {"prompt": "hi", "max_tokens": 2**31 - 1}),
        ("neg-inf-temperature", {"prompt": "hi", "temperature": -math.inf}),
        ("nan-top-p", {"prompt": "hi", "top_p": math.nan}),
        ("negative-top-p", {"prompt": "hi", "top_p": -1.0}),
        ("huge-seed", {"prompt": "hi", "seed": 2**63 - 1}),
        ("negative-seed", {"prompt": "hi", "seed": -(2**63)}),
        ("model-whitespace", {"prompt": "hi", "model": " "}),
        ("model-unicode", {"prompt": "hi", "model": "模型"}),
        ("denied-model", {"prompt": "hi", "model": "sim-large"}),
        ("denied-fallback", {"prompt": "hi", "fallback_models": ["sim-large"]}),
        ("embed-fallback", {"prompt": "hi", "fallback_models": ["sim-embed"]}),
        ("negative-policy", {"prompt": "hi", "routing_policy": -1}),
        ("many-messages", {"messages": [pb.ChatMessage(role=USER, content="x")] * 1001}),
        ("role-negative", {"messages": [pb.ChatMessage(role=-3, content="x")]}),
        ("only-assistant", {"messages": [pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="x")]}),
        ("stop-unicode", {"prompt": "hi", "stop": ["\U0001f600"]}),
        ("job-id-unicode", {"prompt": "hi", "job_id": "é" * 100}),
        ("label-huge", {"prompt": "hi", "labels": {"k": "v" * 100_000}}),
        ("max-tokens-one", {"prompt": "hi", "max_tokens": 1}),
    ]
    for name, fields in generate_variants:
        out.append((f"Generate-{name}", "Generate", pb.GenerateRequest(**fields)))
        out.append(
            (
                f"GenerateStream-{name}",
                "GenerateStream",
                pb.GenerateStreamRequest(request=pb.GenerateRequest(**fields)),
            )
        )
    out.append(
        (
            "GenerateStream-interval-min",
            "GenerateStream",
            pb.GenerateStreamRequest(
                request=pb.GenerateRequest(prompt="hi"), usage_interval_deltas=-(2**31)
            ),
        )
    )
    embed_variants: list[tuple[str, dict[str, Any]]] = [
        ("empty", {}),
        ("nul-input", {"inputs": ["\x00"]}),
        ("whitespace-input", {"inputs": [" "]}),
        ("huge-input", {"inputs": ["word " * 20000]}),
        ("model-whitespace", {"inputs": ["a"], "model": " "}),
        ("denied-model", {"inputs": ["a"], "model": "sim-large"}),
        ("max-inputs", {"inputs": ["a"] * 2048}),
    ]
    for name, fields in embed_variants:
        out.append((f"Embed-{name}", "Embed", pb.EmbedRequest(**fields)))
    return out


SWEEP = _sweep_requests()
ALLOWED = {
    grpc.StatusCode.OK,
    INVALID,
    NOT_FOUND,
    DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


async def _outcome(
    stub: inference_pb2_grpc.InferenceServiceStub, rpc: str, request: Any
) -> tuple[grpc.StatusCode, grpc.aio.AioRpcError | None]:
    try:
        if rpc == "GenerateStream":
            async for _ in stub.GenerateStream(request, timeout=20):
                pass
        else:
            await getattr(stub, rpc)(request, timeout=20)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc
    return grpc.StatusCode.OK, None


async def test_no_bad_request_gives_internal(
    deny_server: RunningServer, details: Callable[[grpc.RpcError], Any]
) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(deny_server.channel)
    wrong: list[str] = []
    for name, rpc, request in SWEEP:
        code, err = await _outcome(stub, rpc, request)
        if code in BUGS or code not in ALLOWED:
            wrong.append(f"{name}: {code.name} {err.details() if err else ''}")
            continue
        if err is not None:
            d = details(err)
            if d.error_info is None or d.error_info.domain != "aurea.v1":
                wrong.append(f"{name}: {code.name} without an aurea.v1 ErrorInfo")
            if code in (INVALID, NOT_FOUND) and not d.fields:
                wrong.append(f"{name}: {code.name} without a BadRequest field")
    assert not wrong, "\n".join(wrong)
    health_code, _ = await _outcome(stub, "Generate", pb.GenerateRequest(prompt="still up?"))
    assert health_code == grpc.StatusCode.OK


LONG_NAME = "m" * 10_000


@pytest.mark.parametrize(
    ("rpc", "request_"),
    [
        pytest.param("Generate", pb.GenerateRequest(prompt="hi", model=LONG_NAME), id="Generate"),
        pytest.param(
            "GenerateStream",
            pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="hi", model=LONG_NAME)),
            id="GenerateStream",
        ),
        pytest.param("Embed", pb.EmbedRequest(inputs=["a"], model=LONG_NAME), id="Embed"),
        pytest.param(
            "Generate-fallback",
            pb.GenerateRequest(prompt="hi", fallback_models=[LONG_NAME]),
            id="Generate-fallback",
        ),
    ],
)
async def test_very_long_model_name_gives_a_decodable_error(
    server: RunningServer, details: Callable[[grpc.RpcError], Any], rpc: str, request_: Any
) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(server.channel)
    code, err = await _outcome(stub, rpc.split("-")[0], request_)
    assert err is not None
    d = details(err)
    assert code in (INVALID, NOT_FOUND), f"{code.name}: {d.message[:200]}"
    assert d.error_info is not None
    assert d.fields and d.fields[0] in ("model", "fallback_models[0]")


@pytest.mark.parametrize(
    "method",
    [
        "/aurea.v1.InferenceService/Generate",
        "/aurea.v1.InferenceService/GenerateStream",
        "/aurea.v1.InferenceService/Embed",
    ],
)
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x0a\x02\xff\xfe", id="invalid-utf8-string"),
        pytest.param(b"\xff\xff\xff", id="garbage"),
        pytest.param(b"\x0a\x10hi", id="truncated"),
    ],
)
async def test_undecodable_request_is_invalid_argument(
    server: RunningServer, method: str, payload: bytes
) -> None:
    """Bytes that are not a valid request message are the client's fault, not a server bug."""
    if method.endswith("Stream"):
        call = server.channel.unary_stream(method)(payload, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
    else:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await server.channel.unary_unary(method)(payload, timeout=10)
    assert info.value.code() not in BUGS, f"{info.value.code()}: {info.value.details()}"
    assert info.value.code() == INVALID


@pytest.mark.parametrize(
    ("method", "request_", "code", "field"),
    [
        pytest.param(
            "ListProviders",
            admin_pb2.ListProvidersRequest(page_size=-1),
            INVALID,
            "page_size",
            id="negative-page-size",
        ),
        pytest.param(
            "ListProviders",
            admin_pb2.ListProvidersRequest(page_size=1001),
            INVALID,
            "page_size",
            id="huge-page-size",
        ),
        pytest.param(
            "ListProviders",
            admin_pb2.ListProvidersRequest(page_token="not-a-token"),
            INVALID,
            "page_token",
            id="bogus-page-token",
        ),
        pytest.param(
            "GetProviderStats",
            admin_pb2.GetProviderStatsRequest(provider="no-such-provider"),
            NOT_FOUND,
            "",
            id="unknown-provider",
        ),
    ],
)
async def test_bad_admin_field_is_named(
    server: RunningServer,
    details: Callable[[grpc.RpcError], Any],
    method: str,
    request_: Any,
    code: grpc.StatusCode,
    field: str,
) -> None:
    stub = admin_pb2_grpc.AdminServiceStub(server.channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(stub, method)(request_, timeout=10)
    d = details(info.value)
    assert d.code == code, f"{d.code}: {d.message}"
    assert d.error_info is not None and d.error_info.domain == "aurea.v1"
    if field:
        assert d.fields == [field]
