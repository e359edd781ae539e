"""The rate limits in force per model: ``[limits]`` defaults, ``[models.NAME]`` overrides, and
run-time overrides from ``AdminService.SetModelLimits`` (kept until the server restarts), each
turned once into the GCRA quotas the limiter guard asks its store for.

Requests and tokens per minute are buckets that hold one minute's worth and refill continuously
(GCRA: ``rate = limit / 60 s``, ``burst = limit``), the same shape as OpenAI's and Anthropic's own
limits. A change applies at once; the fraction of the minute's quota already used carries over
(the store keeps a fill level in seconds, and a minute's bucket is 60 s at any rate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from aurea.config import LimitsSettings, ModelSpec
from aurea.errors import InvalidRequest, UnknownModel
from aurea.stores import Quota

__all__ = ["MAX_CONCURRENCY", "MAX_RPM", "MAX_TPM", "LimitsTable", "ModelLimits", "Plan"]

log = structlog.get_logger("aurea.limits")

# The same ranges the configuration accepts.
MAX_RPM = 1_000_000_000
MAX_TPM = 1_000_000_000_000
MAX_CONCURRENCY = 1_000_000
_WINDOW_S = 60.0
_LEASE_FRACTION = 50  # a process leases 1/50 of a minute's limit ahead of need
# A burst no charge can exceed: how a usage larger than its estimate is charged after the fact
# (the bucket's level moves, and later admissions wait for it; nothing is refused).
FORCE_BURST = 1e18


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelLimits:
    """One model's limits; 0 means no limit."""

    model: str
    rpm: int = 0
    tpm: int = 0
    max_concurrency: int = 0  # calls in flight at once, per server process
    overridden: bool = False  # changed at run time since the server started


class Plan:
    """A model's limits as store quotas, built once per change. A model without limits has no
    quotas, and its attempts make no store call. ``hold_key`` is where an upstream's "not
    before" goes in the store (the model's first limit, so every replica sharing the store holds
    back; "" without limits); the guard keeps it in memory too. ``ahead_*`` are the batches a
    process leases ahead of need (1/50 of a minute's limit; 0 below 50 per minute)."""

    __slots__ = (
        "ahead_requests",
        "ahead_tokens",
        "hold_key",
        "limits",
        "rpm_key",
        "rpm_rate",
        "tpm_burst",
        "tpm_key",
        "tpm_rate",
    )

    def __init__(self, limits: ModelLimits) -> None:
        name = limits.model
        self.limits = limits
        # One hash tag per model, so a Redis script can take all of a model's keys at once.
        self.rpm_key = f"{{{name}}}:rpm"
        self.tpm_key = f"{{{name}}}:tpm"
        self.hold_key = self.rpm_key if limits.rpm else self.tpm_key if limits.tpm else ""
        self.rpm_rate = limits.rpm / _WINDOW_S
        self.tpm_rate = limits.tpm / _WINDOW_S
        self.tpm_burst = float(limits.tpm)
        self.ahead_requests = limits.rpm // _LEASE_FRACTION
        self.ahead_tokens = limits.tpm // _LEASE_FRACTION

    def quotas_for(self, requests: int, tokens: int) -> tuple[Quota, ...]:
        """Quotas for ``requests`` and ``tokens`` units (each only when its limit is set and its
        count is not 0). A count above a minute's worth can never be admitted."""
        out: list[Quota] = []
        if requests and self.limits.rpm:
            q = Quota(
                key=self.rpm_key, cost=requests, rate_per_s=self.rpm_rate, burst=self.limits.rpm
            )
            out.append(q)
        if tokens and self.limits.tpm:
            out.append(self.tpm_quota(tokens))
        return tuple(out)

    def tpm_quota(self, cost: int, *, burst: float | None = None) -> Quota:
        return Quota(
            key=self.tpm_key,
            cost=cost,
            rate_per_s=self.tpm_rate,
            burst=self.tpm_burst if burst is None else burst,
        )

    def limit_of(self, key: str) -> str:
        """Which limit a store key is: ``rpm``, ``tpm``, else ``upstream``."""
        if key == self.rpm_key:
            return "rpm"
        if key == self.tpm_key:
            return "tpm"
        return "upstream"


def _check(field: str, value: int | None, hi: int) -> None:
    if value is not None and not 0 <= value <= hi:
        raise InvalidRequest.field(field, f"must be between 0 and {hi}, got {value}")


class LimitsTable:
    """Per catalog model: the limits in force and their plan. Owned by the composition root;
    read by the limiter guard on every attempt (a dict lookup) and changed only by ``set``."""

    def __init__(
        self,
        *,
        models: Mapping[str, ModelSpec],
        settings: LimitsSettings,
        on_change: Callable[[ModelLimits, ModelLimits], None] | None = None,
    ) -> None:
        self._on_change = on_change  # (now in force, previous): events
        self._models = dict(models)
        self._plans: dict[str, Plan] = {}
        for name, spec in self._models.items():
            self._plans[name] = Plan(
                ModelLimits(
                    model=name,
                    rpm=spec.rpm or settings.default_rpm,
                    tpm=spec.tpm or settings.default_tpm,
                    max_concurrency=spec.max_concurrency,
                )
            )

    def plan(self, model: str) -> Plan:
        plan = self._plans.get(model)
        if plan is None:  # not in the catalog (a test's ad-hoc model): no limits
            plan = self._plans[model] = Plan(ModelLimits(model=model))
        return plan

    def get(self, model: str) -> ModelLimits:
        """The limits in force for a catalog model; ``UnknownModel`` for any other name."""
        if model not in self._models:
            raise UnknownModel(f"model {model[:80]!r} is not in the catalog")
        return self.plan(model).limits

    def all(self) -> list[ModelLimits]:
        """Every catalog model's limits, by name."""
        return [self.plan(name).limits for name in sorted(self._models)]

    def set(
        self,
        model: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrency: int | None = None,
    ) -> tuple[ModelLimits, ModelLimits]:
        """Override some of a model's limits at once (None keeps a value, 0 removes a limit);
        returns (now in force, previous). Bad values raise ``InvalidRequest`` naming the field,
        before anything changes."""
        if not model:
            raise InvalidRequest.field("model", "is required")
        _check("rpm", rpm, MAX_RPM)
        _check("tpm", tpm, MAX_TPM)
        _check("max_concurrency", max_concurrency, MAX_CONCURRENCY)
        previous = self.get(model)
        now = ModelLimits(
            model=model,
            rpm=previous.rpm if rpm is None else rpm,
            tpm=previous.tpm if tpm is None else tpm,
            max_concurrency=(
                previous.max_concurrency if max_concurrency is None else max_concurrency
            ),
            overridden=True,
        )
        self._plans[model] = Plan(now)
        log.info(
            "model_limits_changed",
            model=model,
            rpm=now.rpm,
            tpm=now.tpm,
            max_concurrency=now.max_concurrency,
            previous_rpm=previous.rpm,
            previous_tpm=previous.tpm,
            previous_max_concurrency=previous.max_concurrency,
        )
        if self._on_change is not None:
            self._on_change(now, previous)
        return now, previous
