"""The transport-neutral edge: what the gRPC interceptor and the HTTP door both do around a
call (request id, draining, API-key auth with fail-closed scopes, in-flight counting, the
canonical log line) and the ``CallScope`` of the call being served. Never imports grpc."""

from aurea.edge._call import (
    DRAIN_EXEMPT,
    REVOKED,
    CallTracker,
    Edge,
    current_scope,
    log_bug,
    revoked_now,
    valid_request_id,
)
from aurea.edge._keys import KeyRing, Match, digest_of, new_secret
from aurea.edge._scopes import (
    USER_OPERATIONS,
    Authenticator,
    Principal,
    check_scope,
    required_scope,
)

__all__ = [
    "DRAIN_EXEMPT",
    "REVOKED",
    "USER_OPERATIONS",
    "Authenticator",
    "CallTracker",
    "Edge",
    "KeyRing",
    "Match",
    "Principal",
    "check_scope",
    "current_scope",
    "digest_of",
    "log_bug",
    "new_secret",
    "required_scope",
    "revoked_now",
    "valid_request_id",
]
