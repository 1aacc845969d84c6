"""The one store interface everything in s3exp is written against.

Concurrency contract: any number of processes on any number of machines may call any
method on stores that point at the same place, at the same time.  The only writes are
conditional, and each is atomic on the server:

* ``put_if_absent``: exactly one of several concurrent creators of a key succeeds; the
  others get :class:`~s3exp.AlreadyExists`.
* ``put_if_match`` / ``delete_if_match``: succeed only if the object's current ETag is the
  given one; otherwise (including when the key is missing) :class:`~s3exp.Conflict`.

Readers never see a partly written object.  ``list`` is sorted by key (binary order, as S3
lists) and may lag behind writes on eventually consistent servers; correctness never
depends on it, only efficiency does.
"""

from __future__ import annotations

import abc
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Blob", "ObjectMeta", "RequestCounter", "Store", "check_key", "prefix_matches_nothing"]

_CONTROL = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What a store says about one object, without its body."""

    key: str
    etag: str
    size: int
    last_modified: datetime
    """The server's time of the last write (timezone-aware, UTC)."""


@dataclass(frozen=True, slots=True)
class Blob:
    """An object's body together with the metadata read in the same request."""

    data: bytes
    meta: ObjectMeta

    @property
    def etag(self) -> str:
        return self.meta.etag


class RequestCounter:
    """Thread-safe count of store requests by kind (GET, HEAD, PUT, LIST, DELETE)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._counts[kind] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class Store(abc.ABC):
    """A key-value object store with conditional writes and a server clock.

    Keys are relative to the store's root (its URL); they are ``/``-separated and built by
    :mod:`s3exp.bucket.keys` only.  Implementations count their requests in ``requests``.
    """

    url: str
    requests: RequestCounter
    #: How many GETs are worth having in flight when reading many objects.  One for a
    #: local store (threads only contend for the GIL there); more where each GET waits
    #: on a network round trip.
    parallel_gets: int = 1

    @abc.abstractmethod
    def get(self, key: str) -> Blob:
        """Return the body and metadata of ``key``; raise ObjectNotFound if missing."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectMeta:
        """Return the metadata of ``key``; raise ObjectNotFound if missing."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> ObjectMeta:
        """Create ``key``; raise AlreadyExists if it exists (If-None-Match: *)."""

    @abc.abstractmethod
    def put_if_match(self, key: str, data: bytes, etag: str) -> ObjectMeta:
        """Replace ``key`` if its ETag is ``etag``; raise Conflict otherwise or if missing."""

    @abc.abstractmethod
    def delete_if_match(self, key: str, etag: str) -> None:
        """Delete ``key`` if its ETag is ``etag``; raise Conflict otherwise or if missing."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectMeta]:
        """Yield every object whose key starts with ``prefix``, sorted by key."""

    @abc.abstractmethod
    def server_time(self) -> datetime:
        """The server's current time (UTC), the clock that ``last_modified`` is read on.

        Lease expiry compares this with ``last_modified``, so no worker's own clock is
        ever trusted.
        """

    def close(self) -> None:
        """Release connections; the default does nothing."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_key(key: str) -> str:
    """Reject keys that could escape the store's root or confuse a filesystem.

    Keys are built from validated names, so this is a second line of defence, kept here
    so that every backend enforces the same rule.
    """
    from s3exp.core import StoreError

    if (not key or key.startswith(("/", ".")) or key.endswith("/") or "//" in key
            or "/." in key or _CONTROL.search(key)):
        raise StoreError(f"invalid key {key!r}", key)
    return key


def prefix_matches_nothing(prefix: str) -> bool:
    """True if no key that :func:`check_key` accepts can start with ``prefix``.

    A ``list`` of such a prefix answers empty without asking, so that a prefix like
    ``../`` never reaches a filesystem or a server that normalizes paths.
    """
    from s3exp.core import StoreError

    head, _, last = prefix.rpartition("/")
    if prefix.startswith("/") or last.startswith(".") or _CONTROL.search(last):
        return True
    if head:
        try:
            check_key(head)
        except StoreError:
            return True
    return False
