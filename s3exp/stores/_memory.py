"""``memory://``: an in-process store for tests, with an injectable clock."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import datetime

from s3exp.core import AlreadyExists, Clock, Conflict, ObjectNotFound, SystemClock
from s3exp.stores._base import Blob, ObjectMeta, RequestCounter, Store, check_key

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """A dict behind one lock.  Thread-safe; not shared between processes."""

    def __init__(self, name: str = "", clock: Clock | None = None) -> None:
        self.url = f"memory://{name}"
        self.clock: Clock = clock or SystemClock()
        self.requests = RequestCounter()
        self._lock = threading.Lock()
        self._objects: dict[str, Blob] = {}
        self._versions = itertools.count(1)

    def _write(self, key: str, data: bytes) -> ObjectMeta:
        meta = ObjectMeta(key, f'"m{next(self._versions)}"', len(data), self.clock.now())
        self._objects[key] = Blob(bytes(data), meta)
        return meta

    def get(self, key: str) -> Blob:
        check_key(key)
        self.requests.add("GET")
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                raise ObjectNotFound(f"no object at {key!r}", key) from None

    def head(self, key: str) -> ObjectMeta:
        check_key(key)
        self.requests.add("HEAD")
        with self._lock:
            try:
                return self._objects[key].meta
            except KeyError:
                raise ObjectNotFound(f"no object at {key!r}", key) from None

    def put_if_absent(self, key: str, data: bytes) -> ObjectMeta:
        check_key(key)
        self.requests.add("PUT")
        with self._lock:
            if key in self._objects:
                raise AlreadyExists(f"{key!r} already exists", key)
            return self._write(key, data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> ObjectMeta:
        check_key(key)
        self.requests.add("PUT")
        with self._lock:
            current = self._objects.get(key)
            if current is None or current.etag != etag:
                raise Conflict(f"{key!r} changed or is gone (expected ETag {etag})", key)
            return self._write(key, data)

    def delete_if_match(self, key: str, etag: str) -> None:
        check_key(key)
        self.requests.add("DELETE")
        with self._lock:
            current = self._objects.get(key)
            if current is None or current.etag != etag:
                raise Conflict(f"{key!r} changed or is gone (expected ETag {etag})", key)
            del self._objects[key]

    def list(self, prefix: str) -> Iterator[ObjectMeta]:
        self.requests.add("LIST")
        with self._lock:
            metas = [b.meta for k, b in self._objects.items() if k.startswith(prefix)]
        return iter(sorted(metas, key=lambda m: m.key.encode()))

    def server_time(self) -> datetime:
        return self.clock.now()
