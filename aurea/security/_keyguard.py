"""The API-key guard: an attempt is refused unless the calling key's policy allows it.

Per attempt, in the caller's task, before the model's own limiter (so a refusal takes nothing
from the model's quotas):

* **models**: a key that lists models (or route groups, which stand for their members) may
  use only those; another candidate is skipped (``ModelDenied``: the next candidate is tried,
  none left is PERMISSION_DENIED);
* **rpm / tpm**: the key's own requests and tokens per minute over all models, GCRA buckets in
  a ``LimiterStore`` under ``{key:NAME}:rpm`` / ``{key:NAME}:tpm``; over either is
  ``RateLimited`` (limit ``key_rpm`` / ``key_tpm``), RESOURCE_EXHAUSTED with a retry delay.
  Every attempt counts as a request, as for a model's rpm. Tokens are estimated (prompt + the
  most it may generate) and corrected by the usage seen when the attempt ends.

Keys without a policy of their own (and open mode) cost one dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType

from aurea.actors.router import Candidate
from aurea.config import ApiKey
from aurea.edge import KeyRing, current_scope
from aurea.errors import AureaError, ModelDenied, ProviderError, RateLimited
from aurea.inference.calls import CallKind
from aurea.inference.guards import NOOP_PERMIT, AttemptInfo, Permit
from aurea.limits._table import FORCE_BURST
from aurea.providers._base import Usage
from aurea.stores import LimiterStore, Quota, WallClock, wall_clock

__all__ = ["KeyPolicyGuard"]

_WINDOW_S = 60.0


def _principal(call: AttemptInfo) -> str:
    if call.principal:
        return call.principal
    scope = current_scope.get()
    return scope.principal if scope is not None else ""


class KeyPolicyGuard:
    name = "api_key"

    def __init__(
        self,
        *,
        keys: KeyRing,
        store: LimiterStore,
        groups: Mapping[str, tuple[str, ...]] | None = None,
        wall_clock: WallClock = wall_clock,
        on_refused: Callable[[str, str], None] | None = None,
    ) -> None:
        self._keys = keys
        self._store = store
        self._groups = dict(groups or {})
        self._wall = wall_clock
        self._on_refused = on_refused
        self._allowed: dict[tuple[str, frozenset[str]], frozenset[str]] = {}

    def allows(self, key: ApiKey, model: str) -> bool:
        if not key.models:
            return True
        cache_key = (key.name, key.models)
        allowed = self._allowed.get(cache_key)
        if allowed is None:
            expanded = set(key.models)
            for name in key.models:
                expanded.update(self._groups.get(name, ()))
            allowed = self._allowed[cache_key] = frozenset(expanded)
        return model in allowed

    async def admit(self, call: AttemptInfo, candidate: Candidate) -> Permit:
        name = _principal(call)
        key = self._keys.get(name) if name else None
        if key is None or not (key.models or key.rpm or key.tpm):
            return NOOP_PERMIT
        model = candidate.model
        if not self.allows(key, model.name):
            raise ModelDenied(
                f"model {model.name!r} is not among the models API key {name!r} may use"
            )
        if not (key.rpm or key.tpm):
            return NOOP_PERMIT
        tokens = 0
        if key.tpm:
            estimate = call.input_tokens
            if call.kind is not CallKind.EMBED:
                estimate += call.max_tokens or model.default_max_tokens
            tokens = min(estimate, key.tpm)  # a call larger than a minute's worth goes when full
        quotas = _quotas(key, 1 if key.rpm else 0, tokens)
        admission = await self._store.acquire(quotas, now=self._wall())
        if not admission.granted:
            limit = "key_rpm" if admission.limiting_key.endswith(":rpm") else "key_tpm"
            if self._on_refused is not None:
                self._on_refused(name, limit)
            what = (
                f"{key.rpm} requests per minute"
                if limit == "key_rpm"
                else f"{key.tpm} tokens per minute; this call needs an estimated {tokens}"
            )
            raise RateLimited(
                f"API key {name!r} is over its own limit ({what}); room again in "
                f"{admission.retry_after_s:.3g} s",
                admission.retry_after_s,
                model=model.name,
                limit=limit,
            )
        return _KeyPermit(self, key, tokens)

    async def settle(self, permit: _KeyPermit, exc: BaseException | None) -> None:
        key, charged, usage = permit.key, permit.tokens, permit.usage
        now = self._wall()
        if usage is None and isinstance(exc, AureaError) and not isinstance(exc, ProviderError):
            # Refused after this guard admitted it: the upstream never saw it.
            await self._store.refund(_quotas(key, 1 if key.rpm else 0, charged), now=now)
            return
        if not key.tpm or usage is None:
            return
        used = usage.input_tokens + usage.output_tokens
        if used < charged:
            await self._store.refund(_quotas(key, 0, charged - used), now=now)
        elif used > charged:
            quota = Quota(
                key=_tpm_key(key), cost=used - charged, rate_per_s=key.tpm / _WINDOW_S,
                burst=FORCE_BURST,
            )  # fmt: skip
            await self._store.acquire((quota,), now=now)


def _tpm_key(key: ApiKey) -> str:
    return f"{{key:{key.name}}}:tpm"


def _quotas(key: ApiKey, requests: int, tokens: int) -> tuple[Quota, ...]:
    out: list[Quota] = []
    if requests and key.rpm:
        out.append(
            Quota(
                key=f"{{key:{key.name}}}:rpm",
                cost=requests,
                rate_per_s=key.rpm / _WINDOW_S,
                burst=key.rpm,
            )
        )
    if tokens and key.tpm:
        out.append(
            Quota(key=_tpm_key(key), cost=tokens, rate_per_s=key.tpm / _WINDOW_S, burst=key.tpm)
        )
    return tuple(out)


class _KeyPermit:
    __slots__ = ("_guard", "key", "tokens", "usage")

    def __init__(self, guard: KeyPolicyGuard, key: ApiKey, tokens: int) -> None:
        self._guard = guard
        self.key = key
        self.tokens = tokens
        self.usage: Usage | None = None

    def observe(self, usage: Usage, cost_nanos: int) -> None:
        self.usage = usage

    async def __aenter__(self) -> _KeyPermit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._guard.settle(self, exc)
