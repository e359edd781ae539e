"""Aurea: an LLM orchestration runtime behind one streaming gRPC API.

The public Python surface is small: the error tree, settings, and the server. Clients in any
language use the gRPC API (``protos/aurea/v1``); ``aurea.testing`` has helpers for tests.
"""

from aurea.config import ConfigError, Settings, build_settings, load_settings
from aurea.errors import AureaError

__all__ = ["AureaError", "ConfigError", "Settings", "build_settings", "load_settings"]
