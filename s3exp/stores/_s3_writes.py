"""The memory of writes whose outcome is unknown, for :class:`~s3exp.stores._s3.S3Store`.

A conditional write whose every retry lost its reply raises Unavailable, and may have
landed.  Its key, the digest of its body and its write id are remembered (at most
``MAX_KEYS`` keys, the oldest forgotten first: a forgotten one is merely not recognised
later).  The next write of that key with the same body reuses the id (a heartbeat re-sends
the very same lease body after an Unavailable), so that when its condition fails, one HEAD
can tell whether the earlier write is what it fails on.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import dataclass

__all__ = ["MAX_KEYS", "UnresolvedWrites"]

MAX_KEYS = 1024


@dataclass(frozen=True, slots=True)
class _Unresolved:
    digest: bytes
    """SHA-256 of its body: what tells a repetition of it (32 bytes, not the body, which
    can be a 10 MB compaction part)."""
    write_id: str


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class UnresolvedWrites:
    """Thread safe.  Empty (and lock-free to ask) unless a write ended in Unavailable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writes: dict[str, _Unresolved] = {}

    def write_id(self, key: str, data: bytes) -> str:
        """The id of a new write of ``data`` to ``key``: a fresh random one, unless the
        last write of ``key`` with this very body ended in Unavailable; then that one's."""
        if self._writes:
            with self._lock:
                entry = self._writes.get(key)
            if entry is not None and entry.digest == _digest(data):
                return entry.write_id
        return uuid.uuid4().hex

    def note(self, key: str, data: bytes, write_id: str) -> None:
        """Remember a write whose outcome is unknown."""
        with self._lock:
            self._writes.pop(key, None)
            self._writes[key] = _Unresolved(_digest(data), write_id)
            while len(self._writes) > MAX_KEYS:
                del self._writes[next(iter(self._writes))]

    def take(self, key: str, write_id: str) -> bool:
        """Forget ``key``; True if it was remembered with ``write_id`` (this write repeats
        an unresolved one, which may be what its condition failed on)."""
        if not self._writes:  # the common case, a plain lost race: no lock
            return False
        with self._lock:
            entry = self._writes.pop(key, None)
        return entry is not None and entry.write_id == write_id

    def forget(self, key: str) -> None:
        if self._writes:
            with self._lock:
                self._writes.pop(key, None)

    def __len__(self) -> int:
        return len(self._writes)
