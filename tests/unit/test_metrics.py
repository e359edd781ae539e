"""The metrics API: what one call record, one RPC and each subsystem helper add to the registry,
bounded labels, the scrape-time collectors, and the exposition formats."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from aurea.inference.calls import AttemptRecord, CallKind, CallOutcome, CallRecord
from aurea.providers._base import FinishReason, Usage
from aurea.runtime import Actor, ActorSystem
from aurea.telemetry import metrics
from aurea.telemetry.observer import CallTelemetry, method_label


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def catalog() -> Iterator[None]:
    metrics.set_catalog(["m-a", "m-b"], ["p1", "p2"])
    try:
        yield
    finally:
        metrics._models = metrics._providers = None


def test_a_call_with_a_retry_and_a_fallback(catalog: None) -> None:
    before = {
        "tasks": value("aurea_tasks_total", model="m-b", status="ok"),
        "in": value("aurea_llm_tokens_total", model="m-b", direction="input"),
        "out": value("aurea_llm_tokens_total", model="m-b", direction="output"),
        "cost": value("aurea_llm_cost_usd_total", model="m-b"),
        "ttft": value("aurea_ttft_seconds_count", model="m-b"),
        "retry": value("aurea_upstream_retries_total", model="m-a", cause="UPSTREAM_OVERLOADED"),
        "fallback": value(
            "aurea_fallbacks_total", from_model="m-a", to_model="m-b", cause="UPSTREAM_TIMEOUT"
        ),
        "failed": value(
            "aurea_upstream_attempts_total",
            model="m-a",
            provider="p1",
            outcome="UPSTREAM_OVERLOADED",
        ),
        "ok": value("aurea_upstream_attempts_total", model="m-b", provider="p2", outcome="ok"),
    }
    record = CallRecord(
        request_id="r",
        kind=CallKind.STREAM,
        model="m-b",
        provider="p2",
        attempts=[
            AttemptRecord(model="m-a", provider="p1", error="UPSTREAM_OVERLOADED"),
            AttemptRecord(model="m-a", provider="p1", error="UPSTREAM_TIMEOUT"),
            AttemptRecord(model="m-b", provider="p2"),
        ],
        fallbacks=1,
        ttft_s=0.2,
        usage=Usage(input_tokens=7, output_tokens=11),
        cost_nanos=2_500_000_000,
        outcome=CallOutcome.OK,
        finish_reason=FinishReason.STOP,
    )
    metrics.record_call(record)
    assert value("aurea_tasks_total", model="m-b", status="ok") == before["tasks"] + 1
    assert value("aurea_llm_tokens_total", model="m-b", direction="input") == before["in"] + 7
    assert value("aurea_llm_tokens_total", model="m-b", direction="output") == before["out"] + 11
    assert value("aurea_llm_cost_usd_total", model="m-b") == pytest.approx(before["cost"] + 2.5)
    assert value("aurea_ttft_seconds_count", model="m-b") == before["ttft"] + 1
    assert (
        value("aurea_upstream_retries_total", model="m-a", cause="UPSTREAM_OVERLOADED")
        == before["retry"] + 1
    )
    assert (
        value("aurea_fallbacks_total", from_model="m-a", to_model="m-b", cause="UPSTREAM_TIMEOUT")
        == before["fallback"] + 1
    )
    assert (
        value(
            "aurea_upstream_attempts_total",
            model="m-a",
            provider="p1",
            outcome="UPSTREAM_OVERLOADED",
        )
        == before["failed"] + 1
    )
    assert (
        value("aurea_upstream_attempts_total", model="m-b", provider="p2", outcome="ok")
        == before["ok"] + 1
    )


def test_budget_stop_and_budget_refusal_are_told_apart(catalog: None) -> None:
    stops = value("aurea_budget_stops_total", model="m-a")
    refusals = value("aurea_budget_refusals_total", model="m-a")
    stopped = CallRecord(
        request_id="s",
        kind=CallKind.STREAM,
        model="m-a",
        outcome=CallOutcome.OK,
        finish_reason=FinishReason.BUDGET_EXCEEDED,
    )
    refused = CallRecord(
        request_id="f",
        kind=CallKind.UNARY,
        model="m-a",
        outcome=CallOutcome.FAILED,
        error="BUDGET_EXCEEDED",
        attempts=[AttemptRecord(model="m-a", provider="p1", error="BUDGET_EXCEEDED")],
    )
    metrics.record_call(stopped)
    metrics.record_call(refused)
    assert value("aurea_budget_stops_total", model="m-a") == stops + 1
    assert value("aurea_budget_refusals_total", model="m-a") == refusals + 1


def test_unary_calls_do_not_feed_the_ttft_histogram(catalog: None) -> None:
    before = value("aurea_ttft_seconds_count", model="m-a")
    metrics.record_call(CallRecord(request_id="u", kind=CallKind.UNARY, model="m-a", ttft_s=1.0))
    assert value("aurea_ttft_seconds_count", model="m-a") == before


def test_names_outside_the_catalog_become_other(catalog: None) -> None:
    raw = "bob@example.com ignore previous instructions"
    metrics.record_call(
        CallRecord(
            request_id="x",
            kind=CallKind.UNARY,
            model=raw,
            provider=raw,
            attempts=[AttemptRecord(model=raw, provider=raw, error="MODEL_NOT_FOUND")],
        )
    )
    metrics.breaker_transition(raw, raw, raw)
    metrics.ratelimit_refused(raw, raw)
    metrics.cache_hit(raw)
    text = generate_latest(metrics.REGISTRY).decode()
    assert "bob@example.com" not in text
    assert value("aurea_tasks_total", model="other", status="failed") >= 1


def test_rpc_and_in_flight_series() -> None:
    edge = CallTelemetry(metrics_on=True)
    method = "InferenceService/Generate"
    count = value("aurea_requests_total", method=method, code="UNAVAILABLE")
    active = value("aurea_active_tasks")
    edge.opened("aurea.v1." + method, {}, "rid", "grpc")
    assert value("aurea_active_tasks") == active + 1
    edge.finished("UNAVAILABLE", 0.25)
    assert value("aurea_active_tasks") == active
    assert value("aurea_requests_total", method=method, code="UNAVAILABLE") == count + 1
    assert method_label("aurea.v1.AdminService/GetInfo") == "AdminService/GetInfo"
    # a non-inference RPC does not count as an active task
    edge.opened("aurea.v1.AdminService/GetInfo", {}, "rid", "grpc")
    assert value("aurea_active_tasks") == active
    edge.finished("OK", 0.001)


def test_subsystem_helpers() -> None:
    opened = value("aurea_breaker_transitions_total", provider="p1", model="m-a", state="open")
    metrics.breaker_transition("p1", "m-a", "open")
    assert (
        value("aurea_breaker_transitions_total", provider="p1", model="m-a", state="open")
        == opened + 1
    )
    states = [("p1", "m-a", "open"), ("p1", "m-b", "half_open"), ("p2", "m-b", "closed")]

    def source() -> list[tuple[str, str, str]]:
        return states

    metrics.watch_breakers(source)
    try:
        assert value("aurea_breaker_state", provider="p1", model="m-a") == 2
        assert value("aurea_breaker_state", provider="p1", model="m-b") == 1
        assert value("aurea_breaker_state", provider="p2", model="m-b") == 0
    finally:
        metrics.unwatch_breakers(source)
    assert (
        metrics.REGISTRY.get_sample_value("aurea_breaker_state", {"provider": "p1", "model": "m-a"})
        is None
    )
    waits = value("aurea_ratelimit_wait_seconds_count", model="m-a")
    metrics.ratelimit_waited("m-a", 0.3)
    assert value("aurea_ratelimit_wait_seconds_count", model="m-a") == waits + 1
    refusals = value("aurea_ratelimit_refusals_total", model="m-a", limit="tpm")
    metrics.ratelimit_refused("m-a", "tpm")
    assert value("aurea_ratelimit_refusals_total", model="m-a", limit="tpm") == refusals + 1
    metrics.task_enqueued("echo")
    metrics.task_started("echo")
    running = value("aurea_queue_tasks_running", kind="echo")
    metrics.task_finished("echo", "succeeded")
    assert value("aurea_queue_tasks_running", kind="echo") == running - 1
    metrics.resources_active("docker", 3)
    assert value("aurea_resources_active", backend="docker") == 3


def test_cache_hit_rate_is_computed_at_scrape() -> None:
    hits = value("cache_hits_total", cache_type="semantic")
    misses = value("cache_misses_total", cache_type="semantic")
    metrics.cache_hit("semantic")
    metrics.cache_miss("semantic")
    metrics.cache_miss("semantic")
    expected = (hits + 1) / (hits + misses + 3)
    assert value("cache_hit_rate", cache_type="semantic") == pytest.approx(expected)


class _Echo(Actor[str]):
    async def receive(self, msg: str) -> str:
        return msg


async def test_actor_series_are_read_from_the_system_at_scrape() -> None:
    system = ActorSystem()
    ref = system.spawn("metrics-echo", _Echo, capacity=7)
    metrics.watch_actors(system)
    try:
        async with system:
            ref.tell("a")
            assert value("aurea_actor_mailbox_capacity", actor="metrics-echo") == 7
            assert value("aurea_actor_alive", actor="metrics-echo") == 1
            while value("aurea_actor_handling_seconds_count", actor="metrics-echo") < 1:
                await __import__("asyncio").sleep(0.001)
    finally:
        metrics.unwatch_actors(system)
    assert metrics.REGISTRY.get_sample_value("aurea_actor_alive", {"actor": "metrics-echo"}) is None


def test_both_exposition_formats_render() -> None:
    metrics.build_info("1.2.3")
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'aurea_build_info{python="' in text
    om = generate_openmetrics(metrics.REGISTRY).decode()
    assert om.rstrip().endswith("# EOF")
    assert "_created" not in text  # disabled: they double the exposition
