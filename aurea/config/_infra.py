"""The ``[infra]`` section: compute provisioning (backends, limits, where records live, and how
to reach Docker and Proxmox). Secrets are never here: Proxmox's token is read from the
environment variables named by ``proxmox_token_id_env`` and ``proxmox_token_secret_env``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aurea.config._rules import ConfigError, as_str, as_strs, setting, show

__all__ = ["INFRA_BACKENDS", "InfraSettings"]

INFRA_BACKENDS = ("local", "docker", "proxmox")
_MANY = 1_000_000_000
_DAY_S = 86_400.0
_OWNER = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def _backends(v: Any, key: str) -> tuple[str, ...]:
    names = tuple(n.lower() for n in as_strs(v, key))
    for name in names:
        if name not in INFRA_BACKENDS:
            raise ConfigError(key, f"{show(name)} is not one of {', '.join(INFRA_BACKENDS)}")
    return tuple(dict.fromkeys(names))


def _owner(v: Any, key: str) -> str:
    owner = as_str(v, key)
    if owner and not _OWNER.match(owner):
        raise ConfigError(key, "must be 1 to 32 of a-z 0-9 -, starting with a letter or digit")
    return owner


@dataclass(frozen=True, slots=True, kw_only=True)
class InfraSettings:
    """``[infra]``: compute provisioning (InfrastructureService)."""

    backends: tuple[str, ...] = setting(
        ("local",),
        "backends resources may be provisioned on (proxmox = VMs and LXC)",
        parse=_backends,
        allowed="list of local, docker, proxmox",
    )
    store: str = setting(
        "sqlite", "where resource records live; sqlite re-adopts after a restart",
        choices=("memory", "sqlite"),
    )  # fmt: skip
    sqlite_path: str = setting(
        "", "SQLite file; '' = $AUREA_HOME/aurea.db, else ~/.local/share/aurea/aurea.db"
    )
    owner: str = setting(
        "",
        "label value marking this installation's resources; '' = generated once, kept in the store",
        parse=_owner,
        allowed="'' or 1 to 32 of a-z 0-9 -",
    )
    max_resources: int = setting(64, "live (not released) resources at most", lo=0, hi=100_000)
    cpu_millis: int = setting(
        0,
        "CPU (1000 = one core) all live resources may hold; 0 = this host's cores",
        lo=0,
        hi=_MANY,
    )
    memory_mib: int = setting(
        0, "memory all live resources may hold; 0 = this host's memory", lo=0, hi=_MANY
    )
    disk_gib: int = setting(1024, "disk all live resources may hold", lo=0, hi=_MANY)
    gpu_count: int = setting(0, "GPUs all live resources may hold", lo=0, hi=100_000)
    default_cpu_millis: int = setting(
        1000, "CPU of a spec that gives none (applied as its limit)", lo=1, hi=256_000
    )
    default_memory_mib: int = setting(
        512, "memory of a spec that gives none (applied as its limit)", lo=6, hi=1_048_576
    )
    keep_released_s: float = setting(
        _DAY_S, "seconds a released resource stays visible", lo=0, hi=365 * _DAY_S
    )
    local_root: str = setting(
        "", "directory of local replicas; '' = $AUREA_HOME/resources, else ~/.local/share/..."
    )
    local_cgroups: bool = setting(
        True, "limit local replicas with cgroups where writable (else memory by RLIMIT_AS only)"
    )
    docker_host: str = setting(
        "", "Docker Engine API endpoint (unix:// or tcp://); '' = $DOCKER_HOST, else the socket"
    )
    docker_pull: bool = setting(True, "pull an image the engine lacks before refusing it")
    docker_network: str = setting("", "network of containers; '' = the engine's default")
    proxmox_host: str = setting("", "Proxmox VE API host[:port] (HTTPS, port 8006 by default)")
    proxmox_token_id_env: str = setting(
        "PROXMOX_TOKEN_ID", "env var holding the API token id (user@realm!name)"
    )
    proxmox_token_secret_env: str = setting(
        "PROXMOX_TOKEN_SECRET", "env var holding the API token secret"
    )
    proxmox_node: str = setting("", "node for new resources; '' = the first online node")
    proxmox_storage: str = setting("local-lvm", "storage for disks of new resources")
    proxmox_bridge: str = setting("vmbr0", "bridge of an LXC container's network")
    proxmox_verify_tls: bool = setting(True, "check the API's TLS certificate")
    proxmox_ca_file: str = setting("", "CA bundle (PEM) for the API's certificate; '' = system")
    proxmox_threads: int = setting(
        4, "threads for Proxmox API calls (proxmoxer blocks)", lo=1, hi=64
    )
    proxmox_poll_s: float = setting(
        1.0, "seconds between polls of a Proxmox task (UPID)", lo=0.01, hi=60
    )
    proxmox_task_timeout_s: float = setting(
        600.0, "seconds a Proxmox task (clone, start, stop) may take", lo=1, hi=_DAY_S
    )
