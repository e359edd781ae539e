"""The Proxmox API connection shared by the VM and LXC backends (``aurea.infra.proxmox``):
a small thread pool with one proxmoxer session per thread, task polling, and the one place
proxmoxer's and requests' errors become Aurea errors."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import requests
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks

from aurea.config import ConfigError, InfraSettings
from aurea.errors import AureaError, FailedPrecondition, InvalidRequest, NotFound, Unavailable

__all__ = ["ProxmoxClient"]

T = TypeVar("T")


class ProxmoxClient:
    """The API connection shared by the VM and LXC backends: its thread pool, one proxmoxer
    session per thread, task polling, and the one place proxmoxer's errors are mapped."""

    def __init__(
        self,
        *,
        host: str,
        token_id: str,
        token_secret: str,
        verify: bool | str = True,
        threads: int = 4,
        poll_s: float = 1.0,
        task_timeout_s: float = 600.0,
        node: str = "",
        storage: str = "local-lvm",
        bridge: str = "vmbr0",
    ) -> None:
        user, sep, name = token_id.partition("!")
        if not sep or not user or not name:
            raise ConfigError("infra.proxmox_token_id_env", "the token id must be USER@REALM!NAME")
        self.host = host
        self._user, self._name, self._secret = user, name, token_secret
        self._verify = verify
        self.poll_s = poll_s
        self.task_timeout_s = task_timeout_s
        self.node = node
        self.storage = storage
        self.bridge = bridge
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="aurea-pve")
        self._local = threading.local()
        self._sessions: list[Any] = []  # every thread's requests session, closed at the end
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, s: InfraSettings, env: dict[str, str] | None = None) -> ProxmoxClient:
        env = dict(os.environ) if env is None else env
        token_id = env.get(s.proxmox_token_id_env, "")
        secret = env.get(s.proxmox_token_secret_env, "")
        if not token_id or not secret:
            raise ConfigError(
                "infra.proxmox_token_id_env",
                f"set {s.proxmox_token_id_env} and {s.proxmox_token_secret_env} to the API token",
            )
        verify: bool | str = s.proxmox_ca_file or s.proxmox_verify_tls
        return cls(
            host=s.proxmox_host,
            token_id=token_id,
            token_secret=secret,
            verify=verify,
            threads=s.proxmox_threads,
            poll_s=s.proxmox_poll_s,
            task_timeout_s=s.proxmox_task_timeout_s,
            node=s.proxmox_node,
            storage=s.proxmox_storage,
            bridge=s.proxmox_bridge,
        )

    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:  # requests sessions are not shared between threads
            api = ProxmoxAPI(
                self.host,
                user=self._user,
                token_name=self._name,
                token_value=self._secret,
                verify_ssl=self._verify,
                timeout=30,
            )
            self._local.api = api
            with self._lock:
                self._sessions.append(api._store["session"])
        return api

    async def call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(api)`` on the pool; proxmoxer's and requests' errors become Aurea errors."""
        if self._closed:
            raise Unavailable("the proxmox client is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(self._api()))
        except ResourceException as exc:
            raise _mapped(what, exc) from exc
        except requests.RequestException as exc:
            raise Unavailable(
                f"proxmox API at {self.host} is unreachable ({what}): {type(exc).__name__}",
                retry_after_s=1.0,
            ) from exc

    async def wait(self, what: str, upid: Any) -> None:
        """Poll a task until it stops; raise unless it ended ``OK``."""
        if not isinstance(upid, str) or not upid.startswith("UPID:"):
            return  # a synchronous call (no task to wait for)
        node = Tasks.decode_upid(upid)["node"]
        deadline = time.monotonic() + self.task_timeout_s
        while True:
            st = await self.call(what, lambda api: api.nodes(node).tasks(upid).status.get())
            if st.get("status") == "stopped":
                if st.get("exitstatus") != "OK":
                    raise _task_failed(what, str(st.get("exitstatus", "")))
                return
            if time.monotonic() > deadline:
                raise Unavailable(f"proxmox task {what} did not finish in {self.task_timeout_s:g}s")
            await asyncio.sleep(self.poll_s)

    async def pick_node(self, wanted: str) -> str:
        nodes = await self.call("nodes", lambda api: api.nodes.get())
        online = [n["node"] for n in nodes if n.get("status") == "online"]
        name = wanted or self.node
        if not name:
            if not online:
                raise Unavailable("no proxmox node is online")
            return str(sorted(online)[0])
        if name not in {n["node"] for n in nodes}:
            raise NotFound(f"proxmox node {name!r} does not exist")
        if name not in online:
            raise Unavailable(f"proxmox node {name!r} is not online")
        return name

    async def aclose(self) -> None:
        """Stop the threads (letting calls in progress end) and close their connections."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


def _mapped(what: str, exc: ResourceException) -> AureaError:
    reason = str(exc.content or exc.status_message or "")
    text = f"proxmox {what}: {exc.status_code} {reason}".strip()
    if exc.errors:
        text += f" {exc.errors}"
    if exc.status_code in (401, 403):
        return FailedPrecondition(f"{text} (check the API token and its permissions)")
    if exc.status_code == 400:
        return InvalidRequest(text)
    if "does not exist" in reason or "not found" in reason.lower():
        return NotFound(text)
    return Unavailable(text, retry_after_s=1.0)


def _task_failed(what: str, status: str) -> AureaError:
    text = f"proxmox task {what} failed: {status}"
    if "does not exist" in status:
        return NotFound(text)
    return FailedPrecondition(text) if "already exists" not in status else Unavailable(text)
