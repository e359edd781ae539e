"""Fuzzing every RPC of every ``aurea.v1`` service through a raw channel: random bytes, mutated
valid messages, and messages built from the descriptors with extreme values (deep unicode, NUL
bytes, NaN and infinities, int64 edges, unknown enum values, huge repeated fields). Whatever
arrives, the server answers with a status that is neither INTERNAL nor UNKNOWN, within a
deadline (a unary call that times out is a hang), and is idle again afterwards."""

from __future__ import annotations

import contextlib
import math
import os
import resource
import threading
from typing import Any

import grpc
import pytest
from fuzz_harness import FUZZ, FUZZ_KEY, TALLY, Served
from google.protobuf import descriptor
from google.protobuf.message import Message
from hypothesis import given
from hypothesis import strategies as st

from aurea.server import _SERVICES

pytestmark = pytest.mark.integration

BAD = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
AUTH = (("authorization", f"Bearer {FUZZ_KEY}"),)
UNARY_TIMEOUT_S = 30.0
STREAM_WINDOW_S = 0.3  # a stream is read this long (or to its end), then cancelled
STREAM_MAX_MESSAGES = 20


def _methods() -> list[tuple[str, bool, type[Message]]]:
    out = []
    for module, _base, _add, name in _SERVICES:
        service = module.DESCRIPTOR.services_by_name[name]
        for m in service.methods:
            cls = _class_of(m.input_type)
            out.append((f"/aurea.v1.{name}/{m.name}", m.server_streaming, cls))
    return out


def _class_of(desc: descriptor.Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(desc)


METHODS = _methods()
PATHS = [path for path, _, _ in METHODS]
BY_PATH = {path: (stream, cls) for path, stream, cls in METHODS}

# -- values --------------------------------------------------------------------------------------
_T = descriptor.FieldDescriptor
INT_EDGES = [0, 1, -1, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), 10**12]
UINT_EDGES = [0, 1, 2**32 - 1, 2**64 - 1]
FLOATS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True),
)
TEXT = st.one_of(
    st.text(max_size=64),
    st.text(st.characters(codec="utf-8"), max_size=32),
    st.sampled_from(["", "\x00", "a\x00b", "\u202e", "\U0001f600" * 50, "sim-small", "auto"]),
    st.just("\u0301" * 3000),  # deep combining marks
    st.builds(lambda n: "x" * n, st.integers(0, 70_000)),
)


def _scalar(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == _T.TYPE_STRING:
        return TEXT
    if t == _T.TYPE_BYTES:
        return st.one_of(st.binary(max_size=256), st.just(b"\x00" * 10_000))
    if t == _T.TYPE_BOOL:
        return st.booleans()
    if t in (_T.TYPE_DOUBLE, _T.TYPE_FLOAT):
        return FLOATS
    if t == _T.TYPE_ENUM:
        return st.one_of(
            st.sampled_from([v.number for v in field.enum_type.values]),
            st.integers(-(2**31), 2**31 - 1),
        )
    if t in (_T.TYPE_INT32, _T.TYPE_SINT32, _T.TYPE_SFIXED32):
        return st.one_of(st.sampled_from(INT_EDGES[:5]), st.integers(-(2**31), 2**31 - 1))
    if t in (_T.TYPE_UINT32, _T.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t in (_T.TYPE_UINT64, _T.TYPE_FIXED64):
        return st.one_of(st.sampled_from(UINT_EDGES), st.integers(0, 2**64 - 1))
    return st.one_of(st.sampled_from(INT_EDGES), st.integers(-(2**63), 2**63 - 1))


def _fill(msg: Message, data: st.DataObject, depth: int) -> None:
    for field in msg.DESCRIPTOR.fields:
        if not data.draw(st.booleans()):
            continue
        repeated = field.is_repeated
        if field.type == _T.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                key_f = field.message_type.fields_by_name["key"]
                val_f = field.message_type.fields_by_name["value"]
                n = data.draw(st.sampled_from([0, 1, 3, 40, 2000]))
                target = getattr(msg, field.name)
                for _ in range(n):
                    k = data.draw(_scalar(key_f))
                    if val_f.type == _T.TYPE_MESSAGE:
                        _fill(target[k], data, depth + 1) if depth < 3 else None
                    else:
                        target[k] = data.draw(_scalar(val_f))
                continue
            if depth >= 4:
                continue
            if repeated:
                n = data.draw(st.sampled_from([0, 1, 2, 5, 300]))
                container = getattr(msg, field.name)
                for _ in range(n if depth < 2 else min(n, 2)):
                    _fill(container.add(), data, depth + 1)
            else:
                _fill(getattr(msg, field.name), data, depth + 1)
                getattr(msg, field.name).SetInParent()
            continue
        if repeated:
            n = data.draw(st.sampled_from([0, 1, 3, 50, 5000]))
            value = data.draw(_scalar(field))  # one value repeated: huge but cheap to draw
            getattr(msg, field.name).extend([value] * n)
        else:
            # e.g. a closed enum refusing a value: the field stays unset
            with contextlib.suppress(ValueError, TypeError):
                setattr(msg, field.name, data.draw(_scalar(field)))


SEEDS: dict[str, list[bytes]] = {}


def _seed(path: str, cls: type[Message]) -> bytes:
    """A valid message of the RPC to mutate: the empty one, or a meaningful one."""
    examples = SEEDS.get(path)
    if examples is None:
        msg = cls()
        for field in cls.DESCRIPTOR.fields:
            named = field.name in ("prompt", "kind", "model", "job_id", "name")
            if named and field.type == _T.TYPE_STRING and not field.is_repeated:
                setattr(msg, field.name, "sim-small" if field.name == "model" else "hello")
        examples = SEEDS[path] = [cls().SerializeToString(), msg.SerializeToString()]
    return examples[-1]


@st.composite
def _mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup", "varint"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup":
            data += data[: draw(st.integers(0, len(data)))]
        elif op == "varint":  # a field header with a huge length prefix
            data[pos:pos] = bytes([0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
    return bytes(data)


# -- calling -------------------------------------------------------------------------------------
_local = threading.local()


def _channel(served: Served) -> grpc.Channel:
    ch = getattr(_local, "channel", None)
    if ch is None or _local.target != served.target:
        ch = _local.channel = grpc.insecure_channel(
            served.target,
            options=[
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20),
            ],
        )
        _local.target = served.target
    return ch


def call(served: Served, target: str, path: str, payload: bytes) -> str:
    """One raw call; returns the status name (CANCELLED_BY_FUZZER when a stream was cut)."""
    streaming, _ = BY_PATH[path]
    channel = _channel(served)
    code: grpc.StatusCode
    if not streaming:
        method = channel.unary_unary(path)
        try:
            method(payload, timeout=UNARY_TIMEOUT_S, metadata=AUTH)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            details = exc.details()  # type: ignore[attr-defined]
            assert code not in BAD, f"{path} answered {code.name}: {details}"
            assert code is not grpc.StatusCode.DEADLINE_EXCEEDED, f"{path} hung"
    else:
        stream = channel.unary_stream(path)(payload, timeout=UNARY_TIMEOUT_S, metadata=AUTH)
        timer = threading.Timer(STREAM_WINDOW_S, stream.cancel)
        timer.start()
        try:
            for n, _ in enumerate(stream):
                if n >= STREAM_MAX_MESSAGES:
                    stream.cancel()
                    break
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            details = exc.details()  # type: ignore[attr-defined]
            assert code not in BAD, f"{path} answered {code.name}: {details}"
        finally:
            timer.cancel()
        if code is grpc.StatusCode.CANCELLED:
            TALLY[target]["CANCELLED_BY_FUZZER"] += 1
            return "CANCELLED_BY_FUZZER"
    TALLY[target][code.name] += 1
    return code.name


# -- the targets ---------------------------------------------------------------------------------
@FUZZ
@given(path=st.sampled_from(PATHS), payload=st.binary(max_size=4096))
def test_random_bytes(served: Served, path: str, payload: bytes) -> None:
    call(served, "grpc random bytes", path, payload)


@FUZZ
@given(data=st.data(), path=st.sampled_from(PATHS))
def test_mutated_messages(served: Served, data: st.DataObject, path: str) -> None:
    _, cls = BY_PATH[path]
    payload = data.draw(_mutated(_seed(path, cls)))
    call(served, "grpc mutated messages", path, payload)


@FUZZ
@given(data=st.data(), path=st.sampled_from(PATHS))
def test_structured_extremes(served: Served, data: st.DataObject, path: str) -> None:
    _, cls = BY_PATH[path]
    msg = cls()
    _fill(msg, data, 0)
    call(served, "grpc structured extremes", path, msg.SerializeToString())


def test_zz_server_is_idle_and_alive_after_fuzzing(served: Served) -> None:
    """Runs last in this module: nothing left in flight, no task left behind, still serving."""
    state = served.quiet()
    assert state["in_flight"] == 0, state
    channel = _channel(served)
    info = channel.unary_unary("/aurea.v1.AdminService/GetInfo")(
        b"", timeout=UNARY_TIMEOUT_S, metadata=AUTH
    )
    assert info  # a GetInfoResponse's bytes
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    TALLY["grpc server after fuzzing"][f"live tasks {state['tasks']}"] += 1
    TALLY["grpc server after fuzzing"][f"max rss {rss_mib:.0f} MiB"] += 1
    assert os.getpid()  # the process is still here
