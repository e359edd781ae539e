"""Redis operations per call (issue 11's capacity model): what one ``Generate`` or
``GenerateStream`` costs the shared Redis, counted by Redis itself, never timed.

A private ``redis-server`` on 127.0.0.1 and two ``aurea serve`` processes with ``[redis] url``,
both started first (so they run the same code): the simulated provider at zero delay, a rate
limit on ``sim-small``, the response cache on (on Redis, like the rest). Each point: a warm-up,
``SLOWLOG RESET`` + ``CONFIG RESETSTAT``, N calls by 32 closed-loop callers spread over 4 job
ids, then a drain (at least 2 s, until a 0.5 s window adds no more than background work: router
folds and blocks given back after 1 s idle are the calls' too), then ``INFO commandstats`` and
``SLOWLOG GET -1``. Points:

- ``generate``: distinct prompts at temperature 0 (every call a cache miss), to the first server;
- ``generate_cache_hits``: 8 prompts answered in the warm-up, asked again (every call a hit);
- ``stream``: ``GenerateStream``, distinct prompts, to the first server;
- ``generate_2_servers``: as ``generate``, the callers split over both servers.

How commands are attributed. ``commandstats`` (and ``total_commands_processed``) count the
commands a script runs as well as the ``EVALSHA`` itself; ``calibration`` in the output checks
that on this server (a script of 3 ``INCR``: 4 commands). The slow log, set to log every command
(``slowlog-log-slower-than 0``), holds each command with its arguments, the ones scripts run
included (client ``?:0``), and those come right before their ``EVALSHA`` (Redis runs one script at
a time): so each ``EVALSHA`` is named by its SHA (redis-py's ``Script.sha`` is the SHA-1 of the
source, mapped here from every Lua source in ``aurea.stores.redis``), given its in-script
commands, and a ledger ``JOB`` script its opcodes (``K`` consume, ``R`` reserve, ``D`` a
numbered batch, ``L`` release, ...; counted up to the slow log's 32 arguments, so a lower
bound). ``slowlog.complete`` says every logged command matched ``commandstats``. The bench's own
commands (client name ``aurea-bench``: INFO, SLOWLOG, CONFIG) are left out. Background work
(ticks, the task queue's polls, the expiry sweep) runs whether calls come or not: ``idle`` is
measured with both servers up and no calls, and ``*_net`` per call subtracts it.

Each point runs twice: ``per_call`` with every command logged, then ``plain`` with the slow log
off, for Redis's own CPU per call (``INFO cpu``) without the logging's cost.

``redis_rate``: ``redis-benchmark`` (when installed) against the same server pinned to one CPU:
``EVALSHA`` of scripts running 1 and as many ``HINCRBY`` as each measured script kind's mean, and
plain ``SET``, each priced in Redis CPU per request. ``capacity_model`` answers issue 11 with
those prices and the ``generate`` point. Reported, never asserted. Prints one JSON object, also
written to ``benchmarks/results/redis_ops.json``.

    python benchmarks/bench_redis_ops.py            # 3000 calls per point, about 2 minutes
    python benchmarks/bench_redis_ops.py --quick    # 600 calls per point, about 1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import hashlib
import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import redis as redis_sync
import uvloop
from _common import (
    RESULTS_DIR,
    Server,
    free_port,
    machine,
    run_main,
    servers_stopped,
    source,
    start_aurea,
    write_result,
)

import aurea.stores.redis
from aurea.testing.redis import RedisServer
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

RESULTS = RESULTS_DIR / "redis_ops.json"
CONCURRENCY = 32
CHANNELS_PER_SERVER = 4
JOBS = 4
MODEL = "sim-small"
TOKENS = 16
HIT_PROMPTS = 8
BENCH_CLIENT = "aurea-bench"
# Commands only this script sends (left out of every per-call figure).
BENCH_COMMANDS = ("info", "config|", "slowlog|", "client|")
CALL_TIMEOUT_S = 10.0
POINT_BUDGET_S = 300.0  # no point's calls run longer than this
DRAIN_MIN_S = 2.0  # after the calls: idle blocks go back after 1 s, limiter leases within 1 s
DRAIN_MAX_S = 30.0
# Fields after each opcode of the ledger's JOB script (see aurea/stores/redis/_ledger_lua.py).
JOB_OP_FIELDS = {"R": 7, "X": 4, "S": 6, "L": 2, "C": 8, "K": 9, "D": 2, "B": 2, "E": 1, "A": 1}
KEY_PREFIX = "bench"  # [redis] key_prefix: a top-level command's area is its key's next part


def aurea_config(port: int, redis_url: str) -> str:
    return f"""\
[server]
host = "127.0.0.1"
port = {port}
grace_s = 0

[log]
level = "warning"
format = "json"

[http]
port = 0

[telemetry]
http_port = 0

[providers.simulated]
kind = "simulated"
max_concurrency = 1000

[providers.simulated.options]
token_delay_ms = 0
first_token_delay_ms = 0
min_tokens = {TOKENS}
max_tokens = {TOKENS}

[models.{MODEL}]
provider = "simulated"
input_usd_per_mtok = "0.15"
output_usd_per_mtok = "0.60"
quality = 0.55
rpm = 6000000
tpm = 1000000000

[redis]
url = "{redis_url}"
key_prefix = "{KEY_PREFIX}"

[cache]
enabled = true

[limits]
max_wait_s = 0
"""


# -- the load ------------------------------------------------------------------------------------


def _request(i: int, prompt: str) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        prompt=prompt, model=MODEL, job_id=f"job-{i % JOBS}", max_tokens=TOKENS, temperature=0.0
    )


async def _calls(
    targets: list[str], n: int, rpc: str, prompt: Callable[[int], str]
) -> dict[str, Any]:
    """``n`` calls by 32 closed-loop callers; caller ``w`` uses server ``w % len(targets)``."""
    channels = {
        t: [
            grpc.aio.insecure_channel(t, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(CHANNELS_PER_SERVER)
        ]
        for t in targets
    }
    stubs = {
        t: [inference_pb2_grpc.InferenceServiceStub(c) for c in cs] for t, cs in channels.items()
    }
    counter = iter(range(n))
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}  # the first error's details per status code
    hits = 0
    done = 0
    deadline = time.monotonic() + POINT_BUDGET_S

    async def caller(w: int) -> None:
        nonlocal hits, done
        stub = stubs[targets[w % len(targets)]][(w // len(targets)) % CHANNELS_PER_SERVER]
        for i in counter:
            if time.monotonic() > deadline:
                return
            request = _request(i, prompt(i))
            try:
                if rpc == "Generate":
                    r = await stub.Generate(request, timeout=CALL_TIMEOUT_S)
                    hit = r.cache_hit
                else:
                    hit = False
                    async for e in stub.GenerateStream(
                        pb.GenerateStreamRequest(request=request), timeout=CALL_TIMEOUT_S
                    ):
                        if e.WhichOneof("event") == "final":
                            hit = e.final.cache_hit
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                examples.setdefault(exc.code().name, (exc.details() or "")[:300])
                continue
            done += 1
            hits += hit

    start = time.monotonic()
    try:
        await asyncio.gather(*(caller(w) for w in range(CONCURRENCY)))
    finally:
        for cs in channels.values():
            for c in cs:
                await c.close()
    seconds = time.monotonic() - start
    return {
        "calls": done,
        "errors": dict(errors),
        "error_examples": examples,
        "cache_hits": hits,
        "seconds": round(seconds, 3),
        "calls_per_s": round(done / seconds, 1) if seconds else None,
    }


def run_calls(targets: list[str], n: int, rpc: str, prompt: Callable[[int], str]) -> dict[str, Any]:
    result: dict[str, Any] = uvloop.run(_calls(targets, n, rpc, prompt))
    return result


# -- counting ------------------------------------------------------------------------------------


def script_names() -> dict[str, str]:
    """SHA-1 -> ``module.NAME`` for every Lua source in ``aurea.stores.redis`` and the cache's
    Redis backend (redis-py's ``Script`` runs ``EVALSHA`` with the SHA-1 of the source), each
    named where it is defined (the ``*_lua`` modules first, then the modules that use them)."""
    stores = pkgutil.iter_modules(aurea.stores.redis.__path__)
    modules = [f"aurea.stores.redis.{info.name}" for info in stores]
    modules.sort(key=lambda m: not m.endswith("_lua"))
    names: dict[str, str] = {}
    for module_name in [*modules, "aurea.cache._redis"]:
        module = importlib.import_module(module_name)
        short = module_name.rpartition(".")[2]
        for name, value in vars(module).items():
            if isinstance(value, str) and "redis.call(" in value:
                names.setdefault(hashlib.sha1(value.encode()).hexdigest(), f"{short}.{name}")
    return names


def _s(value: bytes | int) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _truncated(arg: str) -> bool:
    return arg.startswith("... (") and arg.endswith("more arguments)")


def _script_kind(args: list[str], names: dict[str, str], ops: Counter[str]) -> tuple[str, bool]:
    """The script an ``EVALSHA`` ran (its opcodes counted into ``ops`` for the ledger's JOB),
    and whether the slow log cut its arguments (then some opcodes went uncounted)."""
    name = names.get(args[1].lower(), f"unknown:{args[1][:8]}")
    try:
        argv = args[3 + int(args[2]) :]
    except (ValueError, IndexError):
        return name, True
    cut = any(_truncated(a) for a in argv)
    if name.endswith(".JOB"):
        i = 2  # ARGV: job, retention, then the operations
        while i < len(argv) and not _truncated(argv[i]):
            if argv[i] not in JOB_OP_FIELDS:  # an opcode this script does not know yet
                ops[f"{argv[i][:8]}?"] += 1
                break
            ops[argv[i]] += 1
            i += 1 + JOB_OP_FIELDS[argv[i]]
        return name, cut
    for a in argv[:2]:  # the tasks script names its operation in ARGV[2]
        if a.isalpha() and len(a) <= 16:
            return f"{name}:{a}", cut
    return name, cut


def reset(r: redis_sync.Redis) -> None:
    r.slowlog_reset()
    r.config_resetstat()


def _name(args: list[str], known: dict[str, int]) -> str:
    """A logged command's ``commandstats`` name (``script|exists`` for ``SCRIPT EXISTS``)."""
    cmd = args[0].lower()
    if len(args) > 1 and f"{cmd}|{args[1].lower()}" in known:
        return f"{cmd}|{args[1].lower()}"
    return cmd


def _area(args: list[str]) -> str:
    """What a top-level command works on: the part of its key after the prefix (``led``,
    ``rs``, ``lim``, ``tq``, the cache's ...), or the command itself when it names no key."""
    if len(args) > 1 and args[1].startswith(f"{KEY_PREFIX}:"):
        return args[1].split(":")[1]
    return args[0].lower()


def commands_now(r: redis_sync.Redis) -> dict[str, int]:
    return {
        k.removeprefix("cmdstat_"): int(v["calls"])
        for k, v in r.info("commandstats").items()
        if not k.removeprefix("cmdstat_").startswith(BENCH_COMMANDS)
    }


def snapshot(r: redis_sync.Redis, names: dict[str, str], max_len: int) -> dict[str, Any]:
    """Everything counted since ``reset``, less the bench's own commands."""
    commands = commands_now(r)
    total_processed = int(r.info("stats")["total_commands_processed"])
    entries: list[Any] = r.execute_command("SLOWLOG", "GET", -1)  # type: ignore[no-untyped-call]
    top: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    in_script: Counter[str] = Counter()
    logged: Counter[str] = Counter()
    kinds: dict[str, dict[str, Any]] = {}
    pending: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    cut = 0
    for entry in sorted(entries, key=lambda e: int(e[0])):
        args = [_s(a) for a in entry[3]]
        addr, client = _s(entry[4]), _s(entry[5])
        if client == BENCH_CLIENT or not args:
            continue
        cmd = _name(args, commands)
        logged[cmd] += 1
        if addr in ("?:0", ""):  # run by a script: logged before the script's own entry
            pending[cmd] += 1
            in_script[cmd] += 1
            continue
        top[cmd] += 1
        areas[_area(args)] += 1
        if cmd in ("evalsha", "eval"):
            kind, was_cut = _script_kind(args, names, ops)
            cut += was_cut
            k = kinds.setdefault(kind, {"scripts": 0, "in_script": Counter()})
            k["scripts"] += 1
            k["in_script"].update(pending)
            pending.clear()
    counted = Counter({c: n for c, n in commands.items() if c != "exec"})  # EXEC is not logged
    diff = {c: logged[c] - counted[c] for c in logged | counted if logged[c] != counted[c]}
    return {
        "commands": commands,
        "total_commands_processed": total_processed,
        "slowlog": {
            "entries": len(entries),
            "complete": len(entries) < max_len and not diff,
            "logged_minus_commandstats": diff,
            "job_scripts_with_cut_arguments": cut,
        },
        "top_level": dict(top),
        "top_level_by_area": dict(areas),
        "in_script": dict(in_script),
        "kinds": kinds,
        "job_ops": dict(ops),
    }


def per_call(
    snap: dict[str, Any], calls: int, seconds: float, idle: dict[str, Any] | None
) -> dict[str, Any]:
    def pc(x: float) -> float:
        return round(x / calls, 3) if calls else 0.0

    commands = snap["commands"]
    total = sum(commands.values())
    scripts = commands.get("evalsha", 0) + commands.get("eval", 0)
    out: dict[str, Any] = {
        "commands": pc(total),
        "top_level_commands": pc(sum(snap["top_level"].values()) + commands.get("exec", 0)),
        "in_script_commands": pc(sum(snap["in_script"].values())),
        "scripts": pc(scripts),
        "multi_exec": pc(commands.get("exec", 0)),
        "script_exists": pc(commands.get("script|exists", 0)),
        "scripts_by_kind": {
            kind: {
                "per_call": pc(k["scripts"]),
                "in_script_commands_per_script": round(
                    sum(k["in_script"].values()) / k["scripts"], 2
                ),
                "in_script_top": dict(k["in_script"].most_common(6)),
            }
            for kind, k in sorted(snap["kinds"].items(), key=lambda kv: -kv[1]["scripts"])
        },
        "top_level_by_area": {
            a: pc(n) for a, n in Counter(snap["top_level_by_area"]).most_common()
        },
        "ledger_job_ops_seen": {op: pc(n) for op, n in sorted(snap["job_ops"].items())},
        "top_commands": {c: pc(n) for c, n in Counter(commands).most_common(12)},
    }
    if idle is not None:
        out["commands_net"] = pc(max(0.0, total - idle["commands_per_s"] * seconds))
        out["scripts_net"] = pc(max(0.0, scripts - idle["scripts_per_s"] * seconds))
    return out


def quiet(r: redis_sync.Redis, idle: dict[str, Any] | None, at_least_s: float) -> float:
    """Wait ``at_least_s``, then until a 0.5 s window adds no more than background work (3x
    the idle rate, or 40 commands before that is known), at most ``DRAIN_MAX_S``: what calls
    left for later (router-stat folds, blocks given back after 1 s idle) has reached Redis.
    Returns the seconds waited."""
    start = time.monotonic()
    time.sleep(at_least_s)
    limit = 40.0 if idle is None else max(10.0, 3 * idle["commands_per_s"] * 0.5)
    before = sum(commands_now(r).values())
    while time.monotonic() - start < DRAIN_MAX_S:
        time.sleep(0.5)
        now = sum(commands_now(r).values())
        if now - before <= limit:
            break
        before = now
    return time.monotonic() - start


def calibration(r: redis_sync.Redis) -> dict[str, Any]:
    """Does ``commandstats`` count the commands a script runs? (A script of 3 INCR.)"""
    script = r.register_script("for i = 1, 3 do redis.call('INCR', KEYS[1]) end return 1")
    script(keys=["bench-calibration"])  # loaded before the counts start
    r.config_resetstat()
    script(keys=["bench-calibration"])
    stats = r.info("commandstats")
    incr = int(stats.get("cmdstat_incr", {}).get("calls", 0))
    return {
        "script": "3 x INCR",
        "evalsha_calls": int(stats.get("cmdstat_evalsha", {}).get("calls", 0)),
        "incr_calls": incr,
        "commandstats_counts_in_script_commands": incr == 3,
    }


def redis_cpu_s(r: redis_sync.Redis) -> float:
    """The Redis server's user + system CPU so far (all its threads), from ``INFO cpu``."""
    cpu = r.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def idle_rate(
    r: redis_sync.Redis, names: dict[str, str], seconds: float, max_len: int
) -> dict[str, Any]:
    reset(r)
    cpu0 = redis_cpu_s(r)
    time.sleep(seconds)
    cpu = redis_cpu_s(r) - cpu0
    snap = snapshot(r, names, max_len)
    total = sum(snap["commands"].values())
    scripts = snap["commands"].get("evalsha", 0)
    return {
        "seconds": seconds,
        "commands_per_s": round(total / seconds, 1),
        "scripts_per_s": round(scripts / seconds, 1),
        "redis_cpu_ms_per_s": round(cpu / seconds * 1e3, 2),
        "commands": snap["commands"],
        "scripts_by_kind": {k: v["scripts"] for k, v in snap["kinds"].items()},
    }


# -- Redis's own rate ----------------------------------------------------------------------------


def redis_rate(
    r: redis_sync.Redis, port: int, in_script: list[int], requests: int
) -> dict[str, Any]:
    """``redis-benchmark`` against this server pinned to one CPU (the benchmark on another when
    there is one), 32 connections, no pipelining: ``EVALSHA`` of a script running ``k``
    ``HINCRBY`` for each ``k`` in ``in_script`` (and 1), and plain ``SET``. Each run's rate is
    divided by the CPU the server used over it (``INFO cpu``): Redis CPU per request, which a
    shared machine disturbs far less than the rate itself. A least-squares line over the script
    sizes gives a script's cost (``script_base_us``) and each command's in it
    (``in_script_command_us``)."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {"measured": False, "note": "redis-benchmark is not installed"}
    pid = int(r.info("server")["process_id"])
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = cpus[0], cpus[1 % len(cpus)]
    before = os.sched_getaffinity(pid)
    os.sched_setaffinity(pid, {server_cpu})
    sha = r.script_load(
        "for i = 1, tonumber(ARGV[1]) do redis.call('HINCRBY', KEYS[1], 'f' .. i, 1) end return 1"
    )
    base = [binary, "-h", "127.0.0.1", "-p", str(port), "-c", "32", "-n", str(requests)]
    base += ["-r", "1000", "--csv"]
    taskset = ["taskset", "-c", str(client_cpu)] if shutil.which("taskset") else []

    def run(*cmd: str) -> dict[str, float]:
        cpu0, t0 = redis_cpu_s(r), time.monotonic()
        done = subprocess.run(
            [*taskset, *base, *cmd], capture_output=True, text=True, timeout=300, check=True
        )
        seconds, cpu = time.monotonic() - t0, redis_cpu_s(r) - cpu0
        rows = list(csv.reader(done.stdout.strip().splitlines()))
        rate = float(rows[-1][1])
        return {
            "per_s": round(rate),
            "server_cpu_busy": round(cpu / seconds, 3),
            "cpu_us_per_request": round(cpu / (rate * seconds) * 1e6, 2),
        }

    out: dict[str, Any] = {
        "measured": True,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu if taskset else None,
        "requests": requests,
        "connections": 32,
        "scripts": {},
    }
    try:
        for k in sorted({1, *in_script}):
            key = "bench:rate:{__rand_int__}"
            out["scripts"][str(k)] = run("EVALSHA", sha, "1", key, str(k))
        out["set"] = run("SET", "bench:set:__rand_int__", "x")
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, before)
    xs = [int(k) for k in out["scripts"]]
    ys = [v["cpu_us_per_request"] for v in out["scripts"].values()]
    if len(xs) > 1:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
        out["in_script_command_us"] = round(slope, 3)
        out["script_base_us"] = round(my - slope * mx, 2)
    return out


# -- the run -------------------------------------------------------------------------------------


def capacity_model(points: dict[str, Any], rate: dict[str, Any]) -> dict[str, Any]:
    """Issue 11's question: 100 replicas at 1 000 calls/s each (100 000 calls/s), from the
    ``generate`` point (cache misses): commands and scripts per second; Redis cores, once by
    the CPU Redis used per call in this run (requests arrive one at a time at this load: an
    upper bound), once priced at ``redis-benchmark``'s saturated costs (each top-level command
    a SET, each script its base plus its commands); and the ceilings of one hot job (its
    ledger scripts stay on its shard) and one hot model (its router-stat folds and limiter
    scripts stay on the model's)."""
    calls_per_s = 100_000
    counted, plain = points["generate"]["per_call"], points["generate"]["plain"]
    out: dict[str, Any] = {
        "replicas": 100,
        "calls_per_s": calls_per_s,
        "commands_per_s": round(plain.get("commands_net", plain["commands"]) * calls_per_s),
        "scripts_per_s": round(plain.get("scripts_net", plain["scripts"]) * calls_per_s),
    }
    cpu_us = plain.get("redis_cpu_us_net", plain["redis_cpu_us"])
    out["measured_redis_cpu_us_per_call"] = cpu_us
    out["cores_by_measured_cpu"] = round(cpu_us * calls_per_s / 1e6, 1)
    if "in_script_command_us" not in rate:
        return out
    base_us, cmd_us, set_us = (
        rate["script_base_us"],
        rate["in_script_command_us"],
        rate["set"]["cpu_us_per_request"],
    )
    kinds = counted["scripts_by_kind"]

    def script_us(names: list[str]) -> float:
        return float(
            sum(
                kinds[n]["per_call"]
                * (base_us + cmd_us * kinds[n]["in_script_commands_per_script"])
                for n in names
                if n in kinds
            )
        )

    plain_commands = counted["top_level_commands"] - counted["scripts"]
    saturated_us = plain_commands * set_us + script_us(list(kinds))
    out["saturated_redis_cpu_us_per_call"] = round(saturated_us, 1)
    out["cores_at_saturated_cost"] = round(saturated_us * calls_per_s / 1e6, 1)
    job_us = script_us(["_ledger_lua.JOB"])
    model_us = script_us(["router_stats._RECORD", "limiter._ACQUIRE", "limiter._REFUND"])
    out["hot_job_calls_per_s"] = round(1e6 / job_us) if job_us else None
    out["hot_model_calls_per_s"] = round(1e6 / model_us) if model_us else None
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--calls", type=int, default=3000, help="measured calls per point")
    p.add_argument("--warmup-calls", type=int, default=200)
    p.add_argument("--idle-s", type=float, default=3.0, help="seconds of the idle window")
    p.add_argument("--rate-requests", type=int, default=20_000, help="redis-benchmark -n")
    p.add_argument("--quick", action="store_true", help="600 calls per point")
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args()
    if args.quick:
        args.calls, args.warmup_calls, args.idle_s, args.rate_requests = 600, 100, 2.0, 5_000
    n = max(1, min(args.calls, 100_000))
    max_len = 60 * n + 20_000  # slow-log entries kept: every command of a point, with room
    names = script_names()
    points: dict[str, dict[str, Any]] = {}
    idle: dict[str, Any] = {}  # background work with both servers up and no calls
    started: list[Server] = []
    with (
        tempfile.TemporaryDirectory(prefix="aurea-bench-redis-ops-") as tmp,
        RedisServer.start() as redis_server,
    ):
        r = redis_sync.Redis(host="127.0.0.1", port=redis_server.port, client_name=BENCH_CLIENT)
        calib = calibration(r)
        r.config_set("slowlog-max-len", max_len)
        workdir = Path(tmp)

        def window(
            targets: list[str], rpc: str, prompt: Callable[[int], str]
        ) -> tuple[dict[str, Any], dict[str, Any], float, float, int]:
            """One measured pass: the calls, then until what they left for later is done."""
            quiet(r, idle or None, 0.0)  # the warm-up's tail is not counted
            reset(r)
            cpu0, start = redis_cpu_s(r), time.monotonic()
            load = run_calls(targets, n, rpc, prompt)
            at_end = sum(commands_now(r).values())
            load["drain_s"] = round(quiet(r, idle or None, DRAIN_MIN_S), 2)
            window_s = time.monotonic() - start
            cpu_s = redis_cpu_s(r) - cpu0
            snap = snapshot(r, names, max_len)
            return load, snap, window_s, cpu_s, at_end

        def measure(
            name: str,
            targets: list[str],
            rpc: str,
            prompt: Callable[[int], str],
            *,
            hits: bool = False,
        ) -> None:
            """Two passes: every command logged (to name each script and its commands), then
            the slow log off (Redis's CPU per call without the logging's cost)."""
            r.config_set("slowlog-log-slower-than", 0)
            load, snap, window_s, _, at_end = window(targets, rpc, prompt)
            r.config_set("slowlog-log-slower-than", -1)
            load2, snap2, window2_s, cpu_s, _ = window(
                targets, rpc, prompt if hits else lambda i: f"plain {prompt(i)}"
            )
            calls, calls2 = load["calls"], load2["calls"]
            base = idle or None
            plain = per_call(snap2, calls2, window2_s, base)
            plain = {
                k: plain[k]
                for k in ("commands", "commands_net", "scripts", "scripts_net", "multi_exec")
                if k in plain
            }
            plain["redis_cpu_us"] = round(cpu_s / calls2 * 1e6, 1) if calls2 else None
            if base is not None and calls2:
                net = cpu_s - base["redis_cpu_ms_per_s"] / 1e3 * window2_s
                plain["redis_cpu_us_net"] = round(max(0.0, net) / calls2 * 1e6, 1)
            plain["calls"], plain["errors"], plain["cache_hits"] = (
                calls2,
                load2["errors"],
                load2["cache_hits"],
            )
            plain["calls_per_s"] = load2["calls_per_s"]
            points[name] = {
                "rpc": rpc,
                "servers": len(targets),
                **load,
                "window_s": round(window_s, 2),
                "commands_per_call_at_load_end": round(at_end / calls, 3) if calls else None,
                "per_call": per_call(snap, calls, window_s, base),
                "slowlog": snap["slowlog"],
                "total_commands_processed": snap["total_commands_processed"],
                "plain": plain,
            }
            pc = points[name]["per_call"]
            print(
                f"{name:20} {calls:>6} calls {load['calls_per_s']:>7}/s  "
                f"{pc['commands']:6.2f} cmd/call ({pc.get('commands_net', 0):.2f} net; "
                f"{plain['commands']:.2f} unlogged)  {pc['scripts']:5.2f} scripts/call  "
                f"{pc['multi_exec']:5.2f} MULTI/call  Redis CPU {plain['redis_cpu_us']} us/call",
                file=sys.stderr,
            )

        with servers_stopped(started):
            # Both servers from the start: the same code (the tree may change during a run),
            # and the same background work in every point.
            for name in ("aurea-a", "aurea-b"):
                port = free_port()
                config = aurea_config(port, redis_server.url)
                started.append(start_aurea(workdir, name, config, port, None))
            a, b = started[0].target, started[1].target

            def hit_prompt(i: int) -> str:
                return f"bench hit {i % HIT_PROMPTS}"

            run_calls([a, b], args.warmup_calls, "Generate", lambda i: f"warm a {i}")
            run_calls([a], max(args.warmup_calls, HIT_PROMPTS), "Generate", hit_prompt)
            run_calls([a], args.warmup_calls // 4, "GenerateStream", lambda i: f"warm s {i}")
            r.config_set("slowlog-log-slower-than", 0)
            quiet(r, None, DRAIN_MIN_S)
            idle.update(idle_rate(r, names, args.idle_s, max_len))
            run_calls([a], args.warmup_calls, "Generate", lambda i: f"warm b {i}")
            measure("generate", [a], "Generate", lambda i: f"bench miss {i}")
            measure("generate_cache_hits", [a], "Generate", hit_prompt, hits=True)
            measure("stream", [a], "GenerateStream", lambda i: f"bench stream {i}")
            measure("generate_2_servers", [a, b], "Generate", lambda i: f"bench two {i}")

        r.config_set("slowlog-log-slower-than", -1)
        r.slowlog_reset()
        kinds = points["generate"]["per_call"]["scripts_by_kind"]
        sizes = [max(1, round(k["in_script_commands_per_script"])) for k in kinds.values()]
        rate = redis_rate(r, redis_server.port, sizes, args.rate_requests)
        r.close()

    out: dict[str, Any] = {
        "config": {
            "calls_per_point": n,
            "warmup_calls": args.warmup_calls,
            "concurrency": CONCURRENCY,
            "channels_per_server": CHANNELS_PER_SERVER,
            "jobs": JOBS,
            "model": MODEL,
            "tokens": TOKENS,
            "limits": "sim-small rpm 6000000, tpm 1000000000",
            "cache": "on; misses: distinct prompts at temperature 0; hits: 8 prompts asked again",
            "provider": "simulated, zero delay",
        },
        "calibration": calib,
        "idle": idle,
        "points": points,
        "redis_rate": rate,
        "capacity_model": capacity_model(points, rate),
        "machine": machine(),
        "source": source(),
    }
    write_result(args.output, out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
