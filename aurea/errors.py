"""The AureaError tree: every failure Aurea reports is one of these (imports nothing from aurea).

::

    AureaError
    ├── InvalidRequest            bad field(s); carries field violations
    │   └── UnsupportedFeature    the model (or every candidate) lacks a feature the call needs
    ├── Unauthenticated           missing or wrong API key
    ├── PermissionDenied          key lacks a scope
    │   └── ModelDenied           model is on the deny list / not on the allow list
    ├── NotFound
    │   ├── UnknownModel
    │   ├── TaskNotFound          no task has the id
    │   ├── UnknownTaskKind       no task kind is registered under the name
    │   └── UnknownPool           no worker pool has the name
    ├── FailedPrecondition        the system is not in a state that allows the call
    │   ├── IdempotencyConflict   an idempotency key reused for a different task
    │   └── TaskFinished          the task already ended (succeeded, failed, timed out)
    ├── Unimplemented             an RPC a later capability provides
    ├── ResourceExhausted
    │   ├── RateLimited           Aurea's own limiter (retry_after_s)
    │   ├── BudgetExceeded        a job's budget (spent, reserved, budget nanos)
    │   ├── QueueFull             a worker pool's queue is at its capacity (retry_after_s)
    │   └── SubscriberLagged      a stream's reader fell too far behind; reconnect
    ├── Unavailable               (retry_after_s)
    │   ├── Overloaded            a full mailbox / concurrency cap
    │   ├── CircuitOpen
    │   ├── ProvidersUnavailable  every candidate failed or was skipped
    │   ├── ShuttingDown
    │   └── ActorCrashed          an actor crashed handling the call and was restarted; retry
    ├── DeadlineExceeded          the caller's deadline
    └── ProviderError             an upstream provider failed (provider, status, retryable)
        ├── ProviderAuthError         401/403 upstream; never retried
        ├── ProviderRateLimited       429 upstream (retry_after_s)
        ├── ProviderOverloaded        503/529 upstream
        ├── ProviderServerError       other 5xx upstream
        ├── ProviderTimeout           an upstream took longer than a configured limit
        │   ├── ProviderSilent            no connection or first token in time; never retried
        │   └── ProviderStalled           silence between chunks past the stall limit
        ├── ProviderConnectionError   could not connect, or the connection dropped before a reply
        ├── StreamBroken              the stream ended without its terminal event
        └── UpstreamRejected          4xx the request itself caused; never retried
            ├── ContextLengthExceeded
            └── ContentFiltered

Vendor exceptions are mapped to the most specific class here at one boundary (``raise X from exc``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field: its path in the request (``messages[2].role``) and what is wrong with it."""

    field: str
    description: str


class AureaError(Exception):
    """Root of every error Aurea raises on purpose."""

    reason: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(AureaError):
    reason = "INVALID_REQUEST"

    def __init__(self, message: str, violations: Sequence[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.violations = tuple(violations)

    @classmethod
    def field(cls, field: str, description: str) -> InvalidRequest:
        return cls(f"{field}: {description}", [FieldViolation(field, description)])


class UnsupportedFeature(InvalidRequest):
    """A request needs a feature (tools, a JSON schema, a strict schema, images, reasoning)
    that the model asked for, or every candidate, cannot provide; the message names the model
    and the feature. Never a silent drop of what the caller asked for."""

    reason = "UNSUPPORTED_FEATURE"


class Unauthenticated(AureaError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(AureaError):
    reason = "PERMISSION_DENIED"


class ModelDenied(PermissionDenied):
    reason = "MODEL_DENIED"


class NotFound(AureaError):
    reason = "NOT_FOUND"


class UnknownModel(NotFound):
    reason = "MODEL_NOT_FOUND"

    def __init__(self, message: str, field: str = "model") -> None:
        super().__init__(message)
        self.field = field


class TaskNotFound(NotFound):
    reason = "TASK_NOT_FOUND"


class UnknownTaskKind(NotFound):
    reason = "TASK_KIND_NOT_FOUND"


class UnknownPool(NotFound):
    reason = "POOL_NOT_FOUND"


class FailedPrecondition(AureaError):
    reason = "FAILED_PRECONDITION"


class IdempotencyConflict(FailedPrecondition):
    reason = "IDEMPOTENCY_KEY_REUSED"


class TaskFinished(FailedPrecondition):
    reason = "TASK_FINISHED"


class Unimplemented(AureaError):
    reason = "NOT_IMPLEMENTED"


class ResourceExhausted(AureaError):
    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(ResourceExhausted):
    """``model`` is over ``limit`` (``rpm``, ``tpm``, ``max_concurrency``, or ``upstream``: the
    provider said so and Aurea holds back until its limit resets)."""

    reason = "RATE_LIMITED"

    def __init__(
        self,
        message: str,
        retry_after_s: float | None = None,
        *,
        model: str = "",
        limit: str = "",
    ) -> None:
        super().__init__(message, retry_after_s)
        self.model = model
        self.limit = limit


class BudgetExceeded(ResourceExhausted):
    """Job ``job_id`` cannot pay for more: its ``budget_nanos`` less ``spent_nanos`` and the
    ``reserved_nanos`` held by its calls in flight does not cover the attempt. ``retry_after_s``
    is set when the refusal is only for the reservations (they return as those calls end).
    ``limit_nanos`` is set when an attempt that already ran is stopped: the most it is charged
    (its reservation, grown as far as the budget allowed)."""

    reason = "BUDGET_EXCEEDED"

    def __init__(
        self,
        message: str,
        *,
        job_id: str,
        spent_nanos: int,
        budget_nanos: int,
        reserved_nanos: int = 0,
        retry_after_s: float | None = None,
        limit_nanos: int | None = None,
    ) -> None:
        super().__init__(message, retry_after_s)
        self.job_id = job_id
        self.spent_nanos = spent_nanos
        self.budget_nanos = budget_nanos
        self.reserved_nanos = reserved_nanos
        self.limit_nanos = limit_nanos


class QueueFull(ResourceExhausted):
    reason = "QUEUE_FULL"


class SubscriberLagged(ResourceExhausted):
    reason = "SUBSCRIBER_LAGGED"


class Unavailable(AureaError):
    reason = "UNAVAILABLE"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Overloaded(Unavailable):
    reason = "OVERLOADED"


class CircuitOpen(Unavailable):
    reason = "CIRCUIT_OPEN"


class ProvidersUnavailable(Unavailable):
    reason = "PROVIDERS_UNAVAILABLE"


class ShuttingDown(Unavailable):
    reason = "SHUTTING_DOWN"


class ActorCrashed(Unavailable):
    reason = "ACTOR_RESTARTED"


class DeadlineExceeded(AureaError):
    reason = "DEADLINE_EXCEEDED"


class ProviderError(AureaError):
    """An upstream provider failed. ``retryable`` says whether another attempt may succeed."""

    reason = "UPSTREAM_ERROR"
    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.retry_after_s = retry_after_s


class ProviderAuthError(ProviderError):
    reason = "UPSTREAM_AUTH_FAILED"
    retryable = False


class ProviderRateLimited(ProviderError):
    reason = "UPSTREAM_RATE_LIMITED"


class ProviderOverloaded(ProviderError):
    reason = "UPSTREAM_OVERLOADED"


class ProviderServerError(ProviderError):
    reason = "UPSTREAM_SERVER_ERROR"


class ProviderTimeout(ProviderError):
    reason = "UPSTREAM_TIMEOUT"


class ProviderSilent(ProviderTimeout):
    """No connection within the connect limit, or no first token within the time-to-first-token
    limit: a silent upstream stays silent, so the call moves to the next candidate at once."""

    reason = "UPSTREAM_SILENT"


class ProviderStalled(ProviderTimeout):
    """The stream went silent between two chunks for longer than the stall limit."""

    reason = "UPSTREAM_STALLED"


class ProviderConnectionError(ProviderError):
    reason = "UPSTREAM_UNREACHABLE"


class StreamBroken(ProviderError):
    reason = "UPSTREAM_STREAM_BROKEN"


class UpstreamRejected(ProviderError):
    reason = "UPSTREAM_REJECTED"
    retryable = False


class ContextLengthExceeded(UpstreamRejected):
    reason = "CONTEXT_LENGTH_EXCEEDED"


class ContentFiltered(UpstreamRejected):
    reason = "CONTENT_FILTERED"
