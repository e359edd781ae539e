"""The transport-neutral edge: fail-closed scopes checked against the protos' own contract,
API-key forms, request ids, draining, in-flight counting and the one ``rpc_finished`` line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from aurea.config import ApiKey, hash_key
from aurea.edge import (
    USER_OPERATIONS,
    CallTracker,
    Edge,
    current_scope,
    required_scope,
)
from aurea.errors import PermissionDenied, ShuttingDown, Unauthenticated
from aurea.runtime.context import request_id_var
from aurea.types import Scope
from aurea.v1 import (
    admin_pb2,
    inference_pb2,
    infrastructure_pb2,
    ledger_pb2,
    router_pb2,
    task_pb2,
)

MODULES = (admin_pb2, inference_pb2, infrastructure_pb2, ledger_pb2, router_pb2, task_pb2)
PROTOS = Path(__file__).resolve().parents[2] / "protos" / "aurea" / "v1"
USER, ADMIN = "user-key-0123456789", "admin-key-0123456789"
KEYS = (
    ApiKey(name="u", sha256=hash_key(USER), scopes=frozenset({"user"})),
    ApiKey(name="a", sha256=hash_key(ADMIN), scopes=frozenset({"admin"})),
)


def descriptor_operations() -> list[str]:
    """Every aurea.v1 RPC, from the generated descriptors (not from the production table)."""
    return sorted(
        f"{service.full_name}/{m.name}"
        for module in MODULES
        for service in module.DESCRIPTOR.services_by_name.values()
        for m in service.methods
    )


def documented_scopes() -> dict[str, Scope]:
    """The scope each RPC's comment in protos/ says it needs: the public contract."""
    out: dict[str, Scope] = {}
    for path in PROTOS.glob("*.proto"):
        text = path.read_text()
        for service in re.finditer(r"((?://[^\n]*\n)*)service (\w+) \{(.*?)\n\}", text, re.S):
            header, name, body = service.groups()
            every = re.search(r"Every RPC needs the `(\w+)` scope", header)
            for rpc in re.finditer(r"((?:[ \t]*//[^\n]*\n)*)[ \t]*rpc (\w+)\(", body):
                own = re.search(r"Needs the `(\w+)` scope", rpc.group(1)) or every
                assert own, f"{name}.{rpc.group(2)}: the proto does not say which scope it needs"
                out[f"aurea.v1.{name}/{rpc.group(2)}"] = Scope(own.group(1))
    return out


OPERATIONS = descriptor_operations()


def test_the_descriptors_have_operations() -> None:
    assert len(OPERATIONS) >= 30  # guards the derivation itself against silently finding none


def test_every_operation_has_the_scope_its_proto_documents() -> None:
    documented = documented_scopes()
    assert sorted(documented) == OPERATIONS
    wrong = {op: required_scope(op) for op in OPERATIONS if required_scope(op) != documented[op]}
    assert not wrong, f"scope differs from the proto's contract: {wrong}"


def test_the_user_table_names_only_real_operations() -> None:
    assert set(USER_OPERATIONS) <= set(OPERATIONS), set(USER_OPERATIONS) - set(OPERATIONS)


@pytest.mark.parametrize(
    "operation",
    [
        "aurea.v1.FutureService/DoSomething",
        "aurea.v1.InferenceService/GenerateBatch",
        "aurea.v2.InferenceService/Generate",
        "",
        "POST /v1/fine_tuning/jobs",
        "GET /v1/files",
    ],
)
def test_an_unclassified_operation_needs_admin(operation: str) -> None:
    assert required_scope(operation) is Scope.ADMIN
    edge = Edge(keys=KEYS)
    with pytest.raises(PermissionDenied) as info:
        open_call(edge, operation, bearer(USER))
    assert "admin" in info.value.message
    assert open_call(edge, operation, bearer(ADMIN)).principal == "a"


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def open_call(edge: Edge, operation: str, headers: dict[str, str], **kw: Any) -> Any:
    started = edge.clock()
    status = "OK"
    try:
        return edge.open_call(operation, headers, **kw)
    except Exception as exc:
        status = type(exc).__name__
        raise
    finally:
        edge.finish_call(status, started)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_each_operation_admits_exactly_the_keys_its_scope_allows(operation: str) -> None:
    edge = Edge(keys=KEYS)
    if required_scope(operation) is Scope.USER:
        scope = open_call(edge, operation, bearer(USER))
        assert scope.principal == "u" and scope.scopes == {Scope.USER}
    else:
        with pytest.raises(PermissionDenied) as info:
            open_call(edge, operation, {"x-api-key": USER})
        assert "'admin' scope" in info.value.message and USER not in info.value.message
    scope = open_call(edge, operation, {"x-api-key": ADMIN})
    assert scope.scopes == {Scope.USER, Scope.ADMIN}  # admin includes user
    open_scope = open_call(Edge(keys=()), operation, {})
    assert open_scope.principal == "" and open_scope.scopes == {Scope.USER, Scope.ADMIN}
    assert edge.tracker.in_flight == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-key-0123456789"),
        {"x-api-key": "wrong-key-0123456789"},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Bearer "},
        {"authorization": USER},
    ],
)
def test_missing_or_wrong_key_is_unauthenticated(headers: dict[str, str]) -> None:
    edge = Edge(keys=KEYS)
    with pytest.raises(Unauthenticated) as info:
        open_call(edge, "aurea.v1.InferenceService/Generate", headers)
    for value in headers.values():
        secret = value.split(" ", 1)[-1]
        if secret:
            assert secret not in info.value.message
    assert edge.tracker.in_flight == 0


def test_a_lowercase_bearer_scheme_is_accepted() -> None:
    scope = open_call(
        Edge(keys=KEYS), "aurea.v1.InferenceService/Generate", {"authorization": f"bearer {USER}"}
    )
    assert scope.principal == "u"


def test_the_call_scope_carries_request_id_principal_and_deadline() -> None:
    now = [100.0]
    edge = Edge(keys=KEYS, clock=lambda: now[0])
    scope = edge.open_call(
        "aurea.v1.InferenceService/Embed",
        {"x-request-id": "mine-1", "x-api-key": USER},
        deadline=107.5,
    )
    try:
        assert scope.request_id == "mine-1" == request_id_var.get()
        assert current_scope.get() is scope
        assert scope.operation == "aurea.v1.InferenceService/Embed"
        assert scope.deadline == 107.5 and scope.transport == "grpc" and not scope.labels
        assert structlog.contextvars.get_contextvars()["request_id"] == "mine-1"
        assert structlog.contextvars.get_contextvars()["api_key"] == "u"
    finally:
        edge.finish_call("OK", now[0])
    no_deadline = edge.open_call("aurea.v1.AdminService/GetInfo", {"x-api-key": USER}, None)
    edge.finish_call("OK", now[0])
    assert no_deadline.deadline is None


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "tab\tid", "é-accent"])
def test_a_bad_request_id_is_replaced(bad: str) -> None:
    scope = Edge(keys=()).open_call("aurea.v1.AdminService/GetInfo", {"x-request-id": bad})
    assert re.fullmatch(r"[0-9a-f]{32}", scope.request_id)
    assert request_id_var.get() == scope.request_id


def test_a_refused_call_still_has_its_request_id() -> None:
    with pytest.raises(Unauthenticated):
        open_call(Edge(keys=KEYS), "aurea.v1.InferenceService/Generate", {"x-request-id": "r-9"})
    assert request_id_var.get() == "r-9"


def test_draining_refuses_calls_but_get_info() -> None:
    tracker = CallTracker()
    edge = Edge(keys=(), tracker=tracker)
    tracker.draining = True
    with pytest.raises(ShuttingDown) as info:
        open_call(edge, "aurea.v1.InferenceService/Generate", {})
    assert info.value.retry_after_s is not None
    assert open_call(edge, "aurea.v1.AdminService/GetInfo", {}).operation.endswith("GetInfo")
    assert tracker.in_flight == 0


async def test_in_flight_counts_open_calls_and_wait_idle_waits_for_them() -> None:
    edge = Edge(keys=KEYS)
    started = edge.clock()
    edge.open_call("aurea.v1.AdminService/GetInfo", {"x-api-key": USER})
    with pytest.raises(Unauthenticated):
        edge.open_call("aurea.v1.AdminService/GetInfo", {})
    assert edge.tracker.in_flight == 2  # a refused call is counted until finish_call
    idle = edge.tracker.wait_idle()
    edge.finish_call("OK", started)
    edge.finish_call("UNAUTHENTICATED", started)
    await idle
    assert edge.tracker.in_flight == 0


def test_finish_call_writes_one_line_with_the_status() -> None:
    edge = Edge(keys=())
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        started = edge.clock()
        edge.open_call("aurea.v1.InferenceService/Generate", {"x-request-id": "line-1"})
        edge.finish_call("RESOURCE_EXHAUSTED", started)
    lines = [e for e in logs if e["event"] == "rpc_finished"]
    assert len(lines) == 1
    assert lines[0]["status"] == "RESOURCE_EXHAUSTED"
    assert lines[0]["request_id"] == "line-1" and lines[0]["rpc"] == "Generate"
    assert lines[0]["latency_ms"] >= 0


def test_a_failing_log_sink_does_not_fail_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    import aurea.edge._call as call_module

    class Broken:
        def info(self, *a: Any, **k: Any) -> None:
            raise BrokenPipeError("stdout is closed")

        error = info

    monkeypatch.setattr(call_module, "log", Broken())
    edge = Edge(keys=())
    started = edge.clock()
    edge.open_call("aurea.v1.InferenceService/Generate", {})
    edge.finish_call("OK", started)
    call_module.log_bug(RuntimeError("x"))
    assert edge.tracker.in_flight == 0
