"""The OpenAI-compatible HTTP door (``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``):
existing OpenAI-SDK code talks to the same core as the gRPC API, through the same edge."""

from aurea.http._door import ROUTES, HttpDoor

__all__ = ["ROUTES", "HttpDoor"]
