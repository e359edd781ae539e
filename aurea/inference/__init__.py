"""The inference core: one call (stream, unary or embed) from routing to its ``CallRecord``,
run in the caller's task, with guards admitting every attempt."""

from aurea.inference._common import Emit
from aurea.inference.calls import (
    AttemptRecord,
    CallerGone,
    CallKind,
    CallOutcome,
    CallRecord,
    Delta,
    EmbedCall,
    EmbedResult,
    FailoverMode,
    FallbackEvent,
    Final,
    GenerateCall,
    GenEvent,
    Started,
    UsageUpdate,
)
from aurea.inference.classify import Action, classify
from aurea.inference.core import Inference, RecordSink
from aurea.inference.guards import AllowDenyGuard, AttemptInfo, Guard, Permit
from aurea.providers._base import ReasoningDelta, ToolCallDelta

__all__ = [
    "Action",
    "AllowDenyGuard",
    "AttemptInfo",
    "AttemptRecord",
    "CallKind",
    "CallOutcome",
    "CallRecord",
    "CallerGone",
    "Delta",
    "EmbedCall",
    "EmbedResult",
    "Emit",
    "FailoverMode",
    "FallbackEvent",
    "Final",
    "GenEvent",
    "GenerateCall",
    "Guard",
    "Inference",
    "Permit",
    "ReasoningDelta",
    "RecordSink",
    "Started",
    "ToolCallDelta",
    "UsageUpdate",
    "classify",
]
