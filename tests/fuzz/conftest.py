"""The fuzz harness: one Aurea server per module, run on its own event loop in a thread (so
hypothesis drives it from plain synchronous tests), and a tally of every status the fuzzer
received, printed at the end of the pytest run.

``AUREA_FUZZ_EXAMPLES`` sets the examples per target (default 150, the bounded CI run);
``AUREA_FUZZ_SEED=random`` draws fresh inputs each run instead of the fixed, derandomized ones.
A longer run: ``AUREA_FUZZ_EXAMPLES=5000 AUREA_FUZZ_SEED=random python -m pytest -q tests/fuzz``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fuzz_harness import EXAMPLES, FUZZ_SERVER, TALLY, Served

from aurea.server import AureaServer
from aurea.testing import test_settings as make_settings


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
