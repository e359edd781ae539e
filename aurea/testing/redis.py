"""A real ``redis-server`` for tests and benchmarks: started on a free loopback port with no
persistence, stoppable and restartable on the same port (to test an outage), never the
machine's 6379. ``RedisCluster`` joins several of them into one real Redis Cluster.

``with RedisServer.start() as server: url = server.url`` (or ``RedisServer.available()`` first,
to skip where the binary is missing); ``with RedisCluster.start() as cluster: url = cluster.url``
(a client in cluster mode discovers the other nodes from that one).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["RedisCluster", "RedisServer"]

_START_WAIT_S = 10.0
_ANSWER_S = 2.0  # how long one node may take to answer one command
_CLUSTER_WAIT_S = 30.0
_BUS_OFFSET = 10000  # a cluster node also listens on its port + 10000 (the cluster bus)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (``port + 10000``) is a valid, free port too."""
    for _ in range(1000):
        port = _free_port()
        bus = port + _BUS_OFFSET
        if bus <= 65535 and not {port, bus} & taken and _bindable(bus):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``stop``/``resume`` keep the port."""

    def __init__(self, port: int, workdir: Path, *, extra: Sequence[str] = ()) -> None:
        self.port = port
        self._dir = workdir
        self._extra = tuple(extra)  # more redis-server options (a cluster node's)
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @classmethod
    def start(cls) -> RedisServer:
        server = cls(_free_port(), Path(tempfile.mkdtemp(prefix="aurea-redis-")))
        server.resume()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def resume(self) -> None:
        """Start (again) on the same port; returns once it answers PING."""
        if self.running:
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self._proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._dir),
                "--protected-mode",
                "yes",
                *self._extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_WAIT_S
        while not _answers(self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def stop(self, *, save: bool = False) -> None:
        """Kill the server: its data goes (it keeps nothing on disk), unless ``save``, which
        shuts it down with ``SHUTDOWN SAVE`` so ``resume`` loads the data back (an operator's
        restart of a persistent Redis)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if save:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.sendall(b"SHUTDOWN SAVE\r\n")
                    s.recv(64)
                proc.wait(timeout=10)
                return
            except (OSError, subprocess.TimeoutExpired):
                pass
        proc.kill()
        proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisCluster:
    """``nodes`` primaries, each with ``replicas`` replicas, joined into one Redis Cluster on
    127.0.0.1, each node its own ``redis-server`` in its own directory; the slots are spread
    evenly by ``redis-cli --cluster create``. A node can be stopped and resumed on its port (it
    keeps its ``nodes.conf``, so it rejoins), and ``failover`` promotes a replica."""

    def __init__(self, nodes: list[RedisServer], workdir: Path, replicas: int = 0) -> None:
        self.nodes = nodes
        self.replicas = replicas  # per primary
        self._dir = workdir

    @staticmethod
    def available() -> bool:
        return RedisServer.available() and shutil.which("redis-cli") is not None

    @classmethod
    def start(cls, nodes: int = 3, *, replicas: int = 0) -> RedisCluster:
        if nodes < 3:
            raise ValueError("a Redis Cluster needs at least 3 primaries")
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        cli = shutil.which("redis-cli")
        if cli is None or not RedisServer.available():
            raise RuntimeError("redis-server and redis-cli are required for a Redis Cluster")
        workdir = Path(tempfile.mkdtemp(prefix="aurea-redis-cluster-"))
        taken: set[int] = set()
        servers: list[RedisServer] = []
        cluster = cls(servers, workdir, replicas)
        try:
            for i in range(nodes * (1 + replicas)):
                port = _free_cluster_port(taken)
                taken |= {port, port + _BUS_OFFSET}
                node_dir = workdir / f"node{i}"
                node_dir.mkdir()
                options = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
                servers.append(RedisServer(port, node_dir, extra=options))
                servers[-1].resume()
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{s.port}" for s in servers),
                    "--cluster-replicas",
                    str(replicas),
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=_CLUSTER_WAIT_S,
            )
            cluster.wait_ready()
        except BaseException:
            cluster.close()
            raise
        return cluster

    @property
    def url(self) -> str:
        """One node's URL: a cluster client learns the others (and the slots) from it."""
        return self.nodes[0].url

    @property
    def ports(self) -> tuple[int, ...]:
        return tuple(n.port for n in self.nodes)

    def wait_ready(self, timeout_s: float = _CLUSTER_WAIT_S) -> None:
        """Return once every running node reports ``cluster_state:ok`` with every slot served
        and sees every node (after a start, or after a stopped node was resumed)."""
        deadline = time.monotonic() + timeout_s
        while not all(self._node_ready(n) for n in self.nodes if n.running):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster on ports {self.ports} did not become ready")
            time.sleep(0.05)

    def role(self, node: RedisServer) -> str:
        """``master`` or ``slave`` (Redis's words), "" when the node does not answer."""
        return _info(node.port, "replication").get("role", "")

    def failover(self, replica: RedisServer, timeout_s: float = _CLUSTER_WAIT_S) -> None:
        """Promote ``replica`` to primary of its slots with ``CLUSTER FAILOVER`` (the graceful
        manual failover: its primary stops taking writes, the replica catches up, then takes
        over, so no acknowledged write is lost); returns once it reports itself primary."""
        if self.role(replica) != "slave":
            raise ValueError(f"the node on port {replica.port} is not a replica")
        answer = _command(replica.port, "CLUSTER", "FAILOVER").strip()
        if answer != "OK":
            raise RuntimeError(f"CLUSTER FAILOVER on port {replica.port}: {answer!r}")
        deadline = time.monotonic() + timeout_s
        while self.role(replica) != "master":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica on port {replica.port} did not take over")
            time.sleep(0.05)
        self.wait_ready(timeout_s)

    def _node_ready(self, node: RedisServer) -> bool:
        info = _cluster_info(node.port)
        ready = (
            info.get("cluster_state") == "ok"
            and info.get("cluster_slots_ok") == "16384"
            and info.get("cluster_known_nodes") == str(len(self.nodes))
        )
        if ready and self.replicas:  # and each replica in sync with its primary
            replication = _info(node.port, "replication")
            if replication.get("role") == "slave":
                return replication.get("master_link_status") == "up"
        return ready

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _command(port: int, *args: str) -> str:
    """One command's reply through ``redis-cli`` ("" when the node does not answer)."""
    cli = shutil.which("redis-cli")
    if cli is None:
        return ""
    try:
        done = subprocess.run(
            [cli, "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=_ANSWER_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


def _fields(reply: str) -> dict[str, str]:
    """An ``INFO``-style reply (``key:value`` lines) as a dict."""
    out: dict[str, str] = {}
    for line in reply.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def _info(port: int, section: str) -> dict[str, str]:
    """``INFO section`` of one node as a dict (empty when it does not answer)."""
    return _fields(_command(port, "INFO", section))


def _cluster_info(port: int) -> dict[str, str]:
    """``CLUSTER INFO`` of one node as a dict (empty when it does not answer)."""
    return _fields(_command(port, "CLUSTER", "INFO"))
