"""Who may call what: API-key authentication and the scope each operation needs.

Scopes fail closed: an operation needs only ``user`` when it is listed in ``USER_OPERATIONS`` (or,
for the HTTP door, ``HTTP_USER_OPERATIONS``);
any other operation, including an RPC added to the protos and not classified here yet, needs
``admin``. Transport-neutral: headers are a plain mapping with lower-case names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aurea.config import ApiKey
from aurea.edge._keys import KeyRing, Match
from aurea.errors import PermissionDenied, Unauthenticated
from aurea.types import Scope

__all__ = [
    "HTTP_USER_OPERATIONS",
    "USER_OPERATIONS",
    "Authenticator",
    "Principal",
    "check_scope",
    "required_scope",
]

# The operations a `user` key may call (the protos' comments state the same). The AdminService
# reads stay `user`, as the protos promise: they show server-wide numbers but change nothing and
# reveal no secret. Everything that changes server-wide state is missing here, so needs `admin`.
USER_OPERATIONS: frozenset[str] = frozenset({
    "aurea.v1.InferenceService/Generate",
    "aurea.v1.InferenceService/GenerateStream",
    "aurea.v1.InferenceService/Embed",
    "aurea.v1.RouterService/SelectModel",
    "aurea.v1.RouterService/RecordOutcome",
    "aurea.v1.RouterService/ListModelStats",
    "aurea.v1.RouterService/GetWeights",
    "aurea.v1.LedgerService/GetJob",
    "aurea.v1.LedgerService/ListJobs",
    "aurea.v1.LedgerService/GetSummary",
    "aurea.v1.TaskService/SubmitTask",
    "aurea.v1.TaskService/GetTask",
    "aurea.v1.TaskService/ListTasks",
    "aurea.v1.TaskService/CancelTask",
    "aurea.v1.TaskService/WatchTasks",
    "aurea.v1.TaskService/ListTaskKinds",
    "aurea.v1.TaskService/ListPools",
    "aurea.v1.InfrastructureService/GetResource",
    "aurea.v1.InfrastructureService/ListResources",
    "aurea.v1.InfrastructureService/GetStats",
    "aurea.v1.AdminService/GetInfo",
    "aurea.v1.AdminService/GetSystemMetrics",
    "aurea.v1.AdminService/GetMetricsSummary",
    "aurea.v1.AdminService/WatchEvents",
    "aurea.v1.AdminService/GetCacheStats",
    "aurea.v1.AdminService/ListProviders",
    "aurea.v1.AdminService/GetProviderStats",
    "aurea.v1.AdminService/ListModelLimits",
})  # fmt: skip

# The HTTP door's operations ("METHOD /path", the route's pattern), also `user`: the same calls
# as the InferenceService RPCs and a read of the permitted catalog.
HTTP_USER_OPERATIONS: frozenset[str] = frozenset({
    "POST /v1/chat/completions",
    "POST /v1/embeddings",
    "GET /v1/models",
    "GET /v1/models/{model}",
    "POST /v1/messages",
    "POST /v1/messages/count_tokens",
})  # fmt: skip

_USER = USER_OPERATIONS | HTTP_USER_OPERATIONS
_ALL_SCOPES = frozenset(Scope)


def required_scope(operation: str) -> Scope:
    """The scope ``operation`` needs: ``user`` if classified so, else ``admin`` (fail closed)."""
    return Scope.USER if operation in _USER else Scope.ADMIN


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the key's name ("" in open mode), its effective scopes
    (``admin`` includes ``user``) and its tenant (the key's name when it names none)."""

    name: str
    scopes: frozenset[Scope]
    tenant: str = ""


OPEN = Principal("", _ALL_SCOPES)


def _effective(scopes: Iterable[str]) -> frozenset[Scope]:
    granted = frozenset(Scope(s) for s in scopes)
    return _ALL_SCOPES if Scope.ADMIN in granted else granted


class Authenticator:
    """Finds the key a call presents (``authorization: Bearer KEY`` or ``x-api-key: KEY``).

    With no keys configured the server is open: every caller gets every scope. Keys live in a
    ``KeyRing`` (only their SHA-256, compared in constant time; changeable at run time); a
    presented key is never echoed in an error.
    """

    __slots__ = ("ring",)

    def __init__(self, keys: Iterable[ApiKey] | KeyRing) -> None:
        self.ring = keys if isinstance(keys, KeyRing) else KeyRing(keys)

    @property
    def open(self) -> bool:
        return self.ring.open

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The caller's principal; raises Unauthenticated for a missing or wrong key."""
        return self.identify(headers)[0]

    def identify(self, headers: Mapping[str, str]) -> tuple[Principal, Match | None]:
        """The caller's principal and the key (policy and secret) it showed; None when open."""
        if self.ring.open:
            return OPEN, None
        raw = headers.get("x-api-key", "")
        if not raw:
            auth = headers.get("authorization", "")
            if auth:
                scheme, _, token = auth.partition(" ")
                raw = token.strip()
                if scheme.lower() != "bearer" or not raw:
                    raise Unauthenticated("authorization metadata must be 'Bearer <API key>'")
        if not raw:
            raise Unauthenticated(
                "this server needs an API key: send 'authorization: Bearer KEY' or 'x-api-key: KEY'"
            )
        match = self.ring.match(raw)
        key = match.key
        return Principal(key.name, _effective(key.scopes), key.tenant or key.name), match


def check_scope(principal: Principal, operation: str) -> None:
    """Raise PermissionDenied unless ``principal`` holds the scope ``operation`` needs."""
    needed = Scope.USER if operation in _USER else Scope.ADMIN
    if needed not in principal.scopes:
        name = operation.rpartition("/")[2] or operation
        has = ", ".join(sorted(principal.scopes)) or "no scope"
        raise PermissionDenied(f"{name} needs the '{needed}' scope; this key has {has}")
