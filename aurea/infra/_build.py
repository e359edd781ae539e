"""From ``[infra]`` settings to the provisioner's parts: backends, store and limits. Backends
whose library is an optional extra (aiodocker, proxmoxer) are imported only when configured."""

from __future__ import annotations

import os
from pathlib import Path

from aurea.config import ConfigError, InfraSettings
from aurea.infra.backend import ComputeBackend
from aurea.infra.model import BackendKind, Capacity
from aurea.infra.provisioner import Limits
from aurea.infra.store import MemoryResourceStore, ResourceStore, SqliteResourceStore
from aurea.paths import default_db_path

__all__ = ["build_backends", "build_limits", "build_store", "default_db_path"]


def build_store(s: InfraSettings) -> ResourceStore:
    if s.store == "memory":
        return MemoryResourceStore()
    path = Path(s.sqlite_path) if s.sqlite_path else default_db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteResourceStore(path)


def _host_memory_mib() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
    except (ValueError, OSError):
        return 4096


def build_limits(s: InfraSettings) -> Limits:
    return Limits(
        max_resources=s.max_resources,
        total=Capacity(
            s.cpu_millis or (os.cpu_count() or 1) * 1000,
            s.memory_mib or _host_memory_mib(),
            s.disk_gib,
            s.gpu_count,
        ),
        default_cpu_millis=s.default_cpu_millis,
        default_memory_mib=s.default_memory_mib,
        keep_released_s=s.keep_released_s,
    )


def build_backends(s: InfraSettings) -> dict[str, ComputeBackend]:
    out: dict[str, ComputeBackend] = {}
    if "local" in s.backends:
        from aurea.infra.local import LocalBackend

        out[BackendKind.LOCAL] = LocalBackend(
            root=Path(s.local_root) if s.local_root else None, cgroups=s.local_cgroups
        )
    if "docker" in s.backends:
        try:
            from aurea.infra.docker import DockerBackend
        except ImportError as exc:
            raise ConfigError(
                "infra.backends", "docker needs the docker extra: pip install 'aurea[docker]'"
            ) from exc
        out[BackendKind.DOCKER] = DockerBackend(
            url=s.docker_host, pull=s.docker_pull, network=s.docker_network
        )
    if "proxmox" in s.backends:
        try:
            from aurea.infra.proxmox import ProxmoxBackend, ProxmoxClient
        except ImportError as exc:
            raise ConfigError(
                "infra.backends", "proxmox needs the proxmox extra: pip install 'aurea[proxmox]'"
            ) from exc
        if not s.proxmox_host:
            raise ConfigError("infra.proxmox_host", "is required when backends has proxmox")
        client = ProxmoxClient.from_settings(s)
        out[BackendKind.PROXMOX_VM] = ProxmoxBackend(client, BackendKind.PROXMOX_VM)
        out[BackendKind.PROXMOX_LXC] = ProxmoxBackend(client, BackendKind.PROXMOX_LXC)
    return out
