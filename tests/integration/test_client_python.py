"""The Python client package (``clients/python``, ``aurea_client``) end to end: against a real
Aurea server (completions, streams, embeddings, management calls, every refusal as a typed
exception with its ``google.rpc`` details), against scripted gRPC servers (retries on
UNAVAILABLE honouring RetryInfo, deadlines, TLS), its runnable examples, its wheel, and its copy
of the generated code (the same protos as the server's)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

import aurea.v1
from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as make_settings

aurea_client = pytest.importorskip("aurea_client")  # pip install -e clients/python
from aurea_client import (  # noqa: E402
    NO_RETRY,
    AsyncClient,
    BudgetExceeded,
    Client,
    Delta,
    Final,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    RetryPolicy,
    Started,
    Tls,
    Unauthenticated,
    Unavailable,
    UsageUpdate,
)
from aurea_client._pb import admin_pb2, inference_pb2, inference_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "clients" / "python"
USER_KEY = "user-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"


@pytest_asyncio.fixture
async def server() -> AsyncIterator[RunningServer]:
    s = make_settings(
        {
            "http": {"port": 0},
            "ledger": {"store": "memory"},
            "routing": {"stats_store": "memory"},
            "models": {"sim-large": {"provider": "simulated", "rpm": 1}},
            "limits": {"max_wait_s": 0},
        },
        AUREA_API_KEYS=f"user:{USER_KEY},admin:{ADMIN_KEY}",
    )
    async with running_server(s) as rs:
        yield rs


async def test_generate_stream_and_embed(server: RunningServer) -> None:
    async with AsyncClient(server.target, api_key=USER_KEY) as aurea:
        answer = await aurea.generate("hello", model="sim-small", labels={"t": "1"})
        assert answer.text and answer.model == "sim-small" and answer.provider == "simulated"
        assert answer.finish_reason == "stop"
        assert answer.cost_nanos > 0 and answer.usage.output_tokens > 0
        assert re.fullmatch(r"[0-9a-f]{32}", answer.request_id)
        events = [
            ev async for ev in aurea.stream("hello", model="sim-small", usage_interval_deltas=2)
        ]
        assert type(events[0]) is Started and type(events[-1]) is Final
        assert any(type(ev) is UsageUpdate for ev in events)
        assert "".join(ev.text for ev in events if type(ev) is Delta) == answer.text
        assert events[-1].cost_nanos == answer.cost_nanos
        conversation = await aurea.generate(
            messages=[("user", "hello"), {"role": "assistant", "content": "hi"}],
            system="be brief",
            policy="cost",
        )
        assert conversation.usage.input_tokens > answer.usage.input_tokens
        vectors = await aurea.embed(["a", "b", "c"])
        assert len(vectors.vectors) == 3 and vectors.model == "sim-embed"


async def test_management_calls(server: RunningServer) -> None:
    async with AsyncClient(server.target, api_key=ADMIN_KEY) as aurea:
        info = await aurea.admin.get_info()
        assert info.version
        providers = await aurea.admin.list_providers(page_size=10)
        assert [p.name for p in providers.providers] == ["simulated"]
        same = await aurea.admin.list_providers(admin_pb2.ListProvidersRequest(page_size=10))
        assert same == providers
        await aurea.ledger.set_budget(job_id="client-job", budget_nanos=10**9)
        job = await aurea.ledger.get_job(job_id="client-job")
        assert job.job.job_id == "client-job"
        with pytest.raises(TypeError):
            await aurea.admin.list_providers(admin_pb2.ListProvidersRequest(), page_size=1)


async def test_refusals_are_typed_with_their_details(server: RunningServer) -> None:
    async with AsyncClient(server.target, api_key=USER_KEY, retry=NO_RETRY) as aurea:
        with pytest.raises(InvalidArgument) as bad:
            await aurea.generate(messages=[("user", "")], max_tokens=-1)
        assert bad.value.reason == "INVALID_REQUEST" and bad.value.domain == "aurea.v1"
        assert set(bad.value.fields) == {"messages[0].content", "max_tokens"}
        assert re.fullmatch(r"[0-9a-f]{32}", bad.value.request_id)
        with pytest.raises(NotFound) as missing:
            await aurea.generate("x", model="no-such-model")
        assert missing.value.reason == "MODEL_NOT_FOUND" and missing.value.fields == ["model"]
        with pytest.raises(PermissionDenied):  # a user key cannot set budgets
            await aurea.ledger.set_budget(job_id="j", budget_nanos=1)
        await aurea.generate("x", model="sim-large")
        with pytest.raises(RateLimited) as limited:
            await aurea.generate("x", model="sim-large")
        assert limited.value.code == "RESOURCE_EXHAUSTED"
        assert limited.value.retry_delay_s is not None and limited.value.retry_delay_s > 0
        assert limited.value.quota_violations
        # A stream refused before it began raises at once, with the same details.
        with pytest.raises(InvalidArgument) as streamed:
            async for _ in aurea.stream(""):
                pass
        assert streamed.value.fields == ["prompt"]
    async with AsyncClient(server.target, api_key=ADMIN_KEY, retry=NO_RETRY) as admin:
        await admin.ledger.set_budget(job_id="tiny", budget_nanos=1)
        with pytest.raises(BudgetExceeded) as spent:
            await admin.generate("x", model="sim-small", job_id="tiny")
        assert spent.value.reason == "BUDGET_EXCEEDED"
        assert any(q.subject == "job:tiny" for q in spent.value.quota_violations)
    async with AsyncClient(server.target, api_key="wrong-key-000000", retry=NO_RETRY) as wrong:
        with pytest.raises(Unauthenticated) as unauth:
            await wrong.generate("x")
        assert "wrong-key" not in str(unauth.value)


async def test_the_blocking_client(server: RunningServer) -> None:
    def work() -> tuple[str, list[Any], str]:
        with Client(server.target, api_key=USER_KEY) as aurea:
            text = aurea.generate("hello", model="sim-small").text
            events = list(aurea.stream("hello", model="sim-small"))
            try:
                aurea.generate("")
            except InvalidArgument as err:
                return text, events, err.fields[0]
        raise AssertionError("the empty prompt was accepted")

    text, events, field = await asyncio.to_thread(work)
    assert "".join(e.text for e in events if type(e) is Delta) == text
    assert field == "prompt"


# -- retries, deadlines and TLS against scripted servers ---------------------------------------


def unavailable(delay_s: float | None) -> grpc.Status:
    details = [error_details_pb2.ErrorInfo(reason="OVERLOADED", domain="aurea.v1")]
    if delay_s is not None:
        whole = int(delay_s)
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=whole, nanos=int((delay_s - whole) * 1e9))
        )
        details.append(retry)  # type: ignore[arg-type]
    packed = []
    for d in details:
        any_msg = status_pb2.Status().details.add()
        any_msg.Pack(d)
        packed.append(any_msg)
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="busy", details=packed)
    return rpc_status.to_status(status)


class Scripted(inference_pb2_grpc.InferenceServiceServicer):  # type: ignore[misc]
    """Fails the first ``failures`` calls UNAVAILABLE (with a RetryInfo of ``delay_s``)."""

    def __init__(self, failures: int, delay_s: float | None, hang_s: float = 0.0) -> None:
        self.failures = failures
        self.delay_s = delay_s
        self.hang_s = hang_s
        self.calls = 0

    async def Generate(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        if self.calls <= self.failures:
            await context.abort_with_status(unavailable(self.delay_s))
        return inference_pb2.GenerateResponse(text="finally", model="m")

    async def GenerateStream(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            await context.abort_with_status(unavailable(self.delay_s))
        yield inference_pb2.GenerateStreamResponse(delta=inference_pb2.TextDelta(text="a"))
        if self.calls == self.failures + 1 and self.hang_s < 0:
            await context.abort_with_status(unavailable(self.delay_s))  # after a first event
        yield inference_pb2.GenerateStreamResponse(
            final=inference_pb2.StreamFinal(finish_reason=inference_pb2.FINISH_REASON_STOP)
        )


async def scripted_server(
    servicer: Scripted, credentials: grpc.ServerCredentials | None = None
) -> tuple[grpc.aio.Server, int]:
    srv = grpc.aio.server()
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, srv)
    if credentials is None:
        port = srv.add_insecure_port("127.0.0.1:0")
    else:
        port = srv.add_secure_port("127.0.0.1:0", credentials)
    await srv.start()
    return srv, port


async def test_unavailable_is_retried_after_the_servers_retry_delay() -> None:
    servicer = Scripted(failures=2, delay_s=0.05)
    srv, port = await scripted_server(servicer)
    try:
        async with AsyncClient(f"127.0.0.1:{port}") as aurea:
            answer = await aurea.generate("x")
            assert answer.text == "finally" and servicer.calls == 3
            assert aurea._invoke.retries == 2
            assert aurea._invoke.waited_s == pytest.approx(0.1)  # the server's delays, not backoff
    finally:
        await srv.stop(0)


async def test_retries_stop_at_the_policy_and_keep_the_details() -> None:
    servicer = Scripted(failures=5, delay_s=0.01)
    srv, port = await scripted_server(servicer)
    try:
        policy = RetryPolicy(max_attempts=2)
        async with AsyncClient(f"127.0.0.1:{port}", retry=policy) as aurea:
            with pytest.raises(Unavailable) as info:
                await aurea.generate("x")
            assert servicer.calls == 2
            assert info.value.reason == "OVERLOADED" and info.value.retry_delay_s == 0.01
        servicer.calls = 0
        long_wait = RetryPolicy(max_attempts=5, max_retry_delay_s=0.001)
        async with AsyncClient(f"127.0.0.1:{port}", retry=long_wait) as aurea:
            with pytest.raises(Unavailable):
                await aurea.generate("x")
            assert servicer.calls == 1, "a RetryInfo past max_retry_delay_s is not waited for"
    finally:
        await srv.stop(0)


async def test_a_retry_never_waits_past_the_deadline() -> None:
    servicer = Scripted(failures=5, delay_s=30.0)
    srv, port = await scripted_server(servicer)
    try:
        async with AsyncClient(f"127.0.0.1:{port}", timeout_s=5.0) as aurea:
            with pytest.raises(Unavailable) as info:
                await aurea.generate("x")
            assert servicer.calls == 1 and info.value.retry_delay_s == 30.0
    finally:
        await srv.stop(0)


async def test_a_stream_is_retried_only_before_its_first_event() -> None:
    servicer = Scripted(failures=1, delay_s=0.01)
    srv, port = await scripted_server(servicer)
    try:
        async with AsyncClient(f"127.0.0.1:{port}") as aurea:
            events = [ev async for ev in aurea.stream("x")]
            assert servicer.calls == 2 and type(events[-1]) is Final
        cut = Scripted(failures=0, delay_s=0.01, hang_s=-1)  # fails after its first event
        srv2, port2 = await scripted_server(cut)
        try:
            async with AsyncClient(f"127.0.0.1:{port2}") as aurea:
                got: list[Any] = []
                with pytest.raises(Unavailable):
                    async for ev in aurea.stream("x"):
                        got.append(ev)
                assert cut.calls == 1 and [type(e) for e in got] == [Delta]
        finally:
            await srv2.stop(0)
    finally:
        await srv.stop(0)


async def test_deadlines_are_per_call() -> None:
    servicer = Scripted(failures=0, delay_s=None, hang_s=5.0)
    srv, port = await scripted_server(servicer)
    try:
        async with AsyncClient(f"127.0.0.1:{port}", timeout_s=60) as aurea:
            with pytest.raises(aurea_client.DeadlineExceeded):
                await aurea.generate("x", timeout_s=0.2)
    finally:
        await srv.stop(0)


def self_signed(tmp: Path) -> tuple[bytes, bytes]:
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("AUREA_REQUIRE_ALL"):
            pytest.fail("AUREA_REQUIRE_ALL is set but openssl is not installed")
        pytest.skip("openssl is not installed")
    assert openssl is not None
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key.read_bytes(), cert.read_bytes()


async def test_tls_with_the_servers_certificate(tmp_path: Path) -> None:
    key, cert = self_signed(tmp_path)
    servicer = Scripted(failures=0, delay_s=None)
    creds = grpc.ssl_server_credentials([(key, cert)])
    srv, port = await scripted_server(servicer, creds)
    try:
        (tmp_path / "ca.pem").write_bytes(cert)
        tls = Tls.from_files(ca=tmp_path / "ca.pem", server_name="localhost")
        async with AsyncClient(f"127.0.0.1:{port}", tls=tls) as aurea:
            assert (await aurea.generate("x")).text == "finally"
        async with AsyncClient(f"127.0.0.1:{port}", retry=NO_RETRY, timeout_s=5) as plain:
            with pytest.raises(aurea_client.AureaError):
                await plain.generate("x")  # plaintext to a TLS port fails
    finally:
        await srv.stop(0)


# -- the package itself --------------------------------------------------------------------------


def test_the_vendored_stubs_are_the_servers_protos() -> None:
    from aurea_client import _pb

    for name in ("admin", "inference", "infrastructure", "ledger", "router", "task"):
        mine = __import__(f"aurea_client._pb.{name}_pb2", fromlist=["DESCRIPTOR"])
        theirs = __import__(f"aurea.v1.{name}_pb2", fromlist=["DESCRIPTOR"])
        assert mine.DESCRIPTOR.serialized_pb == theirs.DESCRIPTOR.serialized_pb, (
            f"{name}.proto changed: run clients/python/gen_protos.sh and "
            "python clients/python/tools/gen_services.py"
        )
    assert _pb.__file__ and aurea.v1.__file__


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_rpc_has_a_method_on_both_clients() -> None:
    from aurea_client import _services

    pairs = {
        "TaskService": ("AsyncTasksCalls", "TasksCalls"),
        "LedgerService": ("AsyncLedgerCalls", "LedgerCalls"),
        "RouterService": ("AsyncRouterCalls", "RouterCalls"),
        "AdminService": ("AsyncAdminCalls", "AdminCalls"),
        "InfrastructureService": ("AsyncInfrastructureCalls", "InfrastructureCalls"),
    }
    modules = {"TaskService": "task", "LedgerService": "ledger", "RouterService": "router",
               "AdminService": "admin", "InfrastructureService": "infrastructure"}  # fmt: skip
    for service, classes in pairs.items():
        mod = __import__(f"aurea_client._pb.{modules[service]}_pb2", fromlist=["DESCRIPTOR"])
        rpcs = mod.DESCRIPTOR.services_by_name[service].methods
        for cls_name in classes:
            cls = getattr(_services, cls_name)
            missing = [m.name for m in rpcs if not hasattr(cls, _snake(m.name))]
            assert not missing, (
                f"{cls_name} lacks {missing}: run python clients/python/tools/gen_services.py"
            )


async def run_example(name: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENT / "examples" / name),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("AUREA_")},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_the_examples_run(server: RunningServer) -> None:
    rc, out, err = await run_example(
        "quickstart.py", "--target", server.target, "--api-key", USER_KEY
    )
    assert rc == 0, err
    assert "generate: '" in out and "stream: " in out and "embed: 2 vectors" in out
    assert "refused: INVALID_ARGUMENT reason=INVALID_REQUEST fields=['prompt']" in out
    rc, out, err = await run_example(
        "blocking.py", "--target", server.target, "--api-key", USER_KEY, "hello"
    )
    assert rc == 0, err
    assert "providers: simulated" in out
    rc, out, err = await run_example("blocking.py", "--target", server.target, "hello")
    assert rc == 1 and err.startswith("UNAUTHENTICATED: ") and "Traceback" not in err
    rc, out, err = await run_example("errors.py", "--target", server.target, "--api-key", USER_KEY)
    assert rc == 0, err
    assert "InvalidArgument: code=INVALID_ARGUMENT reason=INVALID_REQUEST" in out
    assert "field max_tokens:" in out and "field messages[0].content:" in out
    assert "NotFound: code=NOT_FOUND reason=MODEL_NOT_FOUND" in out


def test_the_package_builds_a_wheel_without_the_server(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(CLIENT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("aurea_client-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "aurea_client/py.typed" in names
    assert "aurea_client/_pb/inference_pb2_grpc.py" in names
    assert not [n for n in names if n.startswith("aurea/")], "the server must not ship with it"
    meta = next(n for n in names if n.endswith("METADATA"))
    requires = [
        line for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]  # fmt: skip
    assert {r.split()[1].split(">")[0] for r in requires} == {"grpcio", "grpcio-status", "protobuf"}


async def test_failover_mode_reaches_the_server_and_fallback_restart_is_read() -> None:
    seen: list[int] = []

    class Recorder(Scripted):
        async def GenerateStream(self, request: Any, context: Any) -> Any:
            seen.append(request.mid_stream_failover)
            yield inference_pb2.GenerateStreamResponse(delta=inference_pb2.TextDelta(text="a"))
            yield inference_pb2.GenerateStreamResponse(
                fallback=inference_pb2.Fallback(from_model="x", to_model="y", restart=True)
            )
            yield inference_pb2.GenerateStreamResponse(final=inference_pb2.StreamFinal())

    srv, port = await scripted_server(Recorder(failures=0, delay_s=None))
    try:
        async with AsyncClient(f"127.0.0.1:{port}") as aurea:
            events = [ev async for ev in aurea.stream("x", failover="restart")]
            assert [type(e).__name__ for e in events] == ["Delta", "Fallback", "Final"]
            assert events[1].restart is True  # type: ignore[union-attr]
            [_ async for _ in aurea.stream("x")]
            with pytest.raises(ValueError):
                aurea.stream("x", failover="sometimes")  # type: ignore[arg-type]
        assert seen == [inference_pb2.MID_STREAM_FAILOVER_RESTART, 0]
    finally:
        await srv.stop(0)
