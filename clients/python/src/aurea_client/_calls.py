"""What the generated management-call modules (``_tasks``, ``_ledger``, ``_router``, ``_admin``,
``_infrastructure``) share: building a request from a message or its fields."""

from __future__ import annotations

from typing import Any


def build(cls: Any, request: Any, fields: dict[str, Any]) -> Any:
    """``request`` as given, else a ``cls`` built from ``fields`` (never both)."""
    if request is not None and fields:
        raise TypeError("pass the request message or its fields, not both")
    return request if request is not None else cls(**fields)


def identity(message: Any) -> Any:
    """A server stream's converter that hands each response message back unchanged."""
    return message
