"""The key ring and the edge's per-key bookkeeping, without a server: constant-time matching
over every digest, disable/enable, rotation with and without grace (on a fake clock), streams
counted per key, and calls ended after the revocation grace."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest

from aurea.config import ApiKey
from aurea.edge import Edge, KeyRing, digest_of, revoked_now
from aurea.errors import (
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
)


def _key(name: str, secret: str, **policy: object) -> ApiKey:
    return ApiKey(name=name, sha256=digest_of(secret), scopes=frozenset({"user"}), **policy)  # type: ignore[arg-type]


def test_match_scans_every_digest_without_stopping(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing([_key(f"k{i}", f"secret-{i}") for i in range(5)])
    compared = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert ring.match("secret-0").key.name == "k0"  # the first entry matches...
    assert len(compared) == 5  # ...and every other digest is still compared
    compared.clear()
    with pytest.raises(Unauthenticated) as info:
        ring.match("nope")
    assert len(compared) == 5 and "nope" not in str(info.value)


def test_only_digests_are_kept() -> None:
    ring = KeyRing([_key("a", "the-secret-value")])
    assert "the-secret-value" not in repr(ring.__dict__)
    assert ring.get("a").sha256 == hashlib.sha256(b"the-secret-value").hexdigest()  # type: ignore[union-attr]


def test_disable_and_enable() -> None:
    ring = KeyRing([_key("a", "secret-a")])
    ring.set_disabled("a", True)
    with pytest.raises(Unauthenticated, match="disabled"):
        ring.match("secret-a")
    ring.set_disabled("a", False)
    assert ring.match("secret-a").key.name == "a"
    with pytest.raises(NotFound):
        ring.set_disabled("b", True)


def test_rotation_grace_on_a_fake_clock() -> None:
    now = [100.0]
    ring = KeyRing([_key("a", "old-secret")], clock=lambda: now[0])
    ring.rotate("a", digest_of("new-secret"), grace_s=30)
    assert ring.match("old-secret").key.name == "a"  # within the grace
    assert ring.match("new-secret").key.name == "a"
    now[0] = 130.0
    with pytest.raises(Unauthenticated, match="rotated"):
        ring.match("old-secret")
    assert ring.match("new-secret").key.sha256 == digest_of("new-secret")
    # a second rotation ends the first one's rotated-out secret and starts a new grace
    ring.rotate("a", digest_of("third"), grace_s=0)
    for gone in ("old-secret", "new-secret"):
        with pytest.raises(Unauthenticated):
            ring.match(gone)
    assert ring.match("third").key.name == "a"


def test_add_refuses_duplicates_and_bad_policies() -> None:
    ring = KeyRing([_key("a", "secret-a")])
    with pytest.raises(FailedPrecondition):
        ring.add(_key("a", "other"))
    with pytest.raises(FailedPrecondition):
        ring.add(_key("b", "secret-a"))
    with pytest.raises(InvalidRequest):
        ring.add(_key("c", "x", rpm=-1))
    with pytest.raises(InvalidRequest):
        ring.add(ApiKey(name="d", sha256="zz", scopes=frozenset({"user"})))
    assert ring.add(_key("e", "secret-e")).name == "e"
    assert ring.match("secret-e").key.name == "e"


OP = "aurea.v1.InferenceService/GenerateStream"


async def test_streams_are_counted_per_key() -> None:
    edge = Edge(keys=[_key("a", "sa", max_streams=1), _key("b", "sb")], max_streams_per_key=2)

    async def open_stream(secret: str, hold: asyncio.Event) -> str:
        started = edge.clock()
        status = "OK"
        try:
            edge.open_call(OP, {"x-api-key": secret})
            edge.begin_stream()
            await hold.wait()
        except ResourceExhausted:
            status = "RESOURCE_EXHAUSTED"
        finally:
            edge.finish_call(status, started)
        return status

    hold = asyncio.Event()
    first = asyncio.create_task(open_stream("sa", hold))
    b1 = asyncio.create_task(open_stream("sb", hold))
    b2 = asyncio.create_task(open_stream("sb", hold))
    await asyncio.sleep(0)
    assert await open_stream("sa", hold) == "RESOURCE_EXHAUSTED"  # the key's own max_streams
    assert await open_stream("sb", hold) == "RESOURCE_EXHAUSTED"  # the server's default
    assert edge.streams_of("a") == 1 and edge.streams_of("b") == 2
    hold.set()
    assert await asyncio.gather(first, b1, b2) == ["OK", "OK", "OK"]
    assert edge.streams_of("a") == edge.streams_of("b") == 0


async def test_revoke_ends_running_calls_after_the_grace_unless_enabled_again() -> None:
    edge = Edge(keys=[_key("a", "sa")], revoked_grace_s=0.01)
    seen: list[bool] = []

    async def call() -> None:
        started = edge.clock()
        try:
            edge.open_call(OP, {"x-api-key": "sa"})
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append(revoked_now())
            raise
        finally:
            edge.finish_call("X", started)

    task = asyncio.create_task(call())
    await asyncio.sleep(0)
    edge.keys.set_disabled("a", True)
    edge.revoke("a")
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert seen == [True]

    # disabled then enabled again within the grace: the call runs on
    edge.keys.set_disabled("a", False)
    task = asyncio.create_task(call())
    await asyncio.sleep(0)
    edge.keys.set_disabled("a", True)
    edge.revoke("a")
    edge.keys.set_disabled("a", False)
    await asyncio.sleep(0.1)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [True, False]
