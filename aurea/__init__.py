"""Aurea: an LLM orchestration runtime behind one streaming gRPC API.

The public Python surface is small: the error tree, settings, the domain types, the server and
``Embedded`` (the same core in-process). Clients in any language use the gRPC API
(``protos/aurea/v1``) or the OpenAI-compatible HTTP door; ``aurea.testing`` has helpers for
tests. The server (and with it grpc) is imported on first use, so ``import aurea`` stays cheap.
"""

from typing import TYPE_CHECKING, Any

from aurea.config import ConfigError, Settings, build_settings, load_settings
from aurea.errors import AureaError
from aurea.types import CallScope, ModelKind, Policy, Scope

if TYPE_CHECKING:
    from aurea.embedded import Embedded
    from aurea.server import AureaServer

__all__ = [
    "AureaError",
    "AureaServer",
    "CallScope",
    "ConfigError",
    "Embedded",
    "ModelKind",
    "Policy",
    "Scope",
    "Settings",
    "build_settings",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    if name == "AureaServer":
        from aurea.server import AureaServer

        return AureaServer
    if name == "Embedded":
        from aurea.embedded import Embedded

        return Embedded
    raise AttributeError(f"module 'aurea' has no attribute {name!r}")
