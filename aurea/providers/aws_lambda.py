"""AWS Lambda as a provider: the Invoke API (``RequestResponse``) signed with Signature V4.

``run(payload)`` invokes the function and returns its JSON output. As a chat ``Provider`` the
function receives ``{"model", "messages", "max_tokens", ...}`` and its output is read with JSON
pointers. Options: ``function`` (name or ARN, required), ``region`` (``us-east-1``), ``endpoint``
(default ``base_url`` or ``https://lambda.{region}.amazonaws.com``), ``qualifier``,
``access_key_env`` / ``secret_key_env`` / ``session_token_env`` (the *names* of the credential
variables; AWS's usual ones by default), ``text_pointer`` (``/text``), ``input_tokens_pointer``
(``/usage/input_tokens``), ``output_tokens_pointer`` (``/usage/output_tokens``),
``finish_reason_pointer``, ``models``.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from yarl import URL

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    ProviderAuthError,
    ProviderError,
    ProviderServerError,
    ProviderTimeout,
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
    parse_json,
    retry_after_from_headers,
)
from aurea.providers.http_generic import (
    MISSING,
    check_pointer,
    finish_from,
    read_count,
    resolve_pointer,
    text_of,
    usage_from_counts,
)

__all__ = ["OPTIONS", "LambdaProvider", "sign_v4", "signing_key"]

OPTIONS = frozenset(
    {
        "function",
        "region",
        "endpoint",
        "qualifier",
        "access_key_env",
        "secret_key_env",
        "session_token_env",
        "text_pointer",
        "input_tokens_pointer",
        "output_tokens_pointer",
        "finish_reason_pointer",
        "models",
    }
)

_ALGORITHM = "AWS4-HMAC-SHA256"
_UNRESERVED = "-_.~"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")."""
    key = _hmac(f"AWS4{secret_key}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def _canonical_uri(path: str, service: str) -> str:
    if not path:
        return "/"
    if service == "s3":  # S3 alone signs the path as sent, every other service double-encodes
        return path
    return "/".join(quote(segment, safe=_UNRESERVED) for segment in path.split("/"))


def _canonical_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    encoded = sorted((quote(k, safe=_UNRESERVED), quote(v, safe=_UNRESERVED)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def sign_v4(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    when: datetime.datetime,
    session_token: str | None = None,
) -> dict[str, str]:
    """The headers to send: ``headers`` plus Host, X-Amz-Date, X-Amz-Security-Token (with a
    session token) and Authorization, per AWS Signature Version 4. Every header given is signed;
    ``url`` must be as it goes on the wire (already percent-encoded)."""
    parts = urlsplit(url)
    amz_date = when.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    out = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "host")}
    out["Host"] = parts.netloc
    out["X-Amz-Date"] = amz_date
    if session_token:
        out["X-Amz-Security-Token"] = session_token
    canonical: dict[str, str] = {}
    for name, value in out.items():
        canonical[name.lower()] = " ".join(str(value).split())
    signed = ";".join(sorted(canonical))
    canonical_request = "\n".join(
        [
            method.upper(),
            _canonical_uri(parts.path, service),
            _canonical_query(parts.query),
            "".join(f"{name}:{canonical[name]}\n" for name in sorted(canonical)),
            signed,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [_ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    signature = hmac.new(
        signing_key(secret_key, date, region, service), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    out["Authorization"] = (
        f"{_ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}"
    )
    return out


@adapter_boundary
class LambdaProvider:
    """Invokes one Lambda function; a compute provider (``run``) and a chat ``Provider``."""

    def __init__(self, spec: ProviderSpec, *, clock: Callable[[], float] = time.time) -> None:
        check_options(spec, OPTIONS)
        self.name = spec.name
        options = spec.options
        self._options = options
        self._clock = clock
        self._function = str(options.get("function") or "")
        if not self._function:
            raise ValueError(f"provider {spec.name!r}: kind 'lambda' needs options.function")
        self._region = str(options.get("region") or "us-east-1")
        default_endpoint = f"https://lambda.{self._region}.amazonaws.com"
        endpoint = str(options.get("endpoint") or spec.base_url or default_endpoint)
        self._http = HttpClient(spec, default_base_url=endpoint, parse_error=self._error)
        self._endpoint = endpoint.rstrip("/")
        self._credential_envs = (
            str(options.get("access_key_env", "AWS_ACCESS_KEY_ID")),
            str(options.get("secret_key_env", "AWS_SECRET_ACCESS_KEY")),
            str(options.get("session_token_env", "AWS_SESSION_TOKEN")),
        )
        # Read once, like an API key; only their absence at call time is an error.
        self._credentials = tuple(os.environ.get(name) or None for name in self._credential_envs)
        self._http.add_secret(self._credentials[1])
        self._http.add_secret(self._credentials[2])
        self._pointers = {
            name: check_pointer(str(options.get(name, default)))
            for name, default in (
                ("text_pointer", "/text"),
                ("input_tokens_pointer", "/usage/input_tokens"),
                ("output_tokens_pointer", "/usage/output_tokens"),
                ("finish_reason_pointer", "/finish_reason"),
            )
        }

    def _error(self, status: int, body: str, headers: Mapping[str, str]) -> ProviderError:
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = {}
        parsed = parsed if isinstance(parsed, Mapping) else {}
        error_type = str(headers.get("x-amzn-ErrorType", "")).split(":")[0]
        message = str(parsed.get("message") or parsed.get("Message") or body.strip()[:300])
        detail = f"{error_type}: {message}" if error_type else message
        return error_for_status(
            self.name, status, detail, retry_after_s=retry_after_from_headers(headers)
        )

    def _function_error(self, kind: str, output: Any) -> ProviderError:
        """A 200 with ``X-Amz-Function-Error``: the function itself failed."""
        body = output if isinstance(output, Mapping) else {"errorMessage": str(output)}
        error_type = str(body.get("errorType") or "")
        message = str(body.get("errorMessage") or "")
        text = f"function error ({kind}): {error_type}: {message}"
        cls: type[ProviderError] = ProviderServerError
        if "Task timed out" in message or error_type == "Sandbox.Timedout":
            cls = ProviderTimeout
        elif is_context_length(message):
            cls = ContextLengthExceeded
        elif is_content_filter(message):
            cls = ContentFiltered
        elif kind == "Handled":
            cls = UpstreamRejected
        return self._http.error(cls, text, status=200)

    def _url(self) -> str:
        function = quote(self._function, safe="")
        url = f"{self._endpoint}/2015-03-31/functions/{function}/invocations"
        qualifier = self._options.get("qualifier")
        return f"{url}?Qualifier={quote(str(qualifier), safe='')}" if qualifier else url

    async def run(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Invoke the function with ``payload``; its JSON output (a non-object is wrapped as
        ``{"output": value}``)."""
        access, secret, token = self._credentials
        for value, env in zip((access, secret), self._credential_envs, strict=False):
            if not value:
                raise self._http.error(ProviderAuthError, f"environment variable {env} is not set")
        assert access is not None and secret is not None
        body = json.dumps(payload).encode()
        url = self._url()
        headers = sign_v4(
            method="POST",
            url=url,
            headers={
                "Content-Type": "application/json",
                "X-Amz-Invocation-Type": "RequestResponse",
            },
            body=body,
            access_key=access,
            secret_key=secret,
            session_token=token,
            region=self._region,
            service="lambda",
            when=datetime.datetime.fromtimestamp(self._clock(), datetime.UTC),
        )
        async with self._http.request(
            "POST", URL(url, encoded=True), data=body, headers=headers
        ) as response:
            raw = await response.read()
            function_error = response.headers.get("X-Amz-Function-Error")
        output = parse_json(
            raw or b"null",
            provider=self.name,
            what="the function output",
            broken=ProviderServerError,
        )
        if function_error:
            raise self._function_error(function_error, output)
        return dict(output) if isinstance(output, Mapping) else {"output": output}

    async def complete(self, request: ProviderRequest) -> Completion:
        text_only(self.name, request)
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": str(m.role), "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
        }
        for name in ("temperature", "top_p", "seed"):
            if getattr(request, name) is not None:
                payload[name] = getattr(request, name)
        if request.stop:
            payload["stop"] = list(request.stop)
        output = await self.run(payload)
        found = resolve_pointer(output, self._pointers["text_pointer"])
        if found is MISSING:
            raise self._http.error(
                ProviderServerError,
                f"the output has nothing at text_pointer {self._pointers['text_pointer']!r}",
            )
        text = text_of(found, f"the output's text at {self._pointers['text_pointer']!r}")
        counts = (
            read_count(output, self._pointers["input_tokens_pointer"]),
            read_count(output, self._pointers["output_tokens_pointer"]),
        )
        finish = finish_from(output, self._pointers["finish_reason_pointer"])
        return Completion(
            text=text,
            finish=finish or Finish(FinishReason.STOP, ""),
            usage=await usage_from_counts(counts, request, text),
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        """RequestResponse invocations are unary: the whole text comes as one delta."""
        completion = await self.complete(request)
        if completion.text:
            yield TextDelta(completion.text)
        assert completion.usage is not None
        yield UsageReport(completion.usage)
        yield completion.finish

    async def embed(self, request: EmbedRequest) -> Embeddings:
        raise UpstreamRejected(
            f"{self.name}: the lambda provider has no embeddings API", provider=self.name
        )

    async def list_models(self) -> list[str]:
        return [str(m) for m in self._options.get("models") or []]

    async def aclose(self) -> None:
        await self._http.aclose()
