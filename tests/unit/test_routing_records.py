"""What each call's record teaches the router (aurea.routing._records): which attempts count for
or against a model, the time to first token of streams, and the bounded inbox the sink fills."""

from __future__ import annotations

import asyncio

import pytest

from aurea import errors as e
from aurea.inference.calls import AttemptRecord, CallKind, CallRecord
from aurea.routing import RecordInbox
from aurea.routing._records import MODEL_FAILURES, outcomes_of


def record(kind: CallKind, *attempts: AttemptRecord, **kw: object) -> CallRecord:
    r = CallRecord(request_id="r", kind=kind, **kw)  # type: ignore[arg-type]
    r.attempts.extend(attempts)
    return r


def ok(model: str, latency_s: float) -> AttemptRecord:
    return AttemptRecord(model=model, provider="p", latency_s=latency_s)


def failed(model: str, reason: str, latency_s: float = 0.05) -> AttemptRecord:
    return AttemptRecord(model=model, provider="p", error=reason, latency_s=latency_s)


def through(inbox: RecordInbox, *records: CallRecord) -> list[tuple[str, bool, float | None]]:
    for r in records:
        inbox(r)
    return [(o.model, o.outcome.success, o.first_token_s) for o in outcomes_of(inbox.take())]


def test_a_stream_records_its_total_latency_and_uses_its_ttft_for_the_latency_term() -> None:
    inbox = RecordInbox()
    r = record(CallKind.STREAM, ok("m", 2.0), ttft_s=0.3, latency_s=2.0, cost_nanos=70)
    inbox(r)
    [o] = outcomes_of(inbox.take())
    assert o.outcome.latency_s == 2.0 and o.outcome.cost_nanos == 70 and o.outcome.success
    assert o.outcome.ttft_s == pytest.approx(0.3)
    assert o.first_token_s == pytest.approx(0.3)


def test_a_unary_call_starts_its_answer_when_it_ends() -> None:
    r = record(CallKind.UNARY, ok("m", 0.8), ttft_s=0.8, latency_s=0.8)
    assert through(RecordInbox(), r) == [("m", True, 0.8)]


def test_each_attempt_counts_for_its_own_model_and_ttft_is_the_answering_attempts() -> None:
    # "a" failed upstream after 0.5 s; "b" answered in 1.0 s with its first token 0.2 s in.
    r = record(
        CallKind.STREAM,
        failed("a", e.ProviderServerError.reason, 0.5),
        ok("b", 1.0),
        ttft_s=0.7,
        latency_s=1.5,
        cost_nanos=9,
    )
    inbox = RecordInbox()
    inbox(r)
    a, b = outcomes_of(inbox.take())
    assert (a.model, a.outcome.success, a.outcome.cost_nanos, a.first_token_s) == (
        "a",
        False,
        0,
        None,
    )
    assert a.outcome.latency_s == 0.5
    assert (b.model, b.outcome.success, b.outcome.cost_nanos) == ("b", True, 9)
    assert b.first_token_s == pytest.approx(0.2)


@pytest.mark.parametrize(
    "reason",
    [
        "CANCELLED",
        "BUG",
        e.CircuitOpen.reason,
        e.RateLimited.reason,
        e.Overloaded.reason,
        e.BudgetExceeded.reason,
        e.ModelDenied.reason,
        e.UpstreamRejected.reason,
        e.ContextLengthExceeded.reason,
        e.ContentFiltered.reason,
    ],
)
def test_attempts_that_say_nothing_about_the_model_are_not_recorded(reason: str) -> None:
    assert through(RecordInbox(), record(CallKind.UNARY, failed("a", reason))) == []


@pytest.mark.parametrize(
    "cls",
    [
        e.ProviderError,
        e.ProviderServerError,
        e.ProviderOverloaded,
        e.ProviderRateLimited,
        e.ProviderTimeout,
        e.ProviderConnectionError,
        e.StreamBroken,
        e.ProviderAuthError,
    ],
)
def test_upstream_failures_count_against_the_model(cls: type[e.ProviderError]) -> None:
    assert cls.reason in MODEL_FAILURES
    assert through(RecordInbox(), record(CallKind.UNARY, failed("a", cls.reason))) == [
        ("a", False, None)
    ]


def test_cache_hits_and_calls_that_never_attempted_are_skipped() -> None:
    inbox = RecordInbox()
    inbox(record(CallKind.UNARY, ok("m", 0.1), cache_hit=True))
    inbox(record(CallKind.UNARY))
    assert len(inbox) == 0


def test_a_full_inbox_drops_and_counts() -> None:
    inbox = RecordInbox(capacity=2)
    for _ in range(5):
        inbox(record(CallKind.UNARY, ok("m", 0.1)))
    assert len(inbox) == 2 and inbox.dropped == 3
    assert len(inbox.take()) == 2 and len(inbox) == 0


async def test_the_inbox_wakes_its_reader_once_per_batch() -> None:
    inbox = RecordInbox()
    waiter = asyncio.ensure_future(inbox.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    inbox(record(CallKind.UNARY, ok("m", 0.1)))
    inbox(record(CallKind.UNARY, ok("m", 0.1)))
    await waiter
    assert len(inbox.take()) == 2
    again = asyncio.ensure_future(inbox.wait())
    await asyncio.sleep(0)
    assert not again.done()  # taken: asleep until the next record
    inbox.poke()
    await again
