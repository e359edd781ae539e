"""A typed Python client for Aurea's ``aurea.v1`` gRPC API.

``AsyncClient`` (asyncio) and ``Client`` (blocking) make inference calls (``generate``,
``stream``, ``embed``) that return plain dataclasses, and the management calls
(``client.tasks``, ``.ledger``, ``.router``, ``.admin``, ``.infrastructure``) that return the
API's response messages. Failures raise ``AureaError`` subclasses carrying the server's
``google.rpc`` details. The client needs only grpcio and protobuf, never the server package.
"""

from aurea_client._client import AsyncClient, Client
from aurea_client._errors import (
    AureaError,
    BudgetExceeded,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    InternalError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QuotaViolation,
    RateLimited,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from aurea_client._messages import Image, Message, ReasoningBlock, Tool, ToolCall
from aurea_client._options import NO_RETRY, RetryPolicy, Tls
from aurea_client._types import (
    Completion,
    Delta,
    Embeddings,
    Fallback,
    Final,
    ReasoningDelta,
    Started,
    StreamEvent,
    ToolCallDelta,
    Usage,
    UsageUpdate,
)

__version__ = "0.1.0"

__all__ = [
    "NO_RETRY",
    "AsyncClient",
    "AureaError",
    "BudgetExceeded",
    "Cancelled",
    "Client",
    "Completion",
    "DeadlineExceeded",
    "Delta",
    "Embeddings",
    "FailedPrecondition",
    "Fallback",
    "FieldViolation",
    "Final",
    "Image",
    "InternalError",
    "InvalidArgument",
    "Message",
    "NotFound",
    "PermissionDenied",
    "QuotaViolation",
    "RateLimited",
    "ReasoningBlock",
    "ReasoningDelta",
    "ResourceExhausted",
    "RetryPolicy",
    "Started",
    "StreamEvent",
    "Tls",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Usage",
    "UsageUpdate",
]
