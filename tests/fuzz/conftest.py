"""The fuzz harness: one Aurea server per module, run on its own event loop in a thread (so
hypothesis drives it from plain synchronous tests), and a tally of every status the fuzzer
received, printed at the end of the pytest run.

``AUREA_FUZZ_EXAMPLES`` sets the examples per target (default 150, the bounded CI run);
``AUREA_FUZZ_SEED=random`` draws fresh inputs each run instead of the fixed, derandomized ones.
A longer run: ``AUREA_FUZZ_EXAMPLES=5000 AUREA_FUZZ_SEED=random python -m pytest -q tests/fuzz``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from aurea.server import AureaServer
from aurea.testing import test_settings as make_settings

EXAMPLES = int(os.environ.get("AUREA_FUZZ_EXAMPLES", "150"))
FIXED = os.environ.get("AUREA_FUZZ_SEED", "") != "random"

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=FIXED,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

# target -> status -> count, for the report at the end of the run
TALLY: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY:
        return
    tr = terminalreporter
    tr.section(f"fuzz: statuses per target ({EXAMPLES} examples each)")
    for target in sorted(TALLY):
        counts = TALLY[target]
        total = sum(counts.values())
        line = ", ".join(f"{status} {n}" for status, n in counts.most_common())
        tr.write_line(f"{target}: {total} calls: {line}")


@dataclass
class Served:
    server: AureaServer
    loop: asyncio.AbstractEventLoop

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def quiet(self) -> dict[str, int]:
        """In-flight calls and the loop's live tasks, once calls settle (bounded wait)."""

        async def settle() -> dict[str, int]:
            for _ in range(200):
                if self.server.tracker.in_flight == 0:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            return {
                "in_flight": self.server.tracker.in_flight,
                "tasks": len(asyncio.all_tasks()),
            }

        result: dict[str, int] = self.run(settle())
        return result


FUZZ_SERVER = {
    "ledger": {"store": "memory"},
    "routing": {"stats_store": "memory"},
    "tasks": {"store": "memory"},
    # Nothing may be provisioned: a fuzzed Provision must never start a process.
    "infra": {"store": "memory", "max_resources": 0},
    "input": {"max_request_bytes": 1 << 20},
}


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fuzz-server", daemon=True)
    thread.start()
    ready.wait(10)
    server = AureaServer(make_settings(FUZZ_SERVER))
    out = Served(server, loop)
    out.run(server.start())
    try:
        yield out
    finally:
        out.run(server.stop(grace_s=0))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
