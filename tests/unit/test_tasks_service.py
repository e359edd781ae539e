"""Unit tests for the ``Tasks`` facade: a submission is checked completely before anything is
stored, idempotency keys, listing pages and filters, waiting, watching, and the drain."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_tasks_scheduler import WAIT_S, gated, rig, until

from aurea.config import TasksSettings
from aurea.errors import (
    IdempotencyConflict,
    InvalidRequest,
    ShuttingDown,
    TaskFinished,
    TaskNotFound,
    UnknownTaskKind,
)
from aurea.tasks import (
    Current,
    ListQuery,
    Priority,
    Status,
    SubmitSpec,
    TaskChanged,
    TaskContext,
    TaskRegistry,
    WatchFilter,
)

pytestmark = pytest.mark.timeout(30)

SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}


def registry() -> TaskRegistry:
    reg = TaskRegistry()

    def must_be_small(payload: dict[str, Any]) -> None:
        if payload.get("n", 0) > 100:
            raise InvalidRequest.field("payload.n", "must be at most 100")

    @reg.task("t.echo", pool="p", payload_schema=SCHEMA, validate=must_be_small)
    async def echo(payload: dict[str, Any], ctx: TaskContext) -> Any:
        return payload

    @reg.task("t.fail", pool="p")
    async def fail(payload: dict[str, Any], ctx: TaskContext) -> None:
        raise RuntimeError("no")

    @reg.task("t.slow", pool="p", timeout_s=0.01)
    async def slow(payload: dict[str, Any], ctx: TaskContext) -> None:
        await asyncio.sleep(60)

    return reg


@pytest.mark.parametrize(
    ("spec", "error", "field"),
    [
        ({"kind": ""}, InvalidRequest, "kind"),
        ({"kind": "t.nope"}, UnknownTaskKind, None),
        ({"payload_json": "{not json"}, InvalidRequest, "payload_json"),
        ({"payload_json": '{"n": NaN}'}, InvalidRequest, "payload_json"),
        ({"payload_json": "[1, 2]"}, InvalidRequest, "payload_json"),
        ({"payload": {"n": float("inf")}}, InvalidRequest, "payload"),
        ({"payload": {"n": 1, "pad": "x" * 2000}}, InvalidRequest, "payload"),
        ({"payload": {"m": 1}}, InvalidRequest, "payload.n"),
        ({"payload": {"n": "one"}}, InvalidRequest, "payload.n"),
        ({"payload": {"n": 101}}, InvalidRequest, "payload.n"),
        ({"max_attempts": 21}, InvalidRequest, "max_attempts"),
        ({"max_attempts": -1}, InvalidRequest, "max_attempts"),
        ({"timeout_s": 86_401.0}, InvalidRequest, "timeout_ms"),
        ({"deadline": 1.0}, InvalidRequest, "deadline"),
        ({"idempotency_key": "k" * 129}, InvalidRequest, "idempotency_key"),
        ({"job_id": "j" * 129}, InvalidRequest, "job_id"),
    ],
)
async def test_a_bad_submission_is_refused_and_nothing_is_stored(
    spec: dict[str, Any], error: type[Exception], field: str | None
) -> None:
    async with rig(registry(), pools={"p": 0}) as r:
        r.tasks._settings = TasksSettings(max_payload_bytes=1024)
        args: dict[str, Any] = {"kind": "t.echo", "payload": {"n": 1}, **spec}
        with pytest.raises(error) as caught:
            await r.tasks.submit(SubmitSpec(**args))
        if field is not None:
            assert isinstance(caught.value, InvalidRequest)
            assert field in [v.field for v in caught.value.violations]
        assert await r.store.counts() == ()


async def test_an_idempotency_key_returns_the_first_task_and_refuses_a_different_one() -> None:
    async with rig(registry(), pools={"p": 0}) as r:
        first = await r.tasks.submit(
            SubmitSpec(kind="t.echo", payload={"n": 1}, idempotency_key="k1")
        )
        again = await r.tasks.submit(
            SubmitSpec(
                kind="t.echo",
                payload_json='{"n": 1}',
                idempotency_key="k1",
                priority=Priority.CRITICAL,
            )
        )
        assert not first.deduplicated and again.deduplicated
        assert again.info.task_id == first.info.task_id
        with pytest.raises(IdempotencyConflict, match="k1"):
            await r.tasks.submit(SubmitSpec(kind="t.echo", payload={"n": 2}, idempotency_key="k1"))
        page, _ = await r.tasks.list(ListQuery())
        assert [i.task_id for i in page] == [first.info.task_id]
        queued = [c for c in r.changes if c.previous is None]
        assert len(queued) == 1  # one submission event, for the one task


async def test_listing_pages_through_tasks_in_submission_order_with_filters() -> None:
    async with rig(registry(), pools={"p": 0}) as r:
        ids = [await r.submit("t.echo", {"n": i}, job_id=f"j{i % 2}") for i in range(25)]
        seen: list[str] = []
        token = ""
        for _ in range(10):
            page, token = await r.tasks.list(ListQuery(page_size=10, page_token=token))
            seen += [i.task_id for i in page]
            if not token:
                break
        assert seen == ids
        odd, _ = await r.tasks.list(ListQuery(job_id="j1", page_size=100))
        assert [i.task_id for i in odd] == ids[1::2]
        with pytest.raises(InvalidRequest, match="page_token"):
            await r.tasks.list(ListQuery(page_token="garbage"))
        _, token = await r.tasks.list(ListQuery(page_size=5))
        with pytest.raises(InvalidRequest, match="same filters"):
            await r.tasks.list(ListQuery(page_size=5, page_token=token, kind="t.echo"))
        with pytest.raises(InvalidRequest, match="page_size"):
            await r.tasks.list(ListQuery(page_size=-1))


async def test_status_filters_tell_timed_out_from_failed() -> None:
    async with rig(registry()) as r:
        failed = await r.submit("t.fail")
        timed_out = await r.submit("t.slow")
        ok = await r.submit("t.echo", {"n": 5})
        for t in (failed, timed_out, ok):
            await r.wait(t)

        async def listed(*statuses: Status) -> list[str]:
            page, _ = await r.tasks.list(ListQuery(statuses=frozenset(statuses)))
            return [i.task_id for i in page]

        assert await listed(Status.FAILED) == [failed]
        assert await listed(Status.TIMED_OUT) == [timed_out]
        assert await listed(Status.TIMED_OUT, Status.SUCCEEDED) == [timed_out, ok]
        assert await listed(Status.QUEUED) == []
        full, _ = await r.tasks.list(ListQuery(statuses=frozenset({Status.SUCCEEDED}), full=True))
        assert full[0].result() == {"n": 5}


async def test_get_waits_for_the_end_and_knows_bad_ids() -> None:
    reg = registry()
    gate = gated(reg)
    async with rig(reg) as r:
        t = await r.submit("t.gate")
        assert (await r.tasks.get(t)).status in (Status.QUEUED, Status.RUNNING)
        waiting = asyncio.ensure_future(r.tasks.get(t, wait_s=WAIT_S))
        await until(lambda: gate.entered == [t], "the handler to start")
        assert not waiting.done()
        gate.open.set()
        assert (await waiting).status is Status.SUCCEEDED
        with pytest.raises(TaskNotFound):
            await r.tasks.get("no-such-task")
        with pytest.raises(InvalidRequest):
            await r.tasks.get("")
        with pytest.raises(InvalidRequest, match="wait_ms"):
            await r.tasks.get(t, wait_s=-1)
        with pytest.raises(TaskFinished, match="succeeded"):
            await r.tasks.cancel(t)
        with pytest.raises(TaskNotFound):
            await r.tasks.cancel("no-such-task")


async def test_a_watch_sends_current_states_first_then_each_change_once() -> None:
    reg = registry()
    gate = gated(reg)
    async with rig(reg, pools={"p": 1}) as r:
        running = await r.submit("t.gate")
        await until(lambda: gate.entered == [running], "the first task to start")
        queued = await r.submit("t.gate")
        got: list[Any] = []

        async def watch() -> None:
            async for item in r.tasks.watch(WatchFilter(pool="p"), include_current=True):
                got.append(item)
                ended = [i for i in got if isinstance(i, TaskChanged) and i.info.status.terminal]
                if len(ended) == 2:
                    return

        watcher = asyncio.ensure_future(watch())
        await until(lambda: len(got) >= 2, "the current states")
        gate.open.set()
        await asyncio.wait_for(watcher, WAIT_S)
        assert [(type(i), i.info.task_id) for i in got[:2]] == [
            (Current, running),
            (Current, queued),
        ]
        changes = [(i.info.task_id, i.info.status) for i in got[2:]]
        assert changes.count((running, Status.SUCCEEDED)) == 1
        assert [s for t, s in changes if t == queued] == [Status.RUNNING, Status.SUCCEEDED]
        assert all(isinstance(i, TaskChanged) for i in got[2:])


async def test_the_drain_ends_watches_and_waits() -> None:
    reg = registry()
    gated(reg)
    async with rig(reg) as r:
        t = await r.submit("t.gate")
        stream = r.tasks.watch(WatchFilter(), include_current=False)
        nxt = asyncio.ensure_future(stream.__anext__())
        waiting = asyncio.ensure_future(r.tasks.get(t, wait_s=WAIT_S))
        await asyncio.sleep(0.05)
        r.hub.close()
        with pytest.raises(ShuttingDown):
            await asyncio.wait_for(nxt, WAIT_S)
        info = await asyncio.wait_for(waiting, WAIT_S)
        assert not info.status.terminal  # returned as it is, not held until the end
        await stream.aclose()
