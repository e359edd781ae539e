"""Unit tests for the task capability's small parts: kinds and the decorator, payload schemas,
the store envelope and error encoding, retry backoff, the event fan-out, and the [tasks]
config section."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from aurea.config import ConfigError, build_settings
from aurea.errors import ShuttingDown, SubscriberLagged
from aurea.stores import TaskRecord, TaskState
from aurea.stores.tasks import DEADLINE_EXCEEDED, LEASE_EXPIRED
from aurea.tasks import RetryPolicy, Status, TaskContext, TaskKind, TaskRegistry, load_modules
from aurea.tasks.model import (
    Reason,
    canonical_json,
    decode_error,
    encode_envelope,
    encode_error,
    info_of,
    split_envelope,
)
from aurea.tasks.schema import check_schema, violations
from aurea.telemetry.events import Dropped, EventBus, Hub, Overflow, type_matcher

pytestmark = pytest.mark.timeout(10)


async def _noop(payload: dict[str, Any], ctx: TaskContext) -> None:
    return None


def _ctx() -> TaskContext:
    return TaskContext(
        task_id="t",
        kind="k",
        pool="p",
        job_id="",
        attempt=1,
        max_attempts=1,
        request_id="r",
        deadline=1e18,
    )


# -- kinds and the registry ----------------------------------------------------------------------


def test_the_decorator_registers_a_kind_with_its_policy_and_docstring() -> None:
    reg = TaskRegistry()

    @reg.task("compute.sum", pool="general", timeout_s=10, retries=2, backoff_s=0.5)
    async def compute_sum(payload: dict[str, Any], ctx: TaskContext) -> int:
        """Adds the numbers.

        More text that is not the description."""
        return sum(payload["numbers"])

    kind = reg.get("compute.sum")
    assert kind is not None and kind.handler is compute_sum
    assert (kind.pool, kind.timeout_s, kind.retry.max_attempts) == ("general", 10, 3)
    assert kind.retry.backoff_s == 0.5
    assert kind.description == "Adds the numbers."
    assert [k.name for k in reg] == ["compute.sum"] and "compute.sum" in reg


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"name": ""}, "name"),
        ({"name": "Has Space"}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"pool": "Bad Pool"}, "pool"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": float("nan")}, "timeout_s"),
        ({"timeout_s": 86_401}, "timeout_s"),
        ({"payload_schema": {"type": "nonsense"}}, "type"),
    ],
)
def test_a_bad_kind_is_refused_at_registration(kwargs: dict[str, Any], words: str) -> None:
    args: dict[str, Any] = {"name": "ok.kind", "handler": _noop, **kwargs}
    with pytest.raises(ValueError, match=words):
        TaskKind(**args)


@pytest.mark.parametrize(
    "policy",
    [
        {"max_attempts": 0},
        {"max_attempts": 21},
        {"backoff_s": -1},
        {"backoff_s": 5, "backoff_max_s": 1},
        {"backoff_max_s": float("inf")},
    ],
)
def test_a_bad_retry_policy_is_refused(policy: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**policy)


def test_a_taken_name_is_refused_unless_it_is_the_same_function() -> None:
    reg = TaskRegistry()
    reg.add(TaskKind(name="a.b", handler=_noop))
    reg.add(TaskKind(name="a.b", handler=_noop))  # the same handler again: a re-import
    with pytest.raises(ValueError, match="already registered"):

        @reg.task("a.b")
        async def other(payload: dict[str, Any], ctx: TaskContext) -> None:
            return None


def test_backoff_doubles_per_retry_with_equal_jitter_and_a_cap() -> None:
    p = RetryPolicy(max_attempts=10, backoff_s=1.0, backoff_max_s=5.0)
    assert [p.delay_s(n, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.5]
    assert p.delay_s(2, 0.999999) == pytest.approx(2.0)
    assert p.delay_s(1000, 0.5) == pytest.approx(3.75)  # a huge attempt number stays capped


async def test_a_plain_function_runs_on_a_worker_thread() -> None:
    seen: list[bool] = []

    def blocking(payload: dict[str, Any], ctx: TaskContext) -> int:
        seen.append(threading.current_thread() is threading.main_thread())
        return int(payload["x"]) * 2

    kind = TaskKind(name="sync.kind", handler=blocking)
    assert await kind.invoke({"x": 21}, _ctx()) == 42
    assert seen == [False]


def test_a_module_that_does_not_import_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"tasks\.modules.*no_such_module_here"):
        load_modules(["no_such_module_here"])


def test_progress_is_clamped_and_nan_refused() -> None:
    got: list[tuple[float, str]] = []
    ctx = TaskContext(
        task_id="t",
        kind="k",
        pool="p",
        job_id="",
        attempt=1,
        max_attempts=1,
        request_id="r",
        deadline=0.0,
        _report=lambda f, m: got.append((f, m)),
    )
    ctx.progress(1.5, "x" * 1000)
    ctx.progress(-1)
    with pytest.raises(ValueError):
        ctx.progress(float("nan"))
    assert got == [(1.0, "x" * 256), (0.0, "")]
    assert ctx.remaining_s == 0.0


# -- payload schemas -----------------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["n"],
    "properties": {
        "n": {"type": "integer", "minimum": 1, "maximum": 10},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
        "mode": {"type": "string", "enum": ["a", "b"]},
    },
    "additionalProperties": False,
}


def test_a_matching_payload_has_no_violations() -> None:
    check_schema(SCHEMA)
    assert violations({"n": 3, "tags": ["ab"], "mode": "a"}, SCHEMA) == []
    assert violations({"n": 3.0}, SCHEMA) == []  # a whole float is an integer in JSON


def test_violations_name_each_bad_field() -> None:
    bad = violations({"tags": ["abcd", 1, "x"], "mode": "c", "extra": True}, SCHEMA)
    fields = {v.field: v.description for v in bad}
    assert fields["payload.n"] == "is required"
    assert "at most 2 items" in fields["payload.tags"]
    assert "at most 3 characters" in fields["payload.tags[0]"]
    assert fields["payload.tags[1]"] == "must be string"
    assert "one of" in fields["payload.mode"]
    assert fields["payload.extra"] == "is not a known field"
    assert [v.field for v in violations({"n": 0}, SCHEMA)] == ["payload.n"]
    assert [v.field for v in violations({"n": True}, SCHEMA)] == ["payload.n"]
    assert len(violations({f"k{i}": 1 for i in range(50)}, SCHEMA)) == 20  # bounded


# -- the store envelope and errors ---------------------------------------------------------------


def _record(**kw: Any) -> TaskRecord:
    base: dict[str, Any] = {
        "task_id": "t1",
        "kind": "k",
        "pool": "p",
        "payload": encode_envelope('{"a":1}', timeout_s=2.5),
        "priority": 1,
        "job_id": "",
        "idempotency_key": "",
        "max_attempts": 1,
        "deadline": None,
        "state": TaskState.QUEUED,
        "seq": 1,
        "rank": 0.0,
        "attempts": 0,
        "worker_id": "",
        "lease_until": None,
        "available_at": 0.0,
        "cancel_requested": False,
        "result": "",
        "error": "",
        "created_at": 0.0,
        "updated_at": 0.0,
        "finished_at": None,
    }
    return TaskRecord(**{**base, **kw})


def test_the_envelope_carries_the_timeout_and_the_payload_untouched() -> None:
    text = encode_envelope(canonical_json({"b": [1, "x\ny"], "a": None}), timeout_s=2.5)
    timeout_s, payload = split_envelope(text)
    assert timeout_s == 2.5 and payload == '{"a":null,"b":[1,"x\\ny"]}'
    assert split_envelope('{"raw": 1}') == (0.0, '{"raw": 1}')  # stored by another writer
    assert split_envelope('{"timeout_s": -1, "v": 1}\n{}') == (0.0, '{"timeout_s": -1, "v": 1}\n{}')
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_errors_keep_their_reason_and_the_stores_own_texts_are_recognized() -> None:
    assert decode_error(encode_error("BUDGET_EXCEEDED", "job j over")) == (
        "BUDGET_EXCEEDED",
        "job j over",
    )
    assert decode_error(LEASE_EXPIRED) == (Reason.LEASE_EXPIRED, LEASE_EXPIRED)
    assert decode_error(DEADLINE_EXCEEDED) == (Reason.DEADLINE_EXCEEDED, DEADLINE_EXCEEDED)
    assert decode_error("something else") == (Reason.HANDLER_ERROR, "something else")
    assert decode_error("") == ("", "")


def test_a_failure_whose_reason_is_a_timeout_shows_as_timed_out() -> None:
    timed_out = _record(state=TaskState.FAILED, error=encode_error("TIMED_OUT", "slow"))
    failed = _record(state=TaskState.FAILED, error=encode_error("HANDLER_ERROR", "boom"))
    assert info_of(timed_out).status is Status.TIMED_OUT and info_of(timed_out).timeout_s == 2.5
    assert info_of(failed).status is Status.FAILED
    done = info_of(_record(state=TaskState.SUCCEEDED, result='{"r":[1,2]}'))
    assert done.result() == {"r": [1, 2]} and done.payload() == {"a": 1}
    assert info_of(_record()).result() is None


# -- event fan-out -------------------------------------------------------------------------------


async def test_a_reader_too_far_behind_is_ended_when_overflow_closes() -> None:
    hub: Hub[int] = Hub()
    with hub.subscribe(capacity=3, overflow=Overflow.CLOSE) as sub:
        for i in range(4):
            hub.publish(i)
        with pytest.raises(SubscriberLagged):
            await sub.get()
        assert hub.subscribers == 0


async def test_dropping_the_oldest_reports_how_many_in_their_place() -> None:
    hub: Hub[int] = Hub()
    with hub.subscribe(lambda i: i % 2 == 0, capacity=2, overflow=Overflow.DROP_OLDEST) as sub:
        for i in range(10):  # 0 2 4 6 8 match
            hub.publish(i)
        assert [await sub.get() for _ in range(3)] == [Dropped(3), 6, 8]
        assert sub.get_nowait() is None


async def test_closing_the_hub_ends_readers_after_what_they_were_sent() -> None:
    hub: Hub[str] = Hub()
    sub = hub.subscribe()
    hub.publish("a")
    waiter = asyncio.ensure_future(sub.get())
    assert await waiter == "a"
    pending = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    hub.close()
    with pytest.raises(ShuttingDown):
        await pending
    with pytest.raises(ShuttingDown):
        await hub.subscribe().get()  # a subscription after the close ends at once


async def test_a_broken_filter_does_not_fail_the_publisher() -> None:
    hub: Hub[int] = Hub()
    with hub.subscribe(lambda i: 1 // i > 0) as sub:
        hub.publish(0)
        hub.publish(1)
        assert await sub.get() == 1


async def test_system_events_are_numbered_and_filtered_by_type_or_prefix() -> None:
    bus = EventBus(clock=lambda: 123.0)
    with bus.watch(["task.", "actor.dead"]) as sub:
        bus.publish("task.queued", task_id="t1", attempt=0)
        bus.publish("budget.exceeded", job_id="j")
        bus.publish("actor.dead", actor="router")
        first, second = await sub.get(), await sub.get()
    assert not isinstance(first, Dropped) and not isinstance(second, Dropped)
    assert (first.type, dict(first.attributes), first.sequence) == (
        "task.queued",
        {"task_id": "t1", "attempt": "0"},
        1,
    )
    assert (second.type, second.sequence, second.time_s) == ("actor.dead", 3, 123.0)
    assert bus.sequence == 3
    everything = type_matcher([])
    assert everything(first) and everything(second)


# -- the [tasks] section -------------------------------------------------------------------------


def test_pools_come_from_a_table_a_list_or_the_environment() -> None:
    assert build_settings({"tasks": {"pools": {"llm": 2, "Gen": 0}}}).tasks.pool_sizes == {
        "llm": 2,
        "gen": 0,
    }
    assert build_settings({"tasks": {"pools": ["a=1"]}}).tasks.pool_sizes == {"a": 1}
    env = {"AUREA_TASKS_POOLS": "x=3, y=4"}
    assert build_settings({}, env).tasks.pool_sizes == {"x": 3, "y": 4}
    assert set(build_settings({}).tasks.pool_sizes) == {
        "llm",
        "tool",
        "whisper",
        "background",
        "general",
    }


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"pools": ["a=1025"]}, "workers must be in"),
        ({"pools": ["a=-1"]}, "workers must be in"),
        ({"pools": ["a"]}, "name=workers"),
        ({"pools": ["bad name=1"]}, "name=workers"),
        ({"pools": ["a=1", "A=2"]}, "twice"),
        ({"pools": []}, "at least one"),
        ({"modules": ["not a module"]}, "module name"),
        ({"cpu_threshold_percent": 0}, "cpu_threshold_percent"),
        ({"lease_s": 0}, "lease_s"),
        ({"store": "redis"}, "store"),
    ],
)
def test_bad_task_settings_name_the_key(raw: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        build_settings({"tasks": raw})
