"""Aurea in front of a real HTTP upstream, against calling that upstream directly.

In one run, every party in its own process on 127.0.0.1:

* the **upstream** (``_fake_openai_upstream.py``): an OpenAI-compatible server answering
  ``POST /v1/chat/completions`` with 32 content chunks + a usage chunk + ``data: [DONE]``
  (SSE) or one JSON object, at zero delay;
* **Aurea**: ``aurea serve`` with an ``openai``-kind provider ``up`` whose ``base_url`` is that
  upstream and a model ``up-model`` (upstream id ``fake``);
* the **load generator** (``_loadgen.py``): C closed-loop workers calling either the upstream
  **directly** (aiohttp: the SSE stream read to ``[DONE]``, or ``"stream": false``), **through
  Aurea's gRPC door** (``GenerateStream`` / ``Generate`` for ``up-model``), or **through Aurea's
  HTTP door** (the same OpenAI-shaped requests as the direct party, sent to Aurea's
  ``/v1/chat/completions`` for ``up-model``).

For each RPC and concurrency the three runs go back to back (the order alternates by round) and
each metric is the median over rounds. It reports, for each door, Aurea's added p50 and added
time to first token (first ``delta`` event, or first content chunk, vs the direct first content
chunk), the rps, and Aurea's server CPU per call; targets (reported, never asserted): Aurea adds
<= 1 ms p50 and <= 1 ms TTFT at concurrency 1. ``added`` is the gRPC door's (as before),
``http_door.added`` the HTTP door's. Prints one JSON object, also written to
``benchmarks/results/upstream.json``.

    python benchmarks/bench_upstream.py --quick        # 1 round of 1 s runs, about 20 s
    python benchmarks/bench_upstream.py                # 3 rounds, about 1 minute

``bench_inference.py`` runs this point too, after the simulated one (``--points``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from _common import (
    HERE,
    RESULTS_DIR,
    Server,
    busy_cpu_seconds,
    cpu_seconds,
    free_port,
    machine,
    max_rss_mib,
    median_of,
    noise,
    run_loadgen,
    run_main,
    servers_stopped,
    source,
    start_aurea,
    start_ready,
    write_result,
)

from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

RESULTS = RESULTS_DIR / "upstream.json"
RPCS = ("Generate", "GenerateStream")
PARTIES = ("direct", "aurea", "http")  # aurea: the gRPC door; http: the OpenAI-compatible door
PROMPT = "Benchmark prompt: say something steady."
MODEL = "up-model"  # Aurea's catalog name
UPSTREAM_MODEL = "fake"  # the id Aurea sends upstream, and the direct client too
KEY_ENV = "BENCH_UPSTREAM_KEY"
TARGET_C1_ADDED_P50_MS_MAX = 1.0
TARGET_C1_ADDED_TTFT_P50_MS_MAX = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What to measure; ``bench_inference.py`` builds one from its own flags."""

    duration_s: float = 1.5
    warmup_s: float = 0.3
    rounds: int = 3
    concurrency: tuple[int, ...] = (1, 16)
    rpcs: tuple[str, ...] = RPCS
    chunks: int = 32
    chunk_delay_ms: float = 0.0
    server_cpu: int | None = None  # Aurea
    upstream_cpu: int | None = None
    client_cpu: int | None = None
    log_level: str = "warning"
    ledger_store: str = "sqlite"  # the default: every attempt reserves and settles durably


def aurea_config(
    port: int,
    upstream_port: int,
    level: str,
    http_port: int = 0,
    ledger_store: str = "sqlite",
    ledger_path: str = "",
) -> str:
    return f"""\
[ledger]
store = "{ledger_store}"
sqlite_path = "{ledger_path}"

[server]
host = "127.0.0.1"
port = {port}
grace_s = 0

[http]
port = {http_port}

[log]
level = "{level}"
format = "json"

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:{upstream_port}/v1"
api_key_env = "{KEY_ENV}"
max_concurrency = 64

[models.{MODEL}]
provider = "up"
upstream = "{UPSTREAM_MODEL}"
input_usd_per_mtok = "0.15"
output_usd_per_mtok = "0.60"
"""


def start_upstream(workdir: Path, plan: Plan, env: dict[str, str]) -> Server:
    log_path = workdir / "upstream.log"
    cmd = [
        sys.executable,
        str(HERE / "_fake_openai_upstream.py"),
        "--chunks", str(plan.chunks),
        "--chunk-delay-ms", str(plan.chunk_delay_ms),
        "--api-key-env", KEY_ENV,
    ]  # fmt: skip
    return start_ready(cmd, "fake upstream", log_path, plan.upstream_cpu, env=env)


def upstream_requests(upstream: Server) -> int:
    with urllib.request.urlopen(f"http://{upstream.target}/_bench/stats", timeout=10) as r:
        count: int = json.load(r)["requests"]
        return count


def check_wire(upstream: Server, key: str, chunks: int) -> str:
    """One direct SSE call, checked against OpenAI's stream shape; returns the answer's text."""
    body = {
        "model": UPSTREAM_MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    req = urllib.request.Request(
        f"http://{upstream.target}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read().decode()
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    if events[-1] != "[DONE]":
        raise RuntimeError(f"the upstream stream does not end in [DONE]: {events[-1]!r}")
    parsed = [json.loads(e) for e in events[:-1]]
    texts = [c["choices"][0]["delta"].get("content") for c in parsed if c["choices"]]
    content = [t for t in texts if t]
    finish = [c["choices"][0]["finish_reason"] for c in parsed if c["choices"]]
    usage = parsed[-1]
    if len(content) != chunks or finish[-1] != "stop" or usage["choices"] or not usage["usage"]:
        raise RuntimeError(f"unexpected upstream stream shape: {events}")
    return "".join(content)


def check_http_door(http_port: int, expected: str) -> None:
    """One streamed chat completion through Aurea's HTTP door: the upstream's text must come
    back, in OpenAI's stream shape, ending in ``[DONE]``."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    req = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read().decode()
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e]
    parsed = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed if c["choices"])
    if events[-1] != "[DONE]" or text != expected or not parsed[-1].get("usage"):
        raise RuntimeError(f"the HTTP door did not relay the upstream's answer: {events[-3:]}")


def check_aurea(aurea: Server, expected: str) -> dict[str, Any]:
    """One Generate and one GenerateStream through Aurea: the upstream's text must come back."""
    with grpc.insecure_channel(aurea.target) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)
        response = stub.Generate(pb.GenerateRequest(prompt=PROMPT, model=MODEL), timeout=10)
        events = list(
            stub.GenerateStream(
                pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt=PROMPT, model=MODEL)),
                timeout=10,
            )
        )
    kinds = [e.WhichOneof("event") for e in events]
    streamed = "".join(e.delta.text for e in events if e.WhichOneof("event") == "delta")
    if response.text != expected or streamed != expected or kinds[-1:] != ["final"]:
        raise RuntimeError(
            f"Aurea did not relay the upstream's answer: {response.text!r} / {streamed!r} ({kinds})"
        )
    return {
        "stream_events": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
        "output_tokens": response.usage.output_tokens,
        "provider": response.provider,
    }


def load(
    party: str,
    rpc: str,
    concurrency: int,
    plan: Plan,
    aurea: Server,
    upstream: Server,
    env: dict[str, str],
    http_port: int = 0,
) -> dict[str, Any]:
    """One load-generator run, direct or through one of Aurea's doors, with every process's CPU
    per call."""
    if party == "direct":
        where = ["--direct-url", f"http://{upstream.target}/v1", "--api-key-env", KEY_ENV]
        where += ["--upstream-model", UPSTREAM_MODEL]
    elif party == "http":  # the same client code as the direct party, pointed at Aurea's door
        where = ["--direct-url", f"http://127.0.0.1:{http_port}/v1"]
        where += ["--upstream-model", MODEL]
    else:
        where = ["--target", aurea.target, "--model", MODEL]
    args = [
        *where,
        "--rpc", rpc,
        "--concurrency", str(concurrency),
        "--duration", str(plan.duration_s),
        "--warmup", str(plan.warmup_s),
        "--prompt", PROMPT,
    ]  # fmt: skip
    requests0 = upstream_requests(upstream)
    a0, u0 = cpu_seconds(aurea.proc.pid), cpu_seconds(upstream.proc.pid)
    busy0, wall0 = busy_cpu_seconds(), time.monotonic()
    result = run_loadgen(
        args,
        budget_s=plan.warmup_s + plan.duration_s + 30,
        cpu=plan.client_cpu,
        describe=f"{party} {rpc} c{concurrency}",
        log_tail=f"aurea log:\n{aurea.log_tail()}\nupstream log:\n{upstream.log_tail()}",
        env=env,
    )
    a1, u1 = cpu_seconds(aurea.proc.pid), cpu_seconds(upstream.proc.pid)
    busy1, wall1 = busy_cpu_seconds(), time.monotonic()
    requests1 = upstream_requests(upstream)
    total = max(int(result.pop("calls_total")), 1)
    client_s = float(result.pop("client_cpu_s_total"))
    for key in ("rpc", "concurrency", "duration_s"):
        result.pop(key)
    for q in ("p50", "p90", "p99"):
        if f"ttfd_{q}_ms" in result:
            result[f"ttft_{q}_ms"] = result.pop(f"ttfd_{q}_ms")
    # CPU over warm-up and tail too, so divide by every call made, not just the measured ones.
    if party != "direct":
        result["server_cpu_ms_per_call"] = round((a1 - a0) * 1e3 / total, 3)
        # More than 1.0 would mean hidden retries.
        result["upstream_requests_per_call"] = round((requests1 - requests0) / total, 3)
    result["upstream_cpu_ms_per_call"] = round((u1 - u0) * 1e3 / total, 3)
    foreign = (busy1 - busy0) - (a1 - a0) - (u1 - u0) - client_s
    result["foreign_cpu_pct"] = round(max(0.0, foreign) / (wall1 - wall0) * 100, 1)
    if result["errors"]:
        print(f"warning: {party} {rpc} c{concurrency} errors: {result['errors']}", file=sys.stderr)
    return result


def added(direct: dict[str, Any], aurea: dict[str, Any]) -> dict[str, Any]:
    """What Aurea adds over the direct call, per concurrency."""
    out: dict[str, Any] = {}
    for c, a in aurea.items():
        d = direct.get(c)
        if not d:
            continue
        row: dict[str, Any] = {
            f"added_{q}_ms": round(a[f"{q}_ms"] - d[f"{q}_ms"], 3) for q in ("p50", "p90", "p99")
        }
        if "ttft_p50_ms" in a and "ttft_p50_ms" in d:
            row["added_ttft_p50_ms"] = round(a["ttft_p50_ms"] - d["ttft_p50_ms"], 3)
        row["rps_ratio"] = round(a["rps"] / d["rps"], 3) if d["rps"] else None
        row["server_cpu_ms_per_call"] = a.get("server_cpu_ms_per_call")
        out[c] = row
    return out


def targets(added_by_rpc: dict[str, dict[str, Any]]) -> dict[str, Any]:
    met: dict[str, dict[str, bool | None]] = {}
    for rpc, by_c in added_by_rpc.items():
        c1 = by_c.get("c1", {})
        p50 = c1.get("added_p50_ms")
        row: dict[str, bool | None] = {
            "c1_added_p50_ms": None if p50 is None else p50 <= TARGET_C1_ADDED_P50_MS_MAX
        }
        if rpc == "GenerateStream":
            ttft = c1.get("added_ttft_p50_ms")
            row["c1_added_ttft_p50_ms"] = (
                None if ttft is None else ttft <= TARGET_C1_ADDED_TTFT_P50_MS_MAX
            )
        met[rpc] = row
    return {
        "c1_added_p50_ms_max": TARGET_C1_ADDED_P50_MS_MAX,
        "c1_added_ttft_p50_ms_max": TARGET_C1_ADDED_TTFT_P50_MS_MAX,
        "met": met,
    }


def run_point(plan: Plan, workdir: Path) -> dict[str, Any]:
    """Start the upstream and Aurea, measure, stop both; the point's JSON section."""
    key = f"sk-bench-{secrets.token_hex(12)}"
    env = {**os.environ, KEY_ENV: key}
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    started: list[Server] = []
    with servers_stopped(started):
        upstream = start_upstream(workdir, plan, env)
        started.append(upstream)
        expected = check_wire(upstream, key, plan.chunks)
        port, http_port = free_port(), free_port()
        config = aurea_config(
            port,
            upstream.port,
            plan.log_level,
            http_port,
            plan.ledger_store,
            str(workdir / "ledger.db"),  # never the user's own ledger
        )
        aurea = start_aurea(workdir, "aurea-upstream", config, port, plan.server_cpu, env)
        started.append(aurea)
        shape = check_aurea(aurea, expected)
        check_http_door(http_port, expected)
        for i in range(plan.rounds):
            for rpc in plan.rpcs:
                for c in plan.concurrency:
                    # Back to back, so both see the same machine; alternate who goes first.
                    for party in PARTIES if i % 2 == 0 else PARTIES[::-1]:
                        r = load(party, rpc, c, plan, aurea, upstream, env, http_port)
                        runs.setdefault((party, rpc, c), []).append(r)
                        ttft = f"  ttft {r['ttft_p50_ms']:7.3f} ms" if "ttft_p50_ms" in r else ""
                        print(
                            f"{party:6} {rpc:14} c{c:<3} {r['rps']:>8.1f} rps  "
                            f"p50 {r['p50_ms']:7.3f} ms{ttft}  "
                            f"foreign cpu {r['foreign_cpu_pct']:5.1f}%",
                            file=sys.stderr,
                        )
        rss = {"aurea": max_rss_mib(aurea.proc.pid), "upstream": max_rss_mib(upstream.proc.pid)}
    results: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in PARTIES}
    for (party, rpc, c), rs in runs.items():
        results[party].setdefault(rpc, {})[f"c{c}"] = median_of(rs)
    added_by_rpc = {
        rpc: added(results["direct"].get(rpc, {}), results["aurea"].get(rpc, {}))
        for rpc in plan.rpcs
    }
    added_http = {
        rpc: added(results["direct"].get(rpc, {}), results["http"].get(rpc, {}))
        for rpc in plan.rpcs
    }
    return {
        "config": {
            "duration_s": plan.duration_s,
            "warmup_s": plan.warmup_s,
            "rounds": plan.rounds,
            "concurrency": list(plan.concurrency),
            "prompt_chars": len(PROMPT),
            "upstream_chunks": plan.chunks,
            "upstream_chunk_delay_ms": plan.chunk_delay_ms,
            "upstream_server": "raw asyncio.Protocol on uvloop (_fake_openai_upstream.py)",
            "model": MODEL,
            "aurea_log_level": plan.log_level,
            "aurea_ledger_store": plan.ledger_store,
            "aurea_stream_events": shape["stream_events"],
            "answer_tokens": shape["output_tokens"],
            "server_cpu": plan.server_cpu,
            "upstream_cpu": plan.upstream_cpu,
            "client_cpu": plan.client_cpu,
        },
        "results": results,
        "added": added_by_rpc,
        "targets": targets(added_by_rpc),
        "http_door": {"added": added_http, "targets": targets(added_http)},
        "max_rss_mib": rss,
        "noise": noise([r["foreign_cpu_pct"] for rs in runs.values() for r in rs]),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Aurea in front of a fake OpenAI upstream vs calling it directly.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=1.5, help="measured seconds per run (1.5)")
    p.add_argument("--warmup", type=float, default=0.3, help="unmeasured seconds first (0.3)")
    p.add_argument("--concurrency", default="1,16", help="comma-separated (1,16)")
    p.add_argument("--rpc", action="append", choices=RPCS, help="repeatable (default: both)")
    p.add_argument("--rounds", type=int, default=3, help="runs per point; medians (3)")
    p.add_argument("--quick", action="store_true", help="one round of 1 s runs")
    p.add_argument("--chunks", type=int, default=32, help="content chunks per answer (32)")
    p.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="upstream pause between events (0)"
    )
    p.add_argument("--server-cpu", type=int, default=None, help="pin Aurea to this CPU")
    p.add_argument("--upstream-cpu", type=int, default=None, help="pin the upstream to this CPU")
    p.add_argument("--client-cpu", type=int, default=None, help="pin the load generator")
    p.add_argument(
        "--ledger-store",
        choices=("sqlite", "memory"),
        default="sqlite",
        help="Aurea's [ledger] store (sqlite, the default)",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 1.0, 0.3, 1
    return args


def plan_from(args: argparse.Namespace) -> Plan:
    return Plan(
        duration_s=args.duration,
        warmup_s=args.warmup,
        rounds=max(1, args.rounds),
        concurrency=tuple(int(c) for c in args.concurrency.split(",") if c.strip()),
        rpcs=tuple(args.rpc or RPCS),
        chunks=args.chunks,
        chunk_delay_ms=args.chunk_delay_ms,
        server_cpu=args.server_cpu,
        upstream_cpu=args.upstream_cpu,
        client_cpu=args.client_cpu,
        ledger_store=args.ledger_store,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.monotonic()
    out: dict[str, Any] = {"machine": machine(), "source": source()}
    with tempfile.TemporaryDirectory(prefix="aurea-bench-up-") as tmp:
        out.update(run_point(plan_from(args), Path(tmp)))
    out["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    out["wall_s"] = round(time.monotonic() - t0, 1)
    write_result(args.output, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
