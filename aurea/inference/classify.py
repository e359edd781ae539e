"""The one classification table: for each error an attempt can end with, whether to retry the
same candidate, move to the next one, or fail the whole call. Most specific class wins."""

from __future__ import annotations

import enum

from aurea import errors as e


class Action(enum.StrEnum):
    RETRY = "retry"  # the same candidate again, after a backoff (Retry-After honoured)
    NEXT = "next"  # skip to the next candidate at once
    FAIL = "fail"  # no other attempt can help: end the call with this error
    # Never from the table: a stream's failover asks for the same candidate again at once, in
    # another form (a restart after its prefill was refused); not a retry, no backoff.
    AGAIN = "again"


# Ordered most specific first; the first isinstance match wins. An error not listed fails the
# call: an unknown condition must not be multiplied across candidates.
TABLE: tuple[tuple[type[BaseException], Action], ...] = (
    # Too long for this model: a candidate whose catalog context window is larger may take it
    # (the attempt loop skips the others; with none left the call ends INVALID_ARGUMENT).
    (e.ContextLengthExceeded, Action.NEXT),
    # The request itself is refused (content policy with the provider's reason, other 4xx):
    # no candidate will like it better.
    (e.UpstreamRejected, Action.FAIL),
    # Aurea's credentials for this provider are wrong: its own config, not the request's.
    (e.ProviderAuthError, Action.NEXT),
    # Silent (no connection or first token in time), stalled, or out of time: a silent upstream
    # stays silent, so waiting for it again only burns the caller's deadline.
    (e.ProviderTimeout, Action.NEXT),
    (e.ProviderError, Action.RETRY),  # 429, 5xx, overloaded, reset / unreachable, broken
    # Aurea's own refusals for one candidate: somewhere else may have room.
    (e.Overloaded, Action.NEXT),
    (e.CircuitOpen, Action.NEXT),
    (e.RateLimited, Action.NEXT),
    (e.ModelDenied, Action.NEXT),
    (e.ActorCrashed, Action.NEXT),  # the provider's actor crashed admitting the attempt
    (e.ShuttingDown, Action.FAIL),
    (e.Unavailable, Action.NEXT),  # the provider's actor did not answer in time, or is down
    (e.BudgetExceeded, Action.FAIL),  # the job's money, whichever model serves
    (e.InvalidRequest, Action.FAIL),
)


def classify(exc: BaseException) -> Action:
    for cls, action in TABLE:
        if isinstance(exc, cls):
            return action
    return Action.FAIL


def backoff_s(
    retry: int, err: BaseException, *, base_s: float, max_s: float, jitter: float
) -> float:
    """Delay before retry number ``retry`` (1-based): exponential with equal jitter (never less
    than half), and never less than the upstream's Retry-After."""
    delay = min(base_s * 2.0 ** (retry - 1), max_s) * (0.5 + jitter / 2)
    retry_after = getattr(err, "retry_after_s", None)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def final_error(errors: list[tuple[str, e.AureaError]]) -> e.AureaError:
    """The error a call ends with when every candidate failed (``errors``: each candidate's
    model and last error, in order). One kind of failure everywhere ends with that error itself,
    so an upstream 429 gives the same status whether one or several candidates were tried; mixed
    failures end as ``ProvidersUnavailable``. The message names every failure."""
    last = errors[-1][1]
    if len(errors) == 1:
        return last
    summary = "; ".join(f"{m}: {err.reason}" for m, err in errors)
    message = f"every candidate failed ({summary}); last: {last.message}"
    if len({type(err) for _, err in errors}) == 1:
        last.message = message
        last.args = (message,)
        return last
    waits = [w for _, err in errors if (w := getattr(err, "retry_after_s", None)) is not None]
    out = e.ProvidersUnavailable(message, retry_after_s=min(waits) if waits else 1.0)
    out.__cause__ = last
    return out
