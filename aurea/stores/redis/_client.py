"""The one Redis connection the shared stores use, their key layout, and the boundary where
redis-py's errors become ``StoreUnavailable`` (with the server named, never its password).

Key layout (``P`` is ``[redis] key_prefix``). Every key that one script touches shares one Redis
Cluster hash tag, so each atomic step lands on one shard:

* limiter: ``P:lim:{model}:rpm`` / ``P:lim:{model}:tpm`` (the limiter's keys carry the model tag)
* ledger, per job: ``P:led:{job:ID}`` (figures), ``:m`` (spend by model), ``:sum`` (the job's
  hourly summary buckets), ``:l`` and ``:la`` (leases, their amounts), ``:exp`` (active lease
  expiries), ``:closed`` (closed leases); across jobs ``P:led:{ledger}:*`` (job index, the
  sweep's expiry index and reserve counters, written by plain commands and two small scripts of
  their own) and ``P:led:{lease:ID}`` (a lease's job, for callers that name a lease alone)
* router stats: ``P:rs:{model:NAME}`` per model; ``P:rs:{routing}:models`` and ``:weights``
* tasks: everything under ``P:tq:{tasks}:*`` (one shard: a queue is not a per-call hot path)

Every script takes every key it touches in KEYS, never building one inside Lua
(``tests/unit/stores/test_redis_cluster_keys.py`` checks the sources and each call's slot).

With ``[redis] cluster = true`` the client is redis-py's ``RedisCluster``: it routes each command
(and each script, by its keys) to the shard that serves the slot and follows ``MOVED``/``ASK``
redirections; the stores send script calls on their own there (its pipelines refuse scripts).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from aurea.stores._common import StoreUnavailable

__all__ = ["RedisClient", "fmt", "num", "open_redis", "redacted", "text"]

T = TypeVar("T")

# A dead server must fail a call quickly (the limiter and ledger fail closed), and an operation
# is never re-sent by the client on its own: a script that ran but whose reply was lost must not
# run twice behind the caller's back (callers that can retry safely do so themselves).
_CONNECT_TIMEOUT_S = 1.0
_SOCKET_TIMEOUT_S = 5.0
_RETRY_AFTER_S = 1.0
_MAX_CONNECTIONS = 32
# A cluster client's per-node pools refuse past their size instead of queueing, so callers
# queue at the client's gate (``_MAX_CONNECTIONS`` operations at a time) and each node allows
# more connections than that, for an operation that fans out (several scripts at once).
_MAX_NODE_CONNECTIONS = 4 * _MAX_CONNECTIONS
# A cluster that is down, or a key's shard unreachable or moving: the call fails over like a
# dead server (redis-py has already followed MOVED/ASK redirections as far as it would).
_CLUSTER_FAILURES: tuple[type[BaseException], ...] = (
    rexc.ClusterError,  # ClusterDownError, MasterDownError, "TTL exhausted" redirections
    rexc.SlotNotCoveredError,  # a slot served by no node (a failover in progress)
    rexc.AskError,  # MovedError too: a redirection redis-py did not follow
    rexc.TryAgainError,
)
# redis-py raises its RedisClusterException for a cluster it cannot reach or map as well as for
# a caller's mistakes (a script in a pipeline, keys across slots): only the first are outages.
_CLUSTER_OUTAGES = (
    "Redis Cluster cannot be connected",
    "All slots are not covered",
    "startup_nodes could not agree",
)
# Set inside an operation that holds the gate: nested calls do not queue for it again.
_IN_GATE: contextvars.ContextVar[bool] = contextvars.ContextVar("aurea_redis_gate", default=False)


def redacted(url: str) -> str:
    """The server a URL names, without credentials: ``redis://host:port/db``."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def fmt(x: float) -> str:
    """A float as Lua reads it back exactly (``repr`` is the shortest round-trip form)."""
    return repr(float(x))


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def num(value: Any) -> float:
    """A float a script returned as text (``%.17g``: exact), or bytes/int from Redis."""
    if isinstance(value, bytes):
        value = value.decode()
    return float(value)


class RedisClient:
    """One connection pool plus the key prefix. ``call`` runs an operation and maps a dead or
    unreachable server to ``StoreUnavailable``; the pool reconnects on the next call, so the
    stores recover by themselves when the server is back."""

    def __init__(
        self, redis: aioredis.Redis, *, prefix: str, where: str, cluster: bool = False
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.where = where  # for messages: the server, without credentials
        # A Redis Cluster client: no MULTI across slots, and its pipelines refuse scripts, so
        # the stores send each script call on its own (concurrently) there.
        self.cluster = cluster
        self._gate = asyncio.Semaphore(_MAX_CONNECTIONS) if cluster else None
        self._topology = asyncio.Lock()
        self._closed = False

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def script(self, source: str) -> Any:
        """A Lua script, loaded by SHA on first use (and again after a server restart)."""
        return self.redis.register_script(source)

    @contextlib.asynccontextmanager
    async def gate(self) -> AsyncIterator[None]:
        """Hold one of the client's operation slots (a cluster client's pools do not queue
        callers themselves; the single-server pool does, so there this is free)."""
        if self._gate is None or _IN_GATE.get():
            yield
            return
        async with self._gate:
            await self._discover()
            token = _IN_GATE.set(True)
            try:
                yield
            finally:
                _IN_GATE.reset(token)

    async def _discover(self) -> None:
        """Learn the cluster's nodes and slots before commands go out. redis-py does it on
        the first command (and after a failure), but commands that race it on a cold client
        can meet half-set-up connections ("'NoneType' object has no attribute 'writelines'"),
        so one caller at a time does it here and the others wait for its answer."""
        if not getattr(self.redis, "_initialize", False):
            return
        async with self._topology:
            if getattr(self.redis, "_initialize", False):
                await self.redis.initialize()

    async def call(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        try:
            async with self.gate():
                return await op()
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError) as exc:
            raise self.unavailable(what, exc) from exc
        except TimeoutError as exc:
            raise self.unavailable(what, exc) from exc
        except _CLUSTER_FAILURES as exc:
            raise self.unavailable(what, exc) from exc
        except rexc.RedisClusterException as exc:
            if str(exc).startswith(_CLUSTER_OUTAGES):
                raise self.unavailable(what, exc) from exc
            raise
        except rexc.ResponseError as exc:
            text = str(exc)
            if text.startswith(("READONLY", "MASTERDOWN", "LOADING", "TRYAGAIN", "CLUSTERDOWN")):
                raise self.unavailable(what, exc) from exc
            if "ERR_ARG" in text:  # a script refused an argument (a caller bug)
                raise ValueError(text.split("ERR_ARG", 1)[1].strip(" :")) from exc
            raise

    def unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        detail = str(exc) or type(exc).__name__
        return StoreUnavailable(
            f"Redis at {self.where} is unavailable ({what}: {detail}); shared limits and "
            "budgets fail closed until it answers again",
            retry_after_s=_RETRY_AFTER_S,
        )

    async def ping(self) -> None:
        await self.call("ping", self.redis.ping)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.redis.aclose()
            if not self.cluster:  # a cluster client's aclose closes every node's pool
                await self.redis.connection_pool.disconnect()


def open_redis(url: str, *, prefix: str, cluster: bool = False) -> RedisClient:
    """A client for ``url`` (nothing is sent until the first call); with ``cluster``, for the
    Redis Cluster that ``url`` is one node of."""
    if cluster:
        return RedisClient(_cluster(url), prefix=prefix, where=redacted(url), cluster=True)
    # A bounded pool that makes callers queue for a connection (the default pool refuses
    # past its size): hundreds of concurrent calls share a few dozen connections.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=_MAX_CONNECTIONS,
        timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
        socket_timeout=_SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        health_check_interval=0,
    )
    redis = aioredis.Redis(connection_pool=pool)
    return RedisClient(redis, prefix=prefix, where=redacted(url))


def _cluster(url: str) -> Any:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("[redis] cluster = true needs a redis:// or rediss:// URL (a node's)")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("[redis] cluster = true needs database 0 (a cluster has no other)")
    # The same policy as one server: quick connect, bounded waits, and no command re-sent on
    # a connection error or timeout (``retry`` 0: redis-py re-sends only after MOVED/ASK/
    # TRYAGAIN, which the server answers without running the command).
    return RedisCluster.from_url(
        url,
        max_connections=_MAX_NODE_CONNECTIONS,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
        socket_timeout=_SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
