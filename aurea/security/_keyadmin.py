"""Run-time changes to the API keys (``AdminService`` key RPCs): add, disable, enable, rotate.

The key ring changes at once (the next call sees it); calls already running on a disabled key
or a rotated-out secret are ended by the edge after ``server.revoked_key_grace_s``. A key's
budget becomes its default job's budget (``default:NAME``) through the ledger.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Collection

import structlog

from aurea.config import ApiKey
from aurea.edge import Edge, digest_of, new_secret
from aurea.errors import InvalidRequest

__all__ = ["MAX_ROTATE_GRACE_S", "KeyAdmin"]

log = structlog.get_logger("aurea.security")

MAX_ROTATE_GRACE_S = 86_400.0
SetBudget = Callable[[str, int], Awaitable[None]]  # (key name, budget nanos)


class KeyAdmin:
    def __init__(
        self,
        edge: Edge,
        *,
        models: Collection[str],
        set_budget: SetBudget | None = None,
    ) -> None:
        self.edge = edge
        self.ring = edge.keys
        self._models = frozenset(models)  # catalog models and route groups
        self._set_budget = set_budget
        self._timers: set[asyncio.TimerHandle] = set()

    def list(self) -> list[ApiKey]:
        return self.ring.all()

    async def create(self, key: ApiKey) -> tuple[ApiKey, str]:
        """Add ``key`` (an empty ``sha256``: make a secret, returned once)."""
        for name in sorted(key.models):
            if name not in self._models:
                raise InvalidRequest.field("policy.models", f"{name[:80]!r} is not in the catalog")
        shown = ""
        if not key.sha256:
            shown = new_secret()
            key = dataclasses.replace(key, sha256=digest_of(shown))
        key = self.ring.add(dataclasses.replace(key, disabled=False))
        log.info("api_key_created", api_key=key.name, scopes=sorted(key.scopes))
        if key.budget_nanos is not None and self._set_budget is not None:
            await self._set_budget(key.name, key.budget_nanos)
        return key, shown

    def disable(self, name: str) -> ApiKey:
        key = self.ring.set_disabled(name, True)
        self.edge.revoke(name)
        log.info("api_key_disabled", api_key=name, grace_s=self.edge.revoked_grace_s)
        return key

    def enable(self, name: str) -> ApiKey:
        key = self.ring.set_disabled(name, False)
        log.info("api_key_enabled", api_key=name)
        return key

    def rotate(self, name: str, grace_s: float, sha256: str = "") -> tuple[ApiKey, str]:
        if not 0 <= grace_s <= MAX_ROTATE_GRACE_S:
            raise InvalidRequest.field(
                "previous_key_grace_ms", f"must be between 0 and {int(MAX_ROTATE_GRACE_S * 1e3)}"
            )
        shown = ""
        if not sha256:
            shown = new_secret()
            sha256 = digest_of(shown)
        key, previous = self.ring.rotate(name, sha256, grace_s)
        # When the previous secret stops working, the calls still running on it get the
        # edge's grace too, then end.
        loop = asyncio.get_running_loop()
        timer = loop.call_later(grace_s, self.edge.revoke, name, previous)
        self._timers.add(timer)
        log.info("api_key_rotated", api_key=name, previous_key_grace_s=grace_s)
        return key, shown

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
