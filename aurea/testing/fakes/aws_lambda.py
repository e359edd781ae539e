"""A fake AWS Lambda Invoke API (``POST /2015-03-31/functions/{name}/invocations``) that checks
Signature V4 like AWS does and answers in Lambda's wire format: the function's JSON output with
200, ``X-Amz-Function-Error`` + ``{"errorMessage", "errorType"}`` when the function fails, and
``x-amzn-ErrorType`` + ``{"Type", "message"}`` for API errors (403 signature / token, 404 unknown
function, 429 ``TooManyRequestsException`` with Retry-After, 500 ``ServiceException``).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from aurea.providers.aws_lambda import sign_v4
from aurea.testing.fakes._core import FakeServer, Fault, FaultKind, count_words, json_response

__all__ = ["FakeLambda", "FunctionHandler"]

FunctionHandler = Callable[[Any], Any]  # event -> output (raise to simulate a function error)

_CREDENTIAL = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<sig>[0-9a-f]+)"
)


class FunctionFailed(Exception):
    """Raise from a handler to choose the errorType / X-Amz-Function-Error kind."""

    def __init__(self, message: str, error_type: str = "Exception", kind: str = "Unhandled"):
        super().__init__(message)
        self.error_type = error_type
        self.kind = kind


class FakeLambda(FakeServer):
    """Lambda Invoke; ``base_url`` is the origin (use it as ``options.endpoint``).

    ``functions`` maps names to handlers; ``echo-llm`` (the default) answers the chat payload
    ``{"model", "messages", "max_tokens"}`` with ``{"text", "usage": {"input_tokens",
    "output_tokens"}, "finish_reason"}``. Credentials accepted: ``access_key`` / ``secret_key``.
    """

    def __init__(
        self,
        *,
        access_key: str = "AKIDFAKEEXAMPLE",
        secret_key: str = "fake/secret/key/EXAMPLEKEY",
        region: str = "us-east-1",
        **kwargs: Any,
    ) -> None:
        super().__init__(api_key=secret_key, **kwargs)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.functions: dict[str, FunctionHandler] = {"echo-llm": self._echo_llm}
        self.last_session_token: str | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/2015-03-31/functions/{function}/invocations", self._invoke)

    def _api_error(
        self, status: int, error_type: str, message: str, **headers: str
    ) -> web.Response:
        body: dict[str, Any] = {"Type": "User" if status < 500 else "Service", "message": message}
        if error_type == "TooManyRequestsException":
            body["Reason"] = "ReservedFunctionConcurrentInvocationLimitExceeded"
        return json_response(
            body,
            status=status,
            headers={
                "x-amzn-RequestId": f"fake-{self.request_count}",
                "x-amzn-ErrorType": f"{error_type}:http://internal.amazon.com/coral/com.amazon.coral.service/",
                **headers,
            },
        )

    def _check_signature(self, request: web.Request, body: bytes) -> web.Response | None:
        auth = request.headers.get("Authorization")
        if not auth:
            return self._api_error(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        match = _CREDENTIAL.fullmatch(auth)
        if match is None or match["key"] != self.access_key:
            return self._api_error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        self.last_session_token = request.headers.get("X-Amz-Security-Token")
        signed = match["signed"].split(";")
        extra = {
            name: request.headers.get(name, "")
            for name in signed
            if name not in ("host", "x-amz-date", "x-amz-security-token")
        }
        when = datetime.datetime.strptime(
            request.headers.get("X-Amz-Date", ""), "%Y%m%dT%H%M%SZ"
        ).replace(tzinfo=datetime.UTC)
        expected = sign_v4(
            method=request.method,
            url=f"http://{request.headers.get('Host', '')}{request.raw_path}",
            headers=extra,
            body=body,
            access_key=self.access_key,
            secret_key=self.secret_key,
            session_token=self.last_session_token,
            region=self.region,
            service="lambda",
            when=when,
        )
        if expected["Authorization"] != auth or match["region"] != self.region:
            return self._api_error(
                403,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method. Consult the service "
                "documentation for details.",
            )
        return None

    def _fault_response(self, request: web.Request, fault: Fault) -> web.Response | None:
        kind = fault.kind
        if kind is FaultKind.UNAUTHORIZED:
            return self._api_error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        if kind is FaultKind.RATE_LIMIT:
            return self._api_error(
                429,
                "TooManyRequestsException",
                "Rate Exceeded.",
                **{"Retry-After": fault.retry_after},
            )
        if kind is FaultKind.SERVER_ERROR:
            return self._api_error(500, "ServiceException", "An internal error occurred.")
        if kind is FaultKind.OVERLOADED:
            return self._api_error(
                502,
                "EC2ThrottledException",
                "Lambda was throttled by Amazon EC2 during initialization.",
            )
        failures = {
            FaultKind.CONTEXT_LENGTH: ("prompt exceeds the model's context length", "ValueError"),
            FaultKind.CONTENT_FILTER: (
                "output blocked by the content filter",
                "ContentPolicyError",
            ),
            FaultKind.STREAM_ERROR: ("CUDA error: an illegal memory access", "RuntimeError"),
        }
        if kind in failures:
            message, error_type = failures[kind]
            return self._function_error(FunctionFailed(message, error_type))
        return None

    def _function_error(self, exc: Exception) -> web.Response:
        error_type = exc.error_type if isinstance(exc, FunctionFailed) else type(exc).__name__
        kind = exc.kind if isinstance(exc, FunctionFailed) else "Unhandled"
        return json_response(
            {
                "errorMessage": str(exc),
                "errorType": error_type,
                "requestId": "fake",
                "stackTrace": [],
            },
            headers={"X-Amz-Function-Error": kind, "X-Amz-Executed-Version": "$LATEST"},
        )

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        denied = self._check_signature(request, body)
        if denied is not None:
            return denied
        # A name, a partial ARN or a full ARN, optionally with ":qualifier".
        name = request.match_info["function"].split(":function:", 1)[-1].split(":", 1)[0]
        handler = self.functions.get(name)
        if handler is None:
            return self._api_error(
                404,
                "ResourceNotFoundException",
                f"Function not found: arn:aws:lambda:{self.region}:123456789012:function:{name}",
            )
        fault = await self.slow_start(request, self.take_fault())
        if fault is not None:
            answer = self._fault_response(request, fault)
            if answer is not None:
                return answer
        try:
            output = handler(await request.json() if body else None)
        except Exception as exc:  # the function failed: Lambda reports it with a 200
            return self._function_error(exc)
        reply = json_response(output, headers={"X-Amz-Executed-Version": "$LATEST"})
        assert isinstance(reply.body, bytes)
        return await self.unary_fault(request, fault, reply.body) or reply

    def _echo_llm(self, event: Any) -> Any:
        messages = event.get("messages", []) if isinstance(event, dict) else []
        prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        generation = self.generate(
            prompt, event.get("max_tokens") if isinstance(event, dict) else None
        )
        return {
            "text": "".join(generation.tokens),
            "usage": {
                "input_tokens": count_words(str(m.get("content", "")) for m in messages),
                "output_tokens": len(generation.tokens),
            },
            "finish_reason": self.finish_override or ("length" if generation.truncated else "stop"),
        }
