"""``AsyncClient`` (asyncio, ``grpc.aio``; in ``_async_client``) and ``Client`` (blocking; in
``_sync_client``): the same calls, the same arguments, the same typed results and errors.

    async with AsyncClient() as aurea:                      # $AUREA_TARGET, $AUREA_API_KEY
        answer = await aurea.generate("Say hello", max_tokens=20)
        async for event in aurea.stream("Count to five"):
            ...
"""

from __future__ import annotations

from aurea_client._async_client import AsyncClient
from aurea_client._sync_client import Client

__all__ = ["AsyncClient", "Client"]
