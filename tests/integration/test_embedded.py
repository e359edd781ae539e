"""``aurea.Embedded``: the server's core in-process. Its calls give the answers the gRPC door
gives; a stream left early is cancelled; the caller's own function runs behind the same guards,
provider admission, breaker and retries (``guarded``); and with ``serve=True`` the in-process
calls and the remote doors share one state (rate limits, breakers)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from structlog.testing import capture_logs

import aurea
from aurea.errors import CircuitOpen, InvalidRequest, ModelDenied, RateLimited
from aurea.inference import Delta, Final, Started
from aurea.providers._base import Usage
from aurea.telemetry.logging import context_processors
from aurea.testing import test_settings as make_settings
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

pytestmark = pytest.mark.integration


def settings(**raw: Any) -> Any:
    base: dict[str, Any] = {
        "http": {"port": 0},
        "telemetry": {"http_port": 0},
        "ledger": {"store": "memory"},
        "routing": {"stats_store": "memory"},
    }
    for key, value in raw.items():
        base[key] = {**base.get(key, {}), **value}
    return make_settings(base)


def slow_sim(tokens: int, delay_ms: int) -> dict[str, Any]:
    options = {"token_delay_ms": delay_ms, "min_tokens": tokens, "max_tokens": tokens}
    return {"simulated": {"kind": "simulated", "options": options}}


async def test_generate_stream_and_embed_answer_as_the_grpc_door_does() -> None:
    async with aurea.Embedded(settings(), serve=True) as a:
        stub = inference_pb2_grpc.InferenceServiceStub(
            grpc.aio.insecure_channel(f"127.0.0.1:{a.server.port}")
        )
        remote = await stub.Generate(pb.GenerateRequest(prompt="hi", model="sim-small"))
        local = await a.generate("hi", model="sim-small")
        assert (local.text, local.cost_nanos) == (remote.text, remote.cost_nanos)
        events = [ev async for ev in a.stream("hi", model="sim-small")]
        assert type(events[0]) is Started and type(events[-1]) is Final
        assert "".join(ev.text for ev in events if type(ev) is Delta) == remote.text
        vectors = await a.embed(["one", "two"])
        assert len(vectors.vectors) == 2 and vectors.model == "sim-embed"
        with_system = await a.generate("hi", system="be brief", model="sim-small")
        assert with_system.usage.input_tokens > local.usage.input_tokens
        with pytest.raises(InvalidRequest):
            await a.generate("")


async def test_a_stream_left_early_is_cancelled_and_logged() -> None:
    with capture_logs(processors=context_processors()) as logs:
        async with aurea.Embedded(settings(providers=slow_sim(400, 5))) as a:
            async for ev in a.stream("hi"):
                if type(ev) is Delta:
                    break
            for _ in range(200):
                if a.server.tracker.in_flight == 0:
                    break
                await asyncio.sleep(0.01)
            assert a.server.tracker.in_flight == 0
    finished = [e for e in logs if e.get("event") == "rpc_finished"]
    assert [e["status"] for e in finished] == ["CANCELLED"]
    assert finished[0]["rpc"] == "aurea.v1.InferenceService/GenerateStream"


async def test_guarded_retries_what_it_is_told_to_and_charges_the_catalog_price() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("reset by peer")
        return "answer"

    s = settings(retry={"max_retries": 2, "backoff_base_s": 0.001, "backoff_max_s": 0.01})
    with capture_logs(processors=context_processors()) as logs:
        async with aurea.Embedded(s) as a:
            out = await a.guarded(
                flaky, model="sim-small", input_tokens=1000, output_tokens=500, job_id="j1"
            )
    assert out.value == "answer" and calls == 3 and out.attempts == 3
    # sim-small: $0.15 in, $0.60 out per million tokens.
    assert out.cost_nanos == 1000 * 150 + 500 * 600
    assert out.usage == Usage(input_tokens=1000, output_tokens=500, estimated=True)
    line = [e for e in logs if e.get("event") == "rpc_finished"][-1]
    assert line["status"] == "OK" and line["rpc"] == "aurea.Embedded/Guarded"
    assert line["attempts"] == 3 and line["job_id"] == "j1" and line["cost_nanos"] == out.cost_nanos


async def test_guarded_passes_other_errors_through_untouched_and_reads_reported_usage() -> None:
    async def broken() -> str:
        raise ValueError("a bug in the caller's code")

    async def reports() -> dict[str, int]:
        return {"in": 7, "out": 3}

    async with aurea.Embedded(settings()) as a:
        with pytest.raises(ValueError, match="caller's code"):
            await a.guarded(broken, model="sim-small")
        out = await a.guarded(
            reports,
            model="sim-small",
            usage=lambda v: Usage(input_tokens=v["in"], output_tokens=v["out"]),
        )
        assert out.usage.input_tokens == 7 and not out.usage.estimated
        with pytest.raises(InvalidRequest):
            await a.guarded(reports, model="no-such-model")


async def test_guarded_calls_meet_the_servers_guards() -> None:
    called = 0

    async def fn() -> int:
        nonlocal called
        called += 1
        return called

    s = settings(
        routing={"denied_models": ["sim-large"]},
        models={"sim-small": {"provider": "simulated", "rpm": 1}},
        limits={"max_wait_s": 0},
    )
    async with aurea.Embedded(s) as a:
        with pytest.raises(ModelDenied):
            await a.guarded(fn, model="sim-large")
        assert called == 0
        await a.guarded(fn, model="sim-small")
        with pytest.raises(RateLimited):
            await a.guarded(fn, model="sim-small")
        assert called == 1, "a refused attempt never runs the function"


async def test_a_breaker_opened_in_process_refuses_the_http_door() -> None:
    async def down() -> None:
        raise TimeoutError("upstream timed out")

    s = settings(
        retry={"max_retries": 0},
        breaker={"failure_threshold": 2, "open_timeout_s": 60},
    )
    async with aurea.Embedded(s, serve=True) as a:
        for _ in range(2):
            with pytest.raises(aurea.AureaError):
                await a.guarded(down, model="sim-small")
        with pytest.raises(CircuitOpen):
            await a.guarded(down, model="sim-small")
        body = {"model": "sim-small", "messages": [{"role": "user", "content": "x"}]}
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{a.server.http_port}/v1/chat/completions"
            async with http.post(url, json=body) as r:
                assert r.status == 503
                assert (await r.json())["error"]["type"] == "api_error"
        # The other model's breaker is its own.
        assert (await a.generate("x", model="sim-large")).text


async def test_a_stopped_embedded_refuses_and_an_unstarted_one_says_so() -> None:
    a = aurea.Embedded(settings())
    with pytest.raises(RuntimeError, match="not started"):
        await a.generate("x")
    await a.start()
    await a.stop(grace_s=0)
    with pytest.raises(aurea.AureaError):
        await a.generate("x")


README = Path(__file__).resolve().parents[2] / "README.md"


async def test_the_readmes_embedded_example_runs(tmp_path: Path) -> None:
    text = README.read_text()
    found = re.search(r"<!-- example: embedded -->\n```python\n(.*?)```", text, re.S)
    assert found, "README lost its embedded example"
    script = tmp_path / "example.py"
    script.write_text(found.group(1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUREA_")}
    env["AUREA_HOME"] = str(tmp_path)  # where the SQLite stores go
    env["AUREA_HTTP_PORT"] = "0"
    env["AUREA_TELEMETRY_HTTP_PORT"] = "0"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    lines = out.decode().splitlines()
    assert lines[1].startswith("Started ") and lines[1].rstrip().endswith("Final")
    assert lines[2] == "2 vectors"
    # 900 tokens x $0.15 + 200 x $0.60 per million = 135,000 + 120,000 nano-dollars
    assert lines[3] == "an answer 255000 nano-dollars, 1 attempt"
