"""What travels with a call across task and actor hops: its request id (and later its trace
context). The edge sets these once per call; ``ActorRef`` carries them into the actor that
handles each message, so an actor's log lines name the call they serve."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["request_id_var"]

request_id_var: ContextVar[str] = ContextVar("aurea_request_id", default="")
