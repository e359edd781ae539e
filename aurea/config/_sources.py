"""Where settings come from: the TOML file (read defensively) and ``AUREA_*`` environment variables.

Environment rule (DESIGN §3): ``AUREA_<SECTION>_<KEY>`` sets a key of a known section, and an
unknown key there is an error; any other ``AUREA_*`` variable (the CLI's own ``AUREA_API_KEY`` and
``AUREA_TARGET``, tools' variables) is not the server's business and is ignored.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aurea.config._rules import ConfigError, keys_of
from aurea.config._sections import SECTIONS

MAX_FILE_BYTES = 1 << 20  # a config file or a PEM file; more is a mistake, not a config
TABLE_SECTIONS = ("auth", "providers", "models")  # named tables: the config file only
SHORTCUTS = {"AUREA_HOST": ("server", "host"), "AUREA_PORT": ("server", "port")}
# The command-line client's own variables (``aurea generate --tls-ca`` ...) that look like keys
# of a server section: a shell that exports them for the client must still start the server.
CLIENT_VARIABLES = frozenset({"AUREA_TLS", "AUREA_TLS_CA", "AUREA_TLS_CERT", "AUREA_TLS_KEY"})


def read_file(path: str | Path, key: str | None = None) -> bytes:
    """The bytes of a regular file, or a ConfigError naming ``key`` (default: the path).

    Opened non-blocking so a FIFO given by mistake cannot hang the start, and read with a cap so a
    device such as ``/dev/zero`` cannot fill memory.
    """
    where = key or str(path)
    it = f"file {path} " if key else ""  # the key already is the path when none is given
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(where, f"{it}does not exist") from None
    except IsADirectoryError:
        raise ConfigError(where, f"{it}is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(where, f"{it}is not readable (permission denied)") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(where, f"{it}cannot be opened: {_why(exc)}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(where, f"{it}is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise ConfigError(where, f"{it}is not a regular file")
        data = _read_upto(fd, MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(where, f"{it}cannot be read: {_why(exc)}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(where, f"{it}is larger than {MAX_FILE_BYTES} bytes")
    return data


def _read_upto(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := os.read(fd, min(1 << 16, limit - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def read_toml(path: str | Path) -> dict[str, Any]:
    """The config file as a TOML document; every failure is a ConfigError naming the path."""
    data = read_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            str(path), f"is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        raise ConfigError(str(path), f"is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(str(path), "is not valid TOML: nested too deeply") from None


@dataclass(slots=True)
class EnvOverrides:
    tree: dict[str, dict[str, str]] = field(default_factory=dict)  # TOML-shaped
    plain_keys: list[str] = field(default_factory=list)  # AUREA_API_KEYS items
    origin: dict[str, str] = field(default_factory=dict)  # "server.port" -> "AUREA_SERVER_PORT"


def env_overrides(env: Mapping[str, str]) -> EnvOverrides:
    out = EnvOverrides()
    # Shortcuts first, so the full name (AUREA_SERVER_PORT) wins over AUREA_PORT.
    names = sorted((n for n in env if n.startswith("AUREA_")), key=lambda n: n not in SHORTCUTS)
    for name in names:
        value = env[name]
        if name in CLIENT_VARIABLES:
            continue
        if name == "AUREA_API_KEYS":
            out.plain_keys = [k for k in value.split(",") if k.strip()]
            continue
        if name in SHORTCUTS:
            section, key = SHORTCUTS[name]
        else:
            section, _, key = name[len("AUREA_") :].lower().partition("_")
            if section in TABLE_SECTIONS:
                raise ConfigError(
                    name, f"[{section}] is set in the config file, not the environment"
                )
            if section not in SECTIONS:
                continue  # a client's or a tool's variable (AUREA_TARGET, AUREA_API_KEY, ...)
            allowed = keys_of(SECTIONS[section])
            if key not in allowed:
                raise ConfigError(
                    name, f"[{section}] has no key {key!r}; allowed: {', '.join(allowed)}"
                )
        out.tree.setdefault(section, {})[key] = value
        out.origin[f"{section}.{key}"] = name
    return out
