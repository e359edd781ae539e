"""Aurea's own rate limits: per model requests and tokens per minute (and calls in flight),
enforced by the limiter guard on every attempt over a ``LimiterStore``, changeable at run time
through ``LimitsTable.set`` (``AdminService.SetModelLimits``)."""

from aurea.limits._guard import LimiterGuard, LimiterPermit
from aurea.limits._table import (
    MAX_CONCURRENCY,
    MAX_RPM,
    MAX_TPM,
    LimitsTable,
    ModelLimits,
    Plan,
)

__all__ = [
    "MAX_CONCURRENCY",
    "MAX_RPM",
    "MAX_TPM",
    "LimiterGuard",
    "LimiterPermit",
    "LimitsTable",
    "ModelLimits",
    "Plan",
]
