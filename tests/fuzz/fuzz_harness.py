"""What the fuzz targets share: hypothesis settings, the tally of statuses, and the handle on
the server under test (run on its own event loop in a thread, so hypothesis drives it from plain
synchronous tests). See ``conftest`` for the environment variables of a longer run."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings

from aurea.server import AureaServer

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


# The server runs with one admin key (so a fuzzed CreateApiKey cannot turn an open server into
# a keyed one under the fuzzer's feet); every fuzzed call presents it.
FUZZ_KEY = "fuzz-admin-key-0123456789"
FUZZ_SERVER = {
    "auth": {
        "keys": [
            {
                "name": "fuzz-admin",
                "sha256": hashlib.sha256(FUZZ_KEY.encode()).hexdigest(),
                "scopes": ["admin"],
            }
        ]
    },
    "ledger": {"store": "memory"},
    "routing": {"stats_store": "memory"},
    "tasks": {"store": "memory"},
    # Nothing may be provisioned: a fuzzed Provision must never start a process.
    "infra": {"store": "memory", "max_resources": 0},
    "input": {"max_request_bytes": 1 << 20},
}
