"""Supervision of the local provider's child process, driven with a fake llama.cpp server."""

from __future__ import annotations

import asyncio
import importlib.machinery
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from aurea.errors import FailedPrecondition, ProviderConnectionError, ProviderTimeout
from aurea.providers import _process, local
from aurea.providers._base import (
    ChatMessage,
    Completion,
    Embeddings,
    EmbedRequest,
    Finish,
    FinishReason,
    ProviderEvent,
    ProviderRequest,
    ProviderSpec,
    Role,
    TextDelta,
    Usage,
    UsageReport,
)
from aurea.providers.local import LocalModelProvider, LocalOptions, ServerProcess

# Reads the provider's JSON config (host, port, models) and serves GET /v1/models like
# llama_cpp.server; MODE picks a misbehaviour.
FAKE_SERVER = textwrap.dedent(
    """
    import http.server, json, os, signal, subprocess, sys, threading, time
    config = json.load(open(sys.argv[1]))
    mode = sys.argv[2]
    if mode == "exit-now":
        print("error: model file is corrupt", flush=True)
        sys.exit(3)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "grandchild":
        kid = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open(sys.argv[3], "w").write(str(kid.pid))
    if mode == "die-soon":
        threading.Timer(0.3, lambda: os._exit(9)).start()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(
                {"object": "list", "data": [{"id": m["model_alias"]} for m in config["models"]]}
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # the provider's warm-up request
            self.rfile.read(int(self.headers["content-length"]))
            status = 500 if mode == "broken-model" else 200
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    if mode == "slow":
        time.sleep(600)
    print("listening", config["port"], flush=True)
    http.server.HTTPServer((config["host"], config["port"]), Handler).serve_forever()
    """
)


REPO_ROOT = str(Path(local.__file__).resolve().parents[2])  # where `import aurea` works


def parent_env(tmp_path: Path) -> dict[str, str]:
    """For a parent process that imports aurea from this tree and keeps its temp files here."""
    path = os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "TMPDIR": str(tmp_path)}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def wait_exited(process: ServerProcess, within_s: float = 5.0) -> None:
    """Until the event loop has seen the child exit (it learns a moment after the kernel)."""
    deadline = time.monotonic() + within_s
    while process.running and time.monotonic() < deadline:  # noqa: ASYNC110 - no event to wait on
        await asyncio.sleep(0.02)
    assert not process.running


@pytest.fixture
def fake_server(tmp_path: Path) -> Path:
    path = tmp_path / "fake_llama_server.py"
    path.write_text(FAKE_SERVER)
    return path


def make_provider(
    fake_server: Path, mode: str, *extra: str, clock: FakeClock | None = None, **options: object
) -> LocalModelProvider:
    spec = ProviderSpec(
        name="local-test",
        kind="local",
        options={"startup_timeout_s": 10, "stop_timeout_s": 1, **options},
    )

    def argv(config: Path, port: int) -> Sequence[str]:
        return [str(fake_server), str(config), mode, *extra]

    return LocalModelProvider(spec, server_argv=argv, clock=clock or time.monotonic)


async def test_start_is_idempotent_and_aclose_kills_the_group(
    fake_server: Path, tmp_path: Path
) -> None:
    kid_file = tmp_path / "grandchild.pid"
    provider = make_provider(fake_server, "grandchild", str(kid_file))
    await provider.start()
    await provider.start()
    pid = provider.process.pid
    assert pid is not None and alive(pid)
    assert provider.process.starts == 1
    assert provider.base_url == f"http://127.0.0.1:{provider.process.port}/v1"
    grandchild = int(kid_file.read_text())
    assert alive(grandchild)

    await provider.aclose()
    await provider.aclose()
    assert await wait_gone(pid)
    assert await wait_gone(grandchild)
    assert not _process._LIVE_GROUPS
    with pytest.raises(FailedPrecondition, match="closed"):
        await provider.start()


async def test_dead_child_is_restarted_by_the_next_call(fake_server: Path) -> None:
    provider = make_provider(fake_server, "serve")
    try:
        await provider.start()
        first = provider.process.pid
        assert first is not None
        os.killpg(first, signal.SIGKILL)
        await wait_exited(provider.process)
        await provider.start()
        second = provider.process.pid
        assert second is not None and second != first and alive(second)
        assert provider.process.starts == 2
    finally:
        await provider.aclose()


async def test_restarts_are_bounded_per_window(fake_server: Path) -> None:
    clock = FakeClock()
    provider = make_provider(fake_server, "die-soon", clock=clock, max_restarts=2)
    try:
        for _ in range(3):  # the first start and two restarts
            await provider.start()
            pid = provider.process.pid
            assert pid is not None
            await wait_exited(provider.process)
            clock.now += 1
        with pytest.raises(ProviderConnectionError, match="keeps dying") as info:
            await provider.start()
        assert info.value.retry_after_s == pytest.approx(57.0)
        assert "exit code 9" in info.value.message
        clock.now += 58  # the oldest start leaves the window
        await provider.start()
        assert provider.process.starts == 4
    finally:
        await provider.aclose()


async def test_exit_during_startup_reports_the_log_tail(fake_server: Path) -> None:
    provider = make_provider(fake_server, "exit-now")
    try:
        with pytest.raises(ProviderConnectionError, match="exited with code 3") as info:
            await provider.start()
        assert "model file is corrupt" in info.value.message
    finally:
        await provider.aclose()


async def test_failed_warm_up_fails_the_start(fake_server: Path) -> None:
    provider = make_provider(fake_server, "broken-model")
    try:
        with pytest.raises(ProviderConnectionError, match="warm-up request failed"):
            await provider.start()
        pid = provider.process.pid
        assert pid is not None
        assert await wait_gone(pid)
    finally:
        await provider.aclose()


async def test_startup_timeout_kills_the_child(fake_server: Path) -> None:
    provider = make_provider(fake_server, "slow", startup_timeout_s=0.5)
    try:
        with pytest.raises(ProviderTimeout, match="did not answer"):
            await provider.start()
        pid = provider.process.pid
        assert pid is not None
        assert await wait_gone(pid)
    finally:
        await provider.aclose()


async def test_stop_escalates_to_sigkill(fake_server: Path) -> None:
    provider = make_provider(fake_server, "ignore-term", stop_timeout_s=0.3)
    await provider.start()
    pid = provider.process.pid
    assert pid is not None
    started = time.monotonic()
    await provider.aclose()
    assert await wait_gone(pid)
    assert time.monotonic() - started < 3


async def test_child_exits_when_the_parent_is_killed(fake_server: Path, tmp_path: Path) -> None:
    # A parent that dies by SIGKILL runs no cleanup: the child notices its stdin pipe closing.
    parent = tmp_path / "parent.py"
    parent.write_text(
        textwrap.dedent(
            f"""
            import asyncio, os, signal, sys
            from aurea.providers._base import ProviderSpec
            from aurea.providers.local import LocalModelProvider

            async def main():
                spec = ProviderSpec(name="orphan", kind="local", options={{}})
                argv = lambda config, port: [{str(fake_server)!r}, str(config), "serve"]
                provider = LocalModelProvider(spec, server_argv=argv)
                await provider.start()
                print(provider.process.pid, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

            asyncio.run(main())
            """
        )
    )
    env = parent_env(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(parent), stdout=subprocess.PIPE, env=env
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == -signal.SIGKILL
    child = int(out.split()[-1])  # after the "local_model_started" log line
    assert await wait_gone(child)


async def test_child_exits_when_the_parent_forgets_to_close(
    fake_server: Path, tmp_path: Path
) -> None:
    parent = tmp_path / "parent.py"
    parent.write_text(
        textwrap.dedent(
            f"""
            import asyncio
            from aurea.providers._base import ProviderSpec
            from aurea.providers.local import LocalModelProvider

            async def main():
                spec = ProviderSpec(name="forgotten", kind="local", options={{}})
                argv = lambda config, port: [{str(fake_server)!r}, str(config), "ignore-term"]
                provider = LocalModelProvider(spec, server_argv=argv)
                await provider.start()
                print(provider.process.pid, flush=True)

            asyncio.run(main())
            """
        )
    )
    env = parent_env(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(parent), stdout=subprocess.PIPE, env=env
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    child = int(out.split()[-1])
    assert await wait_gone(child)
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith("aurea-local-")]
    assert not leftovers  # the exit hook removed the work dir


class FakeDelegate:
    def __init__(self, events: Sequence[ProviderEvent]) -> None:
        self.name = "fake"
        self.events = events
        self.requests: list[ProviderRequest | EmbedRequest] = []
        self.closed = False

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        self.requests.append(request)
        for event in self.events:
            yield event

    async def complete(self, request: ProviderRequest) -> Completion:
        raise NotImplementedError

    async def embed(self, request: EmbedRequest) -> Embeddings:
        self.requests.append(request)
        return Embeddings(vectors=((0.0,),), usage=None)

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        self.closed = True


REQUEST = ProviderRequest(
    model="whatever", messages=(ChatMessage(Role.USER, "Tell me a story about a cat."),)
)


async def test_stream_estimates_usage_the_server_left_out(
    fake_server: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeDelegate([TextDelta("Once"), TextDelta(" upon"), Finish(FinishReason.LENGTH)])
    provider = make_provider(fake_server, "serve", model_alias="tiny")
    monkeypatch.setattr(provider, "_make_delegate", lambda: fake)
    try:
        events = [e async for e in provider.stream(REQUEST)]
        assert events[:2] == [TextDelta("Once"), TextDelta(" upon")]
        assert isinstance(events[2], UsageReport) and events[3] == Finish(FinishReason.LENGTH)
        usage = events[2].usage
        assert usage.estimated and usage.output_tokens == 2 and usage.input_tokens > 0
        assert fake.requests[0].model == "tiny"
        await provider.embed(EmbedRequest(model="x", inputs=("a",)))
        assert fake.requests[1].model == "tiny"
    finally:
        await provider.aclose()
    assert fake.closed


async def test_stream_passes_reported_usage_through(
    fake_server: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported = UsageReport(Usage(input_tokens=7, output_tokens=1))
    fake = FakeDelegate([TextDelta("a"), reported, Finish(FinishReason.STOP)])
    provider = make_provider(fake_server, "serve")
    monkeypatch.setattr(provider, "_make_delegate", lambda: fake)
    try:
        events = [e async for e in provider.stream(REQUEST)]
        assert events == [TextDelta("a"), reported, Finish(FinishReason.STOP)]
    finally:
        await provider.aclose()


async def test_stream_counts_output_tokens_when_usage_is_estimated(
    fake_server: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guessed = UsageReport(Usage(input_tokens=9, output_tokens=5, estimated=True))
    fake = FakeDelegate([TextDelta("Once"), TextDelta(" upon"), guessed, Finish(FinishReason.STOP)])
    provider = make_provider(fake_server, "serve")
    monkeypatch.setattr(provider, "_make_delegate", lambda: fake)
    try:
        events = [e async for e in provider.stream(REQUEST)]
        assert events[2] == UsageReport(Usage(input_tokens=9, output_tokens=2, estimated=True))
    finally:
        await provider.aclose()


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_has", lambda module: module != "llama_cpp")
    # Aurea is not on PyPI: the hint must work from a checkout of the repository.
    with pytest.raises(FailedPrecondition, match=r"pip install -e '\.\[local\]'") as caught:
        LocalModelProvider(ProviderSpec(name="l", kind="local"))
    assert "aurea[local]" not in caught.value.message
    assert "llama-cpp-python[server]" in caught.value.message


def test_missing_model_without_package_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = local.importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == local.MODEL_PACKAGE else real_find_spec(name)

    monkeypatch.setattr(local.importlib.util, "find_spec", find_spec)
    with pytest.raises(FailedPrecondition, match=r"-e '\.\[local\]'.*model_path"):
        local.ensure_model_file(tmp_path / "absent.gguf")


def test_missing_model_is_assembled_from_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = types.ModuleType(local.MODEL_PACKAGE)
    package.__spec__ = importlib.machinery.ModuleSpec(local.MODEL_PACKAGE, None)
    written: list[Path] = []

    def assemble(path: Path, overwrite: bool = False) -> Path:
        assert overwrite
        path.write_bytes(b"GGUF")
        written.append(path)
        return path

    package.assemble = assemble  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, local.MODEL_PACKAGE, package)
    target = tmp_path / "models" / "m.gguf"
    assert local.ensure_model_file(target) == target
    assert target.read_bytes() == b"GGUF" and written[0] != target  # written aside, then renamed
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.gguf"]
    assert local.ensure_model_file(target) == target and len(written) == 1


def test_options_defaults_validation_and_server_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUREA_HOME", "/srv/aurea")
    opts = LocalOptions.from_spec(ProviderSpec(name="l", kind="local"))
    assert opts.model_path == Path("/srv/aurea/models/gemma3-270m-q4_k_m.gguf")
    assert (opts.port, opts.n_ctx, opts.n_threads, opts.chat_format) == (0, 2048, 1, "gemma")
    config = json.loads(json.dumps(opts.server_config(4321)))
    assert config["host"] == "127.0.0.1" and config["port"] == 4321
    assert config["interrupt_requests"] is False
    (model,) = config["models"]
    assert model["model_alias"] == "gemma3-270m" and model["logits_all"] is False
    assert model["chat_format"] == "gemma" and model["n_threads"] == 1
    assert model["embedding"] is True and model["kv_overrides"] == ["gemma3.pooling_type=int:1"]
    plain = LocalOptions.from_spec(
        ProviderSpec(
            name="l", kind="local", options={"embeddings": False, "model_settings": {"seed": 7}}
        )
    ).server_config(1)["models"][0]
    assert "embedding" not in plain and plain["seed"] == 7

    for bad in ({"n_ctx": 0}, {"port": "80"}, {"startup_timeout_s": -1}):
        with pytest.raises(FailedPrecondition, match=r"providers\.l"):
            LocalOptions.from_spec(ProviderSpec(name="l", kind="local", options=bad))
    with pytest.raises(ValueError, match="unknown option 'colour' for kind local; known: "):
        LocalOptions.from_spec(ProviderSpec(name="l", kind="local", options={"colour": "red"}))


async def test_server_process_without_provider(fake_server: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.json"

    def prepare(port: int) -> Sequence[str]:
        config.write_text(
            json.dumps({"host": "127.0.0.1", "port": port, "models": [{"model_alias": "m"}]})
        )
        return [str(fake_server), str(config), "serve"]

    process = ServerProcess(
        name="p", prepare=prepare, log_path=tmp_path / "p.log", expect_model="m"
    )
    await process.ensure_running()
    assert process.running and process.port > 0
    assert "listening" in (tmp_path / "p.log").read_text()
    await process.stop()
    assert not process.running
