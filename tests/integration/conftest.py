"""Integration fixtures: an in-process Aurea server on a free port, stubs for every aurea.v1
service, and a decoder for the ``google.rpc`` details of a failed call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from structlog.testing import capture_logs

from aurea.config import Settings
from aurea.telemetry.logging import context_processors
from aurea.testing import RunningServer, running_server, test_settings
from aurea.v1 import (
    admin_pb2_grpc,
    inference_pb2_grpc,
    infrastructure_pb2_grpc,
    ledger_pb2_grpc,
    router_pb2_grpc,
    task_pb2_grpc,
)

USER_KEY = "user-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
API_KEYS_ENV = f"user:{USER_KEY},admin:{ADMIN_KEY}"


@dataclass
class RpcDetails:
    """What a failed call carried: its code, message and decoded ``google.rpc`` details."""

    code: grpc.StatusCode
    message: str
    status: status_pb2.Status | None
    error_info: error_details_pb2.ErrorInfo | None = None
    bad_request: error_details_pb2.BadRequest | None = None
    retry_info: error_details_pb2.RetryInfo | None = None
    quota_failure: error_details_pb2.QuotaFailure | None = None
    trailing: dict[str, Any] = field(default_factory=dict)

    @property
    def fields(self) -> list[str]:
        """The field paths named by the BadRequest detail (empty if there is none)."""
        if self.bad_request is None:
            return []
        return [v.field for v in self.bad_request.field_violations]

    @property
    def reason(self) -> str:
        return self.error_info.reason if self.error_info is not None else ""


def rpc_details(err: grpc.RpcError) -> RpcDetails:
    """Decode ``grpc-status-details-bin`` of a failed call (sync or aio error)."""
    code = err.code()  # type: ignore[attr-defined]
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    out = RpcDetails(
        code=code,
        message=err.details() or "",  # type: ignore[attr-defined]
        status=status,
        trailing={k: v for k, v in (err.trailing_metadata() or ())},  # type: ignore[attr-defined]
    )
    if status is None:
        return out
    assert status.code == code.value[0], "details status code differs from the call's code"
    for any_msg in status.details:
        for attr, cls in (
            ("error_info", error_details_pb2.ErrorInfo),
            ("bad_request", error_details_pb2.BadRequest),
            ("retry_info", error_details_pb2.RetryInfo),
            ("quota_failure", error_details_pb2.QuotaFailure),
        ):
            if any_msg.Is(cls.DESCRIPTOR):
                msg = cls()
                any_msg.Unpack(msg)
                setattr(out, attr, msg)
    return out


@pytest.fixture
def details() -> Callable[[grpc.RpcError], RpcDetails]:
    """``details(err)`` decodes a failed call's status and google.rpc details."""
    return rpc_details


@dataclass(frozen=True)
class Stubs:
    inference: inference_pb2_grpc.InferenceServiceStub
    admin: admin_pb2_grpc.AdminServiceStub
    router: router_pb2_grpc.RouterServiceStub
    ledger: ledger_pb2_grpc.LedgerServiceStub
    task: task_pb2_grpc.TaskServiceStub
    infra: infrastructure_pb2_grpc.InfrastructureServiceStub


def stubs_for(channel: grpc.aio.Channel) -> Stubs:
    return Stubs(
        inference=inference_pb2_grpc.InferenceServiceStub(channel),
        admin=admin_pb2_grpc.AdminServiceStub(channel),
        router=router_pb2_grpc.RouterServiceStub(channel),
        ledger=ledger_pb2_grpc.LedgerServiceStub(channel),
        task=task_pb2_grpc.TaskServiceStub(channel),
        infra=infrastructure_pb2_grpc.InfrastructureServiceStub(channel),
    )


@pytest.fixture
def make_stubs() -> Callable[[grpc.aio.Channel], Stubs]:
    return stubs_for


@pytest.fixture(autouse=True)
def server_logs(request: pytest.FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    """The structlog events of in-process servers during a spine test. Any call that ended
    INTERNAL (an ``rpc_bug`` event) fails the test, whatever the test itself asserted."""
    if not request.node.module.__name__.rpartition(".")[2].startswith("test_spine_"):
        yield []
        return
    with capture_logs(processors=context_processors()) as logs:
        yield logs
    bugs = [e for e in logs if e.get("event") == "rpc_bug"]
    assert not bugs, f"a call ended INTERNAL (a bug): {bugs}"


@pytest_asyncio.fixture
async def server() -> AsyncIterator[RunningServer]:
    """An in-process Aurea server in open mode with the quick simulated provider."""
    async with running_server(test_settings()) as rs:
        yield rs


@pytest_asyncio.fixture
async def keyed_server() -> AsyncIterator[RunningServer]:
    """An in-process Aurea server with a user key (USER_KEY) and an admin key (ADMIN_KEY)."""
    async with running_server(test_settings(AUREA_API_KEYS=API_KEYS_ENV)) as rs:
        yield rs


@pytest.fixture
def api_keys() -> tuple[str, str]:
    """(user key, admin key) of ``keyed_server``."""
    return USER_KEY, ADMIN_KEY


def slow_settings(token_delay_ms: int, tokens: int, **raw: Any) -> Settings:
    """Settings whose simulated provider answers exactly ``tokens`` tokens, one per delay."""
    options = {"token_delay_ms": token_delay_ms, "min_tokens": tokens, "max_tokens": tokens}
    providers = {"simulated": {"kind": "simulated", "options": options}}
    return test_settings({"providers": providers, **raw})


@pytest.fixture
def slow_server_settings() -> Callable[..., Settings]:
    """``slow_server_settings(token_delay_ms, tokens, **raw)`` builds settings for a slow,
    exactly sized simulated provider."""
    return slow_settings
