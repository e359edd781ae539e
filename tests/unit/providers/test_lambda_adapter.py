"""SigV4 against AWS's published vectors, and the Lambda adapter against the fake Invoke API."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
from provider_helpers import chat, collect, make_spec

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    UpstreamRejected,
)
from aurea.providers._base import EmbedRequest, FinishReason, Provider, TextDelta, Usage
from aurea.providers.aws_lambda import LambdaProvider, sign_v4, signing_key
from aurea.testing.fakes import Fault, FaultKind
from aurea.testing.fakes.aws_lambda import FakeLambda, FunctionFailed

# The AWS Signature Version 4 test suite's credentials and instant.
SUITE_KEY = "AKIDEXAMPLE"
SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_TIME = datetime.datetime(2015, 8, 30, 12, 36, tzinfo=datetime.UTC)


def suite_sign(
    method: str, url: str, headers: dict[str, str], body: bytes = b"", service: str = "service"
) -> str:
    signed = sign_v4(
        method=method,
        url=url,
        headers=headers,
        body=body,
        access_key=SUITE_KEY,
        secret_key=SUITE_SECRET,
        region="us-east-1",
        service=service,
        when=SUITE_TIME,
    )
    assert signed["X-Amz-Date"] == "20150830T123600Z"
    return signed["Authorization"]


@pytest.mark.parametrize(
    ("name", "method", "url", "headers", "body", "signed", "signature"),
    [
        (
            "get-vanilla",
            "GET",
            "https://example.amazonaws.com/",
            {},
            b"",
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "post-vanilla",
            "POST",
            "https://example.amazonaws.com/",
            {},
            b"",
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        (
            "get-vanilla-query-order-key-case",
            "GET",
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            {},
            b"",
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        (
            "post-header-key-sort",
            "POST",
            "https://example.amazonaws.com/",
            {"My-Header1": "value1"},
            b"",
            "host;my-header1;x-amz-date",
            "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
        ),
        (
            "post-x-www-form-urlencoded",
            "POST",
            "https://example.amazonaws.com/",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Param1=value1",
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        ),
    ],
)
def test_sigv4_test_suite_vectors(
    name: str,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    signed: str,
    signature: str,
) -> None:
    assert suite_sign(method, url, headers, body) == (
        f"AWS4-HMAC-SHA256 Credential={SUITE_KEY}/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders={signed}, Signature={signature}"
    ), name


def test_sigv4_documented_iam_example() -> None:
    # The worked example of AWS's "Create a signed AWS API request" guide (IAM ListUsers).
    assert signing_key(SUITE_SECRET, "20150830", "us-east-1", "iam").hex() == (
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    )
    authorization = suite_sign(
        "GET",
        "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        service="iam",
    )
    assert authorization.endswith(
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    )


def test_sigv4_session_token_is_sent_and_signed() -> None:
    signed = sign_v4(
        method="GET",
        url="https://example.amazonaws.com/",
        headers={},
        body=b"",
        access_key=SUITE_KEY,
        secret_key=SUITE_SECRET,
        session_token="TOKEN123",
        region="us-east-1",
        service="service",
        when=SUITE_TIME,
    )
    assert signed["X-Amz-Security-Token"] == "TOKEN123"
    assert "SignedHeaders=host;x-amz-date;x-amz-security-token," in signed["Authorization"]


# -- the adapter against the fake ----------------------------------------------------------------
AK_ENV, SK_ENV, TK_ENV = "AUREA_TEST_AWS_AK", "AUREA_TEST_AWS_SK", "AUREA_TEST_AWS_TOKEN"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLambda]:
    server = FakeLambda(region="eu-west-1")
    monkeypatch.setenv(AK_ENV, server.access_key)
    monkeypatch.setenv(SK_ENV, server.secret_key)
    monkeypatch.setenv(TK_ENV, "session-token-xyz")
    async with server:
        yield server


def lambda_spec(fake: FakeLambda, **extra: Any) -> Any:
    options: dict[str, Any] = {
        "function": "echo-llm",
        "region": "eu-west-1",
        "endpoint": fake.base_url,
        "access_key_env": AK_ENV,
        "secret_key_env": SK_ENV,
        "session_token_env": TK_ENV,
    }
    return make_spec("lambda", "", key_env="", **{**options, **extra})


@pytest.fixture
async def provider(fake: FakeLambda) -> AsyncIterator[LambdaProvider]:
    adapter = LambdaProvider(lambda_spec(fake))
    yield adapter
    await adapter.aclose()


async def test_chat_over_invoke(fake: FakeLambda, provider: LambdaProvider) -> None:
    assert isinstance(provider, Provider)
    completion = await provider.complete(chat("four score and seven", max_tokens=100))
    assert completion.text == "Echo: four score and seven"
    assert completion.usage == Usage(input_tokens=4, output_tokens=5)
    assert completion.finish.reason is FinishReason.STOP
    sent = fake.last_request
    assert sent is not None
    assert sent.path == "/2015-03-31/functions/echo-llm/invocations"
    assert sent.headers["X-Amz-Invocation-Type"] == "RequestResponse"
    assert "/eu-west-1/lambda/aws4_request" in sent.headers["Authorization"]
    assert fake.last_session_token == "session-token-xyz"
    assert sent.body == {
        "model": "test-model",
        "messages": [{"role": "user", "content": "four score and seven"}],
        "max_tokens": 100,
    }


async def test_stream_is_one_delta(provider: LambdaProvider) -> None:
    got = await collect(provider.stream(chat("a b c", max_tokens=2)))
    assert [e for e in got.events if isinstance(e, TextDelta)] == [TextDelta("Echo: a")]
    assert got.finish.reason is FinishReason.LENGTH


async def test_run_returns_the_function_output_and_arns_are_encoded(fake: FakeLambda) -> None:
    fake.functions["adder"] = lambda event: {"sum": event["a"] + event["b"]}
    fake.functions["scalar"] = lambda event: 42
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:adder"
    adapter = LambdaProvider(lambda_spec(fake, function=arn, qualifier="prod"))
    scalar = LambdaProvider(lambda_spec(fake, function="scalar"))
    try:
        assert await adapter.run({"a": 2, "b": 3}) == {"sum": 5}
        assert await scalar.run({}) == {"output": 42}
    finally:
        await adapter.aclose()
        await scalar.aclose()
    # The ARN's colons travel percent-encoded and the (double-encoded) signature still matches.
    sent = fake.requests[0]
    assert sent.path == f"/2015-03-31/functions/{arn}/invocations"
    assert sent.query == {"Qualifier": "prod"}


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (FaultKind.RATE_LIMIT, ProviderRateLimited),
        (FaultKind.SERVER_ERROR, ProviderServerError),
        (FaultKind.OVERLOADED, ProviderServerError),
        (FaultKind.UNAUTHORIZED, ProviderAuthError),
        (FaultKind.CONTEXT_LENGTH, ContextLengthExceeded),
        (FaultKind.CONTENT_FILTER, ContentFiltered),
        (FaultKind.STREAM_ERROR, ProviderServerError),
    ],
)
async def test_faults(
    fake: FakeLambda, provider: LambdaProvider, kind: FaultKind, error: type[ProviderError]
) -> None:
    fake.inject(Fault(kind, retry_after="9"))
    with pytest.raises(error) as caught:
        await provider.complete(chat("hi"))
    assert type(caught.value) is error
    if kind is FaultKind.RATE_LIMIT:
        assert caught.value.retry_after_s == 9.0
        assert "TooManyRequestsException" in caught.value.message


async def test_function_errors(fake: FakeLambda, provider: LambdaProvider) -> None:
    def handled(event: Any) -> Any:
        raise FunctionFailed("bad input: no messages", "ValidationError", kind="Handled")

    def timed_out(event: Any) -> Any:
        raise FunctionFailed("2024-01-01T00:00:00Z abc Task timed out after 3.00 seconds")

    fake.functions["handled"] = handled
    fake.functions["slow"] = timed_out
    for name, error in (("handled", UpstreamRejected), ("slow", ProviderTimeout)):
        adapter = LambdaProvider(lambda_spec(fake, function=name))
        try:
            with pytest.raises(error) as caught:
                await adapter.run({})
        finally:
            await adapter.aclose()
        assert type(caught.value) is error
        assert "function error" in caught.value.message


async def test_unknown_function_and_bad_signature(fake: FakeLambda) -> None:
    missing = LambdaProvider(lambda_spec(fake, function="nope"))
    try:
        with pytest.raises(UpstreamRejected, match="ResourceNotFoundException"):
            await missing.run({})
    finally:
        await missing.aclose()
    fake.secret_key = "a-different-secret"
    adapter = LambdaProvider(lambda_spec(fake))
    try:
        with pytest.raises(ProviderAuthError, match="InvalidSignatureException"):
            await adapter.run({})
    finally:
        await adapter.aclose()


async def test_missing_credentials_name_the_variable(
    fake: FakeLambda, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SK_ENV)
    adapter = LambdaProvider(lambda_spec(fake))
    try:
        with pytest.raises(ProviderAuthError, match=SK_ENV):
            await adapter.complete(chat("hi"))
    finally:
        await adapter.aclose()
    assert fake.request_count == 0


async def test_config_and_no_embeddings(fake: FakeLambda, provider: LambdaProvider) -> None:
    with pytest.raises(ValueError, match=r"options\.function"):
        LambdaProvider(make_spec("lambda", "", key_env=""))
    with pytest.raises(UpstreamRejected, match="no embeddings"):
        await provider.embed(EmbedRequest(model="m", inputs=("x",)))
    assert await provider.list_models() == []
