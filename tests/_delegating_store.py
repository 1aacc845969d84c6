"""A Store that forwards every call to another: tests subclass it and override the one
method whose behaviour they change (a lost reply, a ledger, a race at a chosen moment)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from s3exp.stores import Blob, ObjectMeta, Store


class DelegatingStore(Store):
    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.requests = inner.requests

    def get(self, key: str) -> Blob:
        return self.inner.get(key)

    def head(self, key: str) -> ObjectMeta:
        return self.inner.head(key)

    def put_if_absent(self, key: str, data: bytes) -> ObjectMeta:
        return self.inner.put_if_absent(key, data)

    def put_if_match(self, key: str, data: bytes, etag: str) -> ObjectMeta:
        return self.inner.put_if_match(key, data, etag)

    def delete_if_match(self, key: str, etag: str) -> None:
        self.inner.delete_if_match(key, etag)

    def list(self, prefix: str) -> Iterator[ObjectMeta]:
        return self.inner.list(prefix)

    def server_time(self) -> datetime:
        return self.inner.server_time()

    def close(self) -> None:
        self.inner.close()
