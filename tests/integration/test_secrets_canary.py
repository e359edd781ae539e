"""Secret canary: distinctive API keys (and AWS credentials) for every provider kind, then every
kind of call and fault through the gRPC API; the keys must appear nowhere a caller or an operator
can see: log lines (Aurea's production JSON logging, stdlib logging, anything on fd 1/2), status
messages, decoded ``grpc-status-details-bin``, initial and trailing metadata, response messages
and stream events, and the AdminService views. Each key is also searched for in its base64
(any alignment), URL-encoded, JSON-escaped and hex forms.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import secrets as rnd
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import grpc
import pytest
import pytest_asyncio
import structlog
from aiohttp import web
from google.protobuf.message import Message
from providers_conftest import (
    BY_PROVIDER,
    CASES,
    Case,
    Failure,
    Rig,
    Secrets,
    StreamRun,
    admin,
    failure_of,
    inference,
    make_fakes,
    open_rig,
    run_stream,
    wait_until,
)

from aurea.telemetry.logging import configure
from aurea.testing import RunningServer
from aurea.testing.fakes import (
    FakeAnthropic,
    FakeGemini,
    FakeHTTPModel,
    FakeOpenAI,
    FakeServer,
    Fault,
    FaultKind,
)
from aurea.v1 import admin_pb2, admin_pb2_grpc, task_pb2, task_pb2_grpc
from aurea.v1 import inference_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PROMPT = "tell me a short story about canaries"
FAULTS = [
    FaultKind.UNAUTHORIZED,
    FaultKind.RATE_LIMIT,
    FaultKind.SERVER_ERROR,
    FaultKind.OVERLOADED,
    FaultKind.CONTEXT_LENGTH,
    FaultKind.CONTENT_FILTER,
    FaultKind.CUT_STREAM,
    FaultKind.STREAM_ERROR,
    FaultKind.MALFORMED,
    FaultKind.EARLY_EOF,
]


def canary_secrets() -> Secrets:
    def key() -> str:
        return f"sk-canary-{rnd.token_hex(16)}"

    return Secrets(
        keys={c.provider: key() for c in CASES if c.key_env},
        aws_access_key=f"AKIDCANARY{rnd.token_hex(4).upper()}",
        # '/' and '+' make the URL-encoded forms differ from the raw secret.
        aws_secret_key=f"sk-canary/aws+secret{rnd.token_hex(12)}",
        aws_session_token=f"sk-canary-aws-token-{rnd.token_hex(16)}",
    )


# -- upstreams that quote the key back (misbehaving OpenAI-compatible servers and proxies) --------
class Echoing:
    """A fake that, while ``echo_key`` is set, quotes the credential it received in its error
    answers: ``where = "http"`` in non-2xx bodies, ``"stream"`` in in-stream error events."""

    echo_key: str = ""  # "", "http" or "stream"
    key_header: str = ""

    def quoted(self, request: web.Request) -> str:
        return f"(request credential {request.headers.get(self.key_header, '')})"


class EchoingOpenAI(Echoing, FakeOpenAI):
    key_header = "Authorization"

    def _fault_response(self, fault: Fault, model: str) -> web.Response | None:
        answer = super()._fault_response(fault, model)
        if answer is None or self.echo_key != "http":
            return answer
        assert isinstance(answer.body, bytes) and self._current is not None
        body = json.loads(answer.body)
        body["error"]["message"] += " " + self.quoted(self._current)
        return web.json_response(body, status=answer.status, headers={"retry-after": "1"})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self._current: web.Request | None = request
        return await super()._chat(request)

    async def _stream_fault(
        self, request: web.Request, response: web.StreamResponse, fault: Fault
    ) -> None:
        if fault.kind is not FaultKind.STREAM_ERROR or self.echo_key != "stream":
            return await super()._stream_fault(request, response, fault)
        error = {
            "error": {
                "message": f"worker failed {self.quoted(request)}",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        await self.send(request, response, f"data: {json.dumps(error)}\n\n".encode())


class EchoingAnthropic(Echoing, FakeAnthropic):
    key_header = "x-api-key"

    def _reply_error(self, status: int, type_: str, message: str, **headers: str) -> web.Response:
        if self.echo_key == "http" and self._current is not None:
            message = f"{message} {self.quoted(self._current)}"
        return super()._reply_error(status, type_, message, **headers)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        self._current: web.Request | None = request
        return await super()._messages(request)

    async def _stream(
        self, request: web.Request, body: dict[str, Any], generation: Any, fault: Fault | None
    ) -> web.StreamResponse:
        if fault is None or fault.kind is not FaultKind.STREAM_ERROR or self.echo_key != "stream":
            return await super()._stream(request, body, generation, fault)
        response = await self.open_sse(request)

        async def emit() -> None:
            error = {
                "type": "error",
                "error": {"type": "api_error", "message": self.quoted(request)},
            }
            await self.send(
                request, response, f"event: error\ndata: {json.dumps(error)}\n\n".encode()
            )

        return await self.run_stream(request, response, emit)


class EchoingGemini(Echoing, FakeGemini):
    key_header = "x-goog-api-key"

    def _reply(self, payload: Any, status: int = 200) -> web.Response:
        if status >= 400 and self.echo_key == "http" and self._current is not None:
            payload = json.loads(json.dumps(payload))
            payload["error"]["message"] += " " + self.quoted(self._current)
        return super()._reply(payload, status)

    async def _model_call(self, request: web.Request) -> web.StreamResponse:
        self._current: web.Request | None = request
        return await super()._model_call(request)

    async def _fail(self, request: web.Request, response: web.StreamResponse, fault: Fault) -> None:
        if fault.kind is not FaultKind.STREAM_ERROR or self.echo_key != "stream":
            return await super()._fail(request, response, fault)
        error = {"error": {"code": 500, "status": "INTERNAL", "message": self.quoted(request)}}
        await self.send(request, response, f"data: {json.dumps(error)}\r\n\r\n".encode())


def canary_fakes(s: Secrets) -> dict[str, FakeServer]:
    fakes = make_fakes(s)
    fakes["openai"] = EchoingOpenAI(api_key=s.keys["openai"])
    fakes["anthropic"] = EchoingAnthropic(api_key=s.keys["anthropic"])
    fakes["gemini"] = EchoingGemini(api_key=s.keys["gemini"])
    http = fakes["http"]
    assert isinstance(http, FakeHTTPModel)
    http.echo_auth_in_errors = True  # its error messages always quote the X-Api-Key it got
    for fake in fakes.values():
        fake._current = None  # type: ignore[attr-defined]
    return fakes


# -- the detector ---------------------------------------------------------------------------------
def forms(secret: str) -> set[str]:
    """Every form of ``secret`` a leak could take: as is, URL-encoded, JSON-escaped, hex, and
    base64 / base64url at each of the three byte alignments inside a larger blob (the 4 edge
    characters of each encoding depend on the neighbours and are left out)."""
    raw = secret.encode()
    out = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1], raw.hex()}
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * pad + raw + b"\0\0").decode().rstrip("=")
            out.add(text[4:-4])
    return out


@dataclass
class Haystack:
    """Everything a caller or operator could see; searched by ``check()`` (at the end of each
    test, or earlier when the test calls it)."""

    secrets: list[str]
    texts: list[str] = field(default_factory=list)
    calls: int = 0
    log_events: list[dict[str, Any]] = field(default_factory=list)  # live, as logged
    gather: Callable[[], None] | None = None  # adds the captured logs to ``texts``, once
    checked: bool = False

    def add(self, *items: Any) -> None:
        for item in items:
            if isinstance(item, Message):
                self.texts.append(str(item))
                self.texts.append(item.SerializeToString().decode("latin-1"))
            elif isinstance(item, bytes):
                self.texts.append(item.decode("latin-1"))
            elif isinstance(item, Failure):
                self.texts += item.texts()
            elif isinstance(item, list | tuple):
                self.add(*item)
            else:
                self.texts.append(str(item))

    def add_run(self, run: StreamRun) -> None:
        self.calls += 1
        self.add(run.events, run.initial, run.trailing)
        if run.failure is not None:
            self.add(run.failure)

    async def check(self) -> None:
        """Wait (bounded) for every call's ``rpc_finished`` log line (the server writes it just
        after the client has its status), pull in all captured output, assert nothing leaked."""
        self.checked = True
        for _ in range(500):
            if self.finished() >= self.calls:
                break
            await asyncio.sleep(0.01)
        assert self.finished() >= self.calls > 0, (self.finished(), self.calls)  # capture works
        assert not [e for e in self.log_events if e.get("event") == "rpc_bug"], "an INTERNAL"
        if self.gather is not None:
            self.gather()
        leaks = self.leaks()
        assert not leaks, "a secret leaked:\n" + "\n".join(leaks[:10])

    def finished(self) -> int:
        return sum(e.get("event") == "rpc_finished" for e in self.log_events)

    def leaks(self) -> list[str]:
        found = []
        for secret in self.secrets:
            needles = forms(secret)
            for text in self.texts:
                for needle in needles:
                    if needle in text:
                        at = text.index(needle)
                        found.append(f"{needle!r} in ...{text[max(0, at - 120) : at + 60]!r}...")
        return found


@contextlib.contextmanager
def production_logging() -> Iterator[tuple[io.StringIO, list[dict[str, Any]]]]:
    """Aurea's own production logging (JSON lines, debug level) into a buffer, plus every event
    dict as the renderer got it; the previous structlog configuration is restored after."""
    saved = structlog.get_config()
    buffer = io.StringIO()
    events: list[dict[str, Any]] = []

    def tee(_: Any, __: str, event: Any) -> Any:
        events.append(dict(event))
        return event

    configure(level="debug", fmt="json", redact=False)
    processors = list(structlog.get_config()["processors"])
    processors.insert(len(processors) - 1, tee)  # right before the JSON renderer
    structlog.configure(
        processors=processors,
        logger_factory=structlog.PrintLoggerFactory(file=buffer),
        cache_logger_on_first_use=False,  # module-level loggers must not keep this config
    )
    try:
        yield buffer, events
    finally:
        structlog.configure(**saved)


@pytest_asyncio.fixture(loop_scope="module")
async def seen(
    rig: Rig, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> AsyncIterator[Haystack]:
    """The haystack of one test, with everything logged during it; checked at the end."""
    caplog.set_level(logging.DEBUG)
    rig.reset()
    hay = Haystack(rig.secrets.all())
    with production_logging() as (buffer, events):

        def gather() -> None:
            out, err = capfd.readouterr()
            hay.add(buffer.getvalue(), [json.dumps(e, default=repr) for e in events])
            hay.add([repr(e) for e in events], caplog.text, out, err)
            hay.add([repr(r.__dict__) for r in caplog.records])

        hay.log_events, hay.gather = events, gather
        yield hay
        if not hay.checked:
            await hay.check()
    rig.reset()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig() -> AsyncIterator[Rig]:
    s = canary_secrets()
    async with open_rig(s, canary_fakes(s)) as r:
        yield r


# -- calls ----------------------------------------------------------------------------------------
async def unary(
    hay: Haystack, rig: Rig, request: pb.GenerateRequest, *, retry: bool = False
) -> Any:
    rs = rig.retrying if retry else rig.strict
    hay.calls += 1
    call = inference(rs).Generate(request, timeout=20)
    result: Any
    try:
        result = await call
    except grpc.RpcError as err:
        result = failure_of(err)
    hay.add(result, list(await call.initial_metadata() or ()))
    hay.add(list(await call.trailing_metadata() or ()))
    return result


async def stream(
    hay: Haystack, rig: Rig, request: pb.GenerateStreamRequest, *, retry: bool = False
) -> StreamRun:
    run = await run_stream(rig.retrying if retry else rig.strict, request)
    hay.add_run(run)
    return run


async def both(hay: Haystack, rig: Rig, case: Case, *, retry: bool = False) -> None:
    await unary(hay, rig, pb.GenerateRequest(prompt=PROMPT, model=case.model), retry=retry)
    await stream(
        hay,
        rig,
        pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt=PROMPT, model=case.model)),
        retry=retry,
    )


async def admin_views(hay: Haystack, rig: Rig) -> None:
    for rs in (rig.strict, rig.retrying):
        stub = admin(rs)
        hay.calls += 5
        hay.add(await stub.ListProviders(admin_pb2.ListProvidersRequest(), timeout=10))
        hay.add(await stub.GetProviderStats(admin_pb2.GetProviderStatsRequest(), timeout=10))
        hay.add(await stub.GetSystemMetrics(admin_pb2.GetSystemMetricsRequest(), timeout=10))
        hay.add(await stub.GetInfo(admin_pb2.GetInfoRequest(), timeout=10))
        with contextlib.suppress(grpc.RpcError):  # not built yet: its error is collected too
            hay.add(await stub.GetMetricsSummary(admin_pb2.GetMetricsSummaryRequest(), timeout=10))
        for name in [c.provider for c in CASES] + ["no-such-provider"]:
            hay.calls += 1
            try:
                hay.add(
                    await stub.GetProviderStats(
                        admin_pb2.GetProviderStatsRequest(provider=name), timeout=10
                    )
                )
            except grpc.RpcError as err:
                hay.add(failure_of(err))


# -- tests ----------------------------------------------------------------------------------------
def ids(case: Case) -> str:
    return case.provider


async def test_detector_finds_every_form(rig: Rig) -> None:
    """The search itself works: each form of a secret, embedded in a larger blob, is found."""
    for secret in rig.secrets.all():
        hay = Haystack([secret])
        hay.add(
            f"Authorization: Basic {base64.b64encode(f'user:{secret}'.encode()).decode()}",
            f"https://x.test/?key={quote(secret, safe='')}&a=1",
            base64.urlsafe_b64encode(b"ab" + secret.encode()).decode(),
            json.dumps({"k": secret}),
        )
        assert len(hay.leaks()) >= 4


async def test_successful_calls(rig: Rig, seen: Haystack) -> None:
    for case in CASES:
        await both(seen, rig, case)
        messages = [
            pb.ChatMessage(role=pb.ROLE_SYSTEM, content="be brief"),
            pb.ChatMessage(role=pb.ROLE_USER, content=PROMPT),
        ]
        await unary(seen, rig, pb.GenerateRequest(messages=messages, model=case.model))
        if case.embed_model:
            seen.calls += 1
            seen.add(
                await inference(rig.strict).Embed(
                    pb.EmbedRequest(model=case.embed_model, inputs=["a", "b c"]), timeout=20
                )
            )
    # Positive control: the keys did travel to the upstreams (where they belong).
    for case in CASES:
        if case.key_env:
            sent = " ".join(str(r.headers) for r in rig.fake(case.provider).requests)
            assert rig.secrets.keys[case.provider] in sent
    await admin_views(seen, rig)


@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_every_fault(rig: Rig, case: Case, seen: Haystack) -> None:
    fake = rig.fake(case.provider)
    for kind in FAULTS:
        for mode in ("unary", "stream"):
            fake.inject(Fault(kind, after_tokens=1, retry_after="1"))
            if mode == "unary":
                await unary(seen, rig, pb.GenerateRequest(prompt=PROMPT, model=case.model))
            else:
                req = pb.GenerateStreamRequest(
                    request=pb.GenerateRequest(prompt=PROMPT, model=case.model)
                )
                await stream(seen, rig, req)
            fake.faults.clear()
    # Retries (their log lines) and exhausted retries.
    fake.inject(Fault(FaultKind.SERVER_ERROR))
    await both(seen, rig, case, retry=True)
    fake.inject(*(Fault(FaultKind.OVERLOADED) for _ in range(6)))
    await both(seen, rig, case, retry=True)
    assert any(f"{case.provider}:" in t for t in seen.texts), "no error message was collected"
    if case.kind == "http":  # this fake quotes the X-Api-Key it got in every error message
        assert any("(key ***)" in t for t in seen.texts), "the quoted key was not scrubbed"
    await admin_views(seen, rig)


@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_wrong_key(rig: Rig, case: Case, seen: Haystack) -> None:
    """The upstream refuses the key: its 401/403/400 answers (which may quote or mask the key
    it got) must not carry the key through to the caller or the log."""
    fake = rig.fake(case.provider)
    attr = "secret_key" if case.kind == "lambda" else "api_key"
    right = getattr(fake, attr)
    setattr(fake, attr, "the-upstream-expects-another-key")
    try:
        for retry in (False, True):
            result = await unary(
                seen, rig, pb.GenerateRequest(prompt=PROMPT, model=case.model), retry=retry
            )
            run = await stream(
                seen,
                rig,
                pb.GenerateStreamRequest(
                    request=pb.GenerateRequest(prompt=PROMPT, model=case.model)
                ),
                retry=retry,
            )
            # The upstream really refused: otherwise this test would check nothing.
            for failure in (result, run.failure):
                assert isinstance(failure, Failure), failure
                assert failure.code == grpc.StatusCode.FAILED_PRECONDITION, failure.message
    finally:
        setattr(fake, attr, right)
    await admin_views(seen, rig)


async def test_fallback_and_cancellation(rig: Rig, seen: Haystack) -> None:
    rig.fake("openai").inject(*(Fault(FaultKind.RATE_LIMIT, retry_after="0") for _ in range(3)))
    run = await stream(
        seen,
        rig,
        pb.GenerateStreamRequest(
            request=pb.GenerateRequest(prompt=PROMPT, model="gpt-x", fallback_models=["claude-x"])
        ),
        retry=True,
    )
    assert "fallback" in run.kinds and run.failure is None
    fake = rig.fake("gemini")
    fake.token_delay_s = 0.05
    call = inference(rig.strict).GenerateStream(
        pb.GenerateStreamRequest(
            request=pb.GenerateRequest(prompt=" ".join(["word"] * 100), model="gemini-x")
        ),
        timeout=20,
    )
    async for event in call:
        seen.add(event)
        if event.HasField("delta"):
            break
    call.cancel()
    assert await wait_until(fake.stream_aborted)
    seen.add(list(await call.initial_metadata() or ()))
    await admin_views(seen, rig)


@pytest.mark.parametrize("where", ["http", "stream"])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_key_quoted_back_by_the_upstream(
    rig: Rig, seen: Haystack, provider: str, where: str, request: pytest.FixtureRequest
) -> None:
    """An upstream (a proxy, a compatible server) that quotes the credential it received in an
    error body (``http``) or an in-stream error event (``stream``) must still not get the key
    to the caller: Aurea scrubs every secret it knows from upstream text."""
    case: Case = BY_PROVIDER[provider]
    fake = rig.fake(provider)
    fake.echo_key = where
    kinds = [FaultKind.UNAUTHORIZED, FaultKind.RATE_LIMIT, FaultKind.SERVER_ERROR]
    if where == "stream":
        kinds = [FaultKind.STREAM_ERROR]
    try:
        for kind in kinds:
            for after in (0, 1):  # before and after the first delta
                fake.inject(Fault(kind, after_tokens=after, retry_after="0"))
                run = await stream(
                    seen,
                    rig,
                    pb.GenerateStreamRequest(
                        request=pb.GenerateRequest(prompt=PROMPT, model=case.model)
                    ),
                )
                assert run.failure is not None
                fake.inject(Fault(kind, after_tokens=after, retry_after="0"))
                await unary(seen, rig, pb.GenerateRequest(prompt=PROMPT, model=case.model))
    finally:
        fake.echo_key = ""
    secret = rig.secrets.keys[provider]
    sent = [r for r in fake.requests if secret in str(r.headers)]
    assert sent, "the fake never received the key"
    if where == "http":  # the upstream did quote the key, and Aurea scrubbed it
        assert any("(request credential " in t and "***)" in t for t in seen.texts)
    await seen.check()


async def test_startup_and_shutdown(capfd: pytest.CaptureFixture[str]) -> None:
    """A whole server lifetime (start, a call, drain, stop) under production logging."""
    s = canary_secrets()
    hay = Haystack(s.all())
    with production_logging() as (buffer, events):
        async with open_rig(s) as r:
            hay.calls += 1
            hay.add(
                await inference(r.strict).Generate(
                    pb.GenerateRequest(prompt=PROMPT, model="claude-x"), timeout=20
                )
            )
    out, err = capfd.readouterr()
    hay.add(buffer.getvalue(), [repr(e) for e in events], out, err)
    hay.log_events = events
    names = {e.get("event") for e in events}
    assert {"server_started", "rpc_finished", "server_stopped"} <= names, names
    await hay.check()


# -- issue 16: the HTTP door, task payloads, key admin views, config show -------------------------
async def http_call(hay: Haystack, rs: RunningServer, path: str, body: dict[str, Any]) -> int:
    """One call through the OpenAI door; its status line, headers and body go in the haystack."""
    hay.calls += 1
    url = f"http://127.0.0.1:{rs.server.http_port}{path}"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        hay.add(str(resp.status), [f"{k}: {v}" for k, v in resp.headers.items()])
        hay.add(await resp.read())
        return resp.status


@pytest.mark.parametrize("case", CASES, ids=ids)
async def test_http_door_successes_and_faults(rig: Rig, case: Case, seen: Haystack) -> None:
    fake = rig.fake(case.provider)
    chat = {"model": case.model, "messages": [{"role": "user", "content": PROMPT}]}
    statuses = []
    for stream in (False, True):
        statuses.append(
            await http_call(seen, rig.strict, "/v1/chat/completions", {**chat, "stream": stream})
        )
    if case.embed_model:
        body = {"model": case.embed_model, "input": ["a", "b c"]}
        statuses.append(await http_call(seen, rig.strict, "/v1/embeddings", body))
    assert 200 in statuses, statuses  # the door reached the upstream
    for kind in FAULTS:
        for stream in (False, True):
            fake.inject(Fault(kind, after_tokens=1, retry_after="1"))
            await http_call(seen, rig.strict, "/v1/chat/completions", {**chat, "stream": stream})
            fake.faults.clear()
    await seen.check()


async def test_task_payloads_and_results(rig: Rig, seen: Haystack) -> None:
    """Tasks run inference on every provider (and fail on faults): nothing a task's result,
    error, listing or events say carries a provider's key."""
    stub = task_pb2_grpc.TaskServiceStub(rig.strict.channel)
    ended = (
        task_pb2.TASK_STATUS_SUCCEEDED,
        task_pb2.TASK_STATUS_FAILED,
        task_pb2.TASK_STATUS_CANCELLED,
        task_pb2.TASK_STATUS_TIMED_OUT,
    )
    for case in CASES:
        for fault in (None, FaultKind.UNAUTHORIZED, FaultKind.SERVER_ERROR):
            # One task at a time, its faults queued just before it and dropped after it: a
            # fault left over must not fail the next task (the positive control needs both).
            rig.reset()
            if fault is not None:
                rig.fake(case.provider).inject(*(Fault(fault) for _ in range(4)))
            payload = json.dumps({"prompt": PROMPT, "model": case.model, "max_tokens": 16})
            seen.calls += 1
            submitted = await stub.SubmitTask(
                task_pb2.SubmitTaskRequest(
                    kind="llm.generate", payload_json=payload, max_attempts=1
                ),
                timeout=20,
            )
            seen.add(submitted)
            for _ in range(400):  # bounded: each task ends within seconds
                seen.calls += 1
                got = await stub.GetTask(
                    task_pb2.GetTaskRequest(task_id=submitted.task.task_id), timeout=20
                )
                if got.task.status in ended:
                    break
                await asyncio.sleep(0.05)
            seen.add(got)
    seen.calls += 1
    listed = await stub.ListTasks(task_pb2.ListTasksRequest(), timeout=20)
    seen.add(listed)
    statuses = {t.status for t in listed.tasks}
    # positive control: tasks did reach the upstreams, and some failed there
    assert task_pb2.TASK_STATUS_SUCCEEDED in statuses, statuses
    assert task_pb2.TASK_STATUS_FAILED in statuses, statuses
    rig.reset()
    await seen.check()


AUREA_KEY = f"aurea-canary-{rnd.token_hex(16)}"


async def test_key_admin_views_never_show_a_key(capfd: pytest.CaptureFixture[str]) -> None:
    """Aurea's own API keys: configured, created and rotated at run time; the key RPCs' views,
    every log line and every error carry no key (nor its SHA-256), only a fingerprint."""
    import hashlib

    from aurea.testing import running_server, test_settings

    hay = Haystack([AUREA_KEY])
    digest = hashlib.sha256(AUREA_KEY.encode()).hexdigest()
    settings = test_settings(
        {"auth": {"keys": [{"name": "canary-admin", "sha256": digest, "scopes": ["admin"]}]}},
        AUREA_API_KEYS=f"user:{AUREA_KEY}-user",
    )
    made: list[str] = []
    with production_logging() as (buffer, events):
        async with running_server(settings) as rs:
            stub = admin_pb2_grpc.AdminServiceStub(rs.channel)
            md = (("authorization", f"Bearer {AUREA_KEY}"),)
            hay.add(await stub.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=md))
            created = await stub.CreateApiKey(
                admin_pb2.CreateApiKeyRequest(policy=admin_pb2.ApiKeyPolicy(name="made")),
                metadata=md,
            )
            made.append(created.api_key)
            hay.add(created.key)  # the made key itself is in api_key, shown once, on purpose
            rotated = await stub.RotateApiKey(
                admin_pb2.RotateApiKeyRequest(name="canary-admin", previous_key_grace_ms=60_000),
                metadata=md,
            )
            made.append(rotated.api_key)
            hay.add(rotated.key)
            hay.add(
                await stub.DisableApiKey(admin_pb2.DisableApiKeyRequest(name="made"), metadata=md)
            )
            hay.add(await stub.ListApiKeys(admin_pb2.ListApiKeysRequest(), metadata=md))
            for bad in (AUREA_KEY + "x", made[0]):  # a wrong key, a disabled one
                try:
                    await stub.GetInfo(
                        admin_pb2.GetInfoRequest(), metadata=(("authorization", f"Bearer {bad}"),)
                    )
                except grpc.RpcError as err:
                    hay.add(failure_of(err))
            http = f"http://127.0.0.1:{rs.server.http_port}/v1/chat/completions"
            async with aiohttp.ClientSession() as session:
                for bad in (AUREA_KEY + "x", made[0]):
                    async with session.post(
                        http,
                        json={"messages": [{"role": "user", "content": "hi"}]},
                        headers={"authorization": f"Bearer {bad}"},
                    ) as resp:
                        assert resp.status == 401
                        hay.add(await resp.read(), [f"{k}: {v}" for k, v in resp.headers.items()])
    out, err = capfd.readouterr()
    hay.secrets = [AUREA_KEY, f"{AUREA_KEY}-user", digest, *made]
    hay.add(buffer.getvalue(), [repr(e) for e in events], out, err)
    assert "api_key_rotated" in buffer.getvalue()  # the capture works
    leaks = hay.leaks()
    assert not leaks, "a key leaked:\n" + "\n".join(leaks[:10])


async def test_config_show_masks_keys(aurea_cli: Callable[..., Any], tmp_path: Any) -> None:
    """``aurea config show`` (text and JSON) with keys from the environment and provider key
    variables set: neither Aurea's keys nor a provider's appear, in any form."""
    provider_secret = f"sk-canary-{rnd.token_hex(16)}"
    config = tmp_path / "aurea.toml"
    config.write_text(
        '[providers.oa]\nkind = "openai"\napi_key_env = "AUREA_CANARY_OPENAI"\n'
        'base_url = "http://127.0.0.1:9/v1"\n'
    )
    env = {
        "AUREA_API_KEYS": f"admin:{AUREA_KEY}",
        "AUREA_CANARY_OPENAI": provider_secret,
        "AUREA_REDIS_URL": f"redis://:{provider_secret}@127.0.0.1:6379/0",
    }
    hay = Haystack([AUREA_KEY, provider_secret])
    for args in (("config", "show"), ("config", "show", "--json"), ("config", "check")):
        r = await asyncio.to_thread(aurea_cli, *args, "--config", str(config), env=env)
        assert r.returncode == 0, r.stderr
        hay.add(r.stdout, r.stderr)
    shown = "".join(hay.texts)
    assert "auth.keys.env0" in shown and "***" in shown  # the keys are listed, masked
    leaks = hay.leaks()
    assert not leaks, "a key leaked:\n" + "\n".join(leaks[:10])
