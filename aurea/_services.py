"""The table of Aurea's gRPC services (generated module, servicer base, registration function,
name) that the server registers, and their full names for health and reflection."""

from __future__ import annotations

from typing import Any

from aurea.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    infrastructure_pb2,
    infrastructure_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    task_pb2,
    task_pb2_grpc,
)

# (module with DESCRIPTOR, generated Servicer base, add_..._to_server)
_SERVICES: tuple[tuple[Any, Any, Any, str], ...] = (
    (
        inference_pb2,
        inference_pb2_grpc.InferenceServiceServicer,
        inference_pb2_grpc.add_InferenceServiceServicer_to_server,
        "InferenceService",
    ),
    (
        router_pb2,
        router_pb2_grpc.RouterServiceServicer,
        router_pb2_grpc.add_RouterServiceServicer_to_server,
        "RouterService",
    ),
    (
        ledger_pb2,
        ledger_pb2_grpc.LedgerServiceServicer,
        ledger_pb2_grpc.add_LedgerServiceServicer_to_server,
        "LedgerService",
    ),
    (
        task_pb2,
        task_pb2_grpc.TaskServiceServicer,
        task_pb2_grpc.add_TaskServiceServicer_to_server,
        "TaskService",
    ),
    (
        infrastructure_pb2,
        infrastructure_pb2_grpc.InfrastructureServiceServicer,
        infrastructure_pb2_grpc.add_InfrastructureServiceServicer_to_server,
        "InfrastructureService",
    ),
    (
        admin_pb2,
        admin_pb2_grpc.AdminServiceServicer,
        admin_pb2_grpc.add_AdminServiceServicer_to_server,
        "AdminService",
    ),
)
SERVICE_NAMES = tuple(f"aurea.v1.{name}" for *_, name in _SERVICES)
