"""The API keys in force and their policies, changeable while the server runs.

A presented key is hashed (SHA-256) and compared, in constant time, with every stored digest:
the scan never stops at a match, so how long it takes tells nothing about which key (or how much
of one) matched. Only digests are kept; a key generated here is returned once and forgotten.

Changes (``add``, ``disable``, ``enable``, ``rotate``) apply to the next call at once. A
rotation keeps the previous secret valid for a grace period (``previous_until``); calls already
running on a disabled key, or on a rotated-out secret, are ended by the edge after
``server.revoked_key_grace_s`` (see ``Edge.revoke``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aurea.config import ApiKey
from aurea.config._catalog import KEY_NAME_MAX, SCOPES
from aurea.errors import FailedPrecondition, InvalidRequest, NotFound, Unauthenticated

__all__ = ["KeyRing", "Match", "new_secret"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
KEY_PREFIX = "aurea-"  # tells an Aurea key apart in a leak scanner


def new_secret() -> str:
    """A fresh API key: 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _digest_hex(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    digest: bytes  # 32 bytes
    until: float | None  # a rotated-out secret: valid until this clock instant


@dataclass(frozen=True, slots=True)
class Match:
    """An authenticated caller: the key's policy and which of its secrets was shown."""

    key: ApiKey
    digest: bytes


class KeyRing:
    """Every key's policy by name, and the digests (current and rotated-out) that map to it."""

    def __init__(self, keys: Iterable[ApiKey], *, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._keys: dict[str, ApiKey] = {}
        self._entries: tuple[_Entry, ...] = ()
        for k in keys:
            self._keys[k.name] = k
            self._entries += (_Entry(k.name, bytes.fromhex(k.sha256), None),)
        self.generation = 0  # bumped on every change

    @property
    def open(self) -> bool:
        """No key at all: the server runs open (every caller has every scope)."""
        return not self._keys

    def get(self, name: str) -> ApiKey | None:
        return self._keys.get(name)

    def all(self) -> list[ApiKey]:
        return [self._keys[n] for n in sorted(self._keys)]

    def match(self, raw: str) -> Match:
        """The key ``raw`` is; raises Unauthenticated (never naming or echoing the key)."""
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).digest()
        found: _Entry | None = None
        for entry in self._entries:  # no early exit: constant time in which entry matches
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        if found is None:
            raise Unauthenticated("the API key is not valid")
        if found.until is not None and self.clock() >= found.until:
            raise Unauthenticated("the API key was rotated and its grace period is over")
        key = self._keys[found.name]
        if key.disabled:
            raise Unauthenticated(f"the API key {key.name!r} is disabled")
        return Match(key, digest)

    # -- changes -------------------------------------------------------------------------------

    def add(self, key: ApiKey) -> ApiKey:
        _check(key)
        if key.name in self._keys:
            raise FailedPrecondition(f"an API key named {key.name!r} exists already")
        digest = bytes.fromhex(key.sha256)
        if any(hmac.compare_digest(e.digest, digest) for e in self._entries):
            raise FailedPrecondition("that key is in use already (under another name)")
        self._keys[key.name] = key
        self._entries += (_Entry(key.name, digest, None),)
        self.generation += 1
        return key

    def set_disabled(self, name: str, disabled: bool) -> ApiKey:
        key = dataclasses.replace(self._get(name), disabled=disabled)
        self._keys[name] = key
        self.generation += 1
        return key

    def rotate(self, name: str, sha256: str, grace_s: float) -> tuple[ApiKey, bytes]:
        """Give ``name`` a new secret; the previous one stays valid for ``grace_s``. Returns the
        key and the digest of the previous secret (for ending its calls after the grace)."""
        old = self._get(name)
        if not _HEX64.fullmatch(sha256):
            raise InvalidRequest.field("sha256", "must be 64 lower-case hex digits")
        digest = bytes.fromhex(sha256)
        if any(hmac.compare_digest(e.digest, digest) for e in self._entries):
            raise FailedPrecondition("that key is in use already")
        previous = bytes.fromhex(old.sha256)
        until = self.clock() + grace_s
        kept = tuple(
            (_Entry(name, e.digest, until) if e.digest == previous else e)
            for e in self._entries
            if e.name != name or e.digest == previous
        )  # earlier rotated-out secrets of this key end now
        key = dataclasses.replace(old, sha256=sha256)
        self._keys[name] = key
        self._entries = (*kept, _Entry(name, digest, None))
        if grace_s <= 0:
            self._entries = tuple(e for e in self._entries if e.digest != previous)
        self.generation += 1
        return key, previous

    def _get(self, name: str) -> ApiKey:
        key = self._keys.get(name)
        if key is None:
            raise NotFound(f"no API key is named {name[:KEY_NAME_MAX]!r}")
        return key


def _check(key: ApiKey) -> None:
    if not 0 < len(key.name) <= KEY_NAME_MAX or not key.name.isprintable():
        raise InvalidRequest.field("name", f"must be 1 to {KEY_NAME_MAX} printable characters")
    if not _HEX64.fullmatch(key.sha256):
        raise InvalidRequest.field("sha256", "must be 64 lower-case hex digits")
    if not key.scopes or not key.scopes <= set(SCOPES):
        raise InvalidRequest.field("scopes", f"must be a non-empty list of {', '.join(SCOPES)}")
    if len(key.tenant) > KEY_NAME_MAX or not key.tenant.isprintable():
        raise InvalidRequest.field("tenant", f"at most {KEY_NAME_MAX} printable characters")
    for field, value, hi in (
        ("rpm", key.rpm, 10**9),
        ("tpm", key.tpm, 10**12),
        ("max_streams", key.max_streams, 10**9),
    ):
        if not 0 <= value <= hi:
            raise InvalidRequest.field(field, f"must be between 0 and {hi}")
    if key.budget_nanos is not None and not 0 <= key.budget_nanos <= 10**15:
        raise InvalidRequest.field("budget_nanos", "must be between 0 and 1e15 (a million USD)")


def digest_of(raw: str) -> str:
    """The hex SHA-256 the ring stores for ``raw``."""
    return _digest_hex(raw)
