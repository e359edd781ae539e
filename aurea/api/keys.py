"""AdminService's API-key RPCs (ListApiKeys, CreateApiKey, DisableApiKey, EnableApiKey,
RotateApiKey) over ``aurea.security.KeyAdmin``: protobuf in and out, never a key's hash out
(only a fingerprint), a made key out exactly once."""

from __future__ import annotations

from typing import Any

import grpc

from aurea.api.admin import AdminServicer
from aurea.config import ApiKey
from aurea.config._catalog import SCOPES
from aurea.errors import InvalidRequest
from aurea.security._keyadmin import KeyAdmin
from aurea.v1 import admin_pb2 as pb

__all__ = ["KeyedAdminServicer", "key_pb"]


def key_pb(key: ApiKey) -> pb.ApiKeyPolicy:
    out = pb.ApiKeyPolicy(
        name=key.name,
        scopes=sorted(key.scopes),
        tenant=key.tenant,
        models=sorted(key.models),
        rpm=key.rpm,
        tpm=key.tpm,
        max_streams=key.max_streams,
        disabled=key.disabled,
        fingerprint=key.sha256[:8],
    )
    if key.budget_nanos is not None:
        out.budget_nanos = key.budget_nanos
    return out


def _key_of(req: pb.CreateApiKeyRequest) -> ApiKey:
    p = req.policy
    if not req.HasField("policy"):
        raise InvalidRequest.field("policy", "is required")
    scopes = frozenset(p.scopes) or frozenset({"user"})
    bad = sorted(s for s in scopes if s not in SCOPES)
    if bad:
        raise InvalidRequest.field("policy.scopes", f"{bad[0][:32]!r} is not one of user, admin")
    if "admin" in scopes:
        scopes = frozenset(SCOPES)
    sha = req.sha256
    if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise InvalidRequest.field("sha256", "must be 64 lower-case hex digits, or empty")
    return ApiKey(
        name=p.name,
        sha256=sha,
        scopes=scopes,
        tenant=p.tenant,
        models=frozenset(p.models),
        rpm=p.rpm,
        tpm=p.tpm,
        budget_nanos=p.budget_nanos if p.HasField("budget_nanos") else None,
        max_streams=p.max_streams,
    )


class KeyedAdminServicer(AdminServicer):
    """The AdminService servicer with the API-key RPCs."""

    def __init__(self, *, keys: KeyAdmin, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keys = keys

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListApiKeysResponse:
        return pb.ListApiKeysResponse(keys=[key_pb(k) for k in self._keys.list()])

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateApiKeyResponse:
        key, secret = await self._keys.create(_key_of(request))
        return pb.CreateApiKeyResponse(key=key_pb(key), api_key=secret)

    async def DisableApiKey(
        self, request: pb.DisableApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.DisableApiKeyResponse:
        return pb.DisableApiKeyResponse(key=key_pb(self._keys.disable(request.name)))

    async def EnableApiKey(
        self, request: pb.EnableApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.EnableApiKeyResponse:
        return pb.EnableApiKeyResponse(key=key_pb(self._keys.enable(request.name)))

    async def RotateApiKey(
        self, request: pb.RotateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.RotateApiKeyResponse:
        sha = request.sha256
        if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            raise InvalidRequest.field("sha256", "must be 64 lower-case hex digits, or empty")
        key, secret = self._keys.rotate(
            request.name, request.previous_key_grace_ms / 1e3, request.sha256
        )
        return pb.RotateApiKeyResponse(key=key_pb(key), api_key=secret)
