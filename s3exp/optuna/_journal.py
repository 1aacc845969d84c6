"""Optuna's journal in a bucket: one create-only object per entry.

Optuna's ``JournalStorage`` keeps every change to its studies as an ordered log of
operations and replays it; a backend need only append entries and read them back in
order (``BaseJournalBackend``).  Here entry ``n`` is the object ``optuna/log/<n>.json``,
written with a create-only PUT:

* **Appending** creates the next number this process believes is free.  If another
  process created it first (``AlreadyExists``), the appender reads what it missed and
  tries the number after that, so the journal has one total order with no gap, whatever
  the number of writers, without a lock.
* **Reading from n** GETs entries n, n+1, ... until the first that does not exist (a 404
  costs one GET, a twelfth of a LIST's price), several at a time.  Entries never change
  once written, so a reader caches nothing and trusts every body it gets.
* **Snapshots** (``BaseJournalSnapshot``): Optuna pickles its replayed state every 100
  trials; it is stored create-only as ``optuna/snapshots/<n>.pkl``, n being the entries it
  covers, and a new process loads the newest and reads only the entries after it.  A
  snapshot is a pickle: whoever can write the bucket can run code in every process that
  opens the journal, as with Optuna's own snapshots; the bucket's writers are trusted.

Concurrency contract: any number of processes on any number of machines may append and
read at once; a process may share one backend between threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from optuna.storages.journal import BaseJournalBackend
from optuna.storages.journal._base import (
    BaseJournalSnapshot,  # not re-exported by Optuna
)

from s3exp.bucket import JournalEntry, keys
from s3exp.core import AlreadyExists, ObjectNotFound
from s3exp.stores import Store

__all__ = ["BucketJournal"]

_READ_AHEAD = 8  # GETs in flight while catching up on S3 (one at a time on a local store)


class BucketJournal(BaseJournalBackend, BaseJournalSnapshot):
    """Optuna's journal backend over a :class:`~s3exp.stores.Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._next = 0
        """The lowest entry number this process has not seen: where it appends next."""
        self._pool: ThreadPoolExecutor | None = None

    def __getstate__(self) -> dict[str, Any]:
        """The store travels; the lock and the GET pool are made anew where it lands."""
        return {"store": self.store, "next": self._next}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["store"])  # type: ignore[misc]
        self._next = state["next"]

    # -- BaseJournalBackend --------------------------------------------------------

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        """Every entry numbered ``log_number_from`` and after, in order."""
        out = [entry.log for _, entry in self._entries(log_number_from)]
        with self._lock:
            self._next = max(self._next, log_number_from + len(out))
        return out

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append each log as the next entry (one create-only PUT each, plus a catch-up
        read for each race lost to another writer)."""
        for log in logs:
            body = JournalEntry(log).to_bytes()
            with self._lock:
                n = self._next
            while True:
                try:
                    self.store.put_if_absent(keys.optuna_log(n), body)
                    break
                except AlreadyExists:
                    n += 1 + sum(1 for _ in self._entries(n + 1))  # what others wrote since
            with self._lock:
                self._next = max(self._next, n + 1)

    # -- BaseJournalSnapshot -------------------------------------------------------

    def save_snapshot(self, snapshot: bytes) -> None:
        with self._lock:
            n = self._next
        try:
            self.store.put_if_absent(keys.optuna_snapshot(n), snapshot)
        except AlreadyExists:
            pass  # another process snapshotted the same entries: either will do

    def load_snapshot(self) -> bytes | None:
        found = [(k, m.key) for m in self.store.list(keys.optuna_snapshots_prefix())
                 if (k := keys.parse_optuna_snapshot(m.key)) is not None]
        if not found:
            return None
        _, key = max(found)
        try:
            return self.store.get(key).data
        except ObjectNotFound:  # pragma: no cover - snapshots are never deleted
            return None

    # -- reading -------------------------------------------------------------------

    def _entries(self, start: int) -> Iterator[tuple[int, JournalEntry]]:
        """(number, entry) from ``start`` until the first number that does not exist.

        The first GET goes alone: most reads find no new entry, or one, and should cost one
        GET.  After a hit, on S3 several GETs go out at once (a process that joins late
        catches up on thousands of entries)."""
        first = self._get(start)
        if first is None:
            return
        yield start, first
        width = max(1, min(_READ_AHEAD, self.store.parallel_gets))
        n = start + 1
        if width == 1:
            while (entry := self._get(n)) is not None:
                yield n, entry
                n += 1
            return
        pool = self._executor(width)
        window: deque[tuple[int, Future[JournalEntry | None]]] = deque()
        while True:
            while len(window) < width:
                window.append((n, pool.submit(self._get, n)))
                n += 1
            number, fut = window.popleft()
            entry = fut.result()
            if entry is None:
                for _, later in window:
                    later.cancel()
                return
            yield number, entry

    def _get(self, n: int) -> JournalEntry | None:
        key = keys.optuna_log(n)
        try:
            blob = self.store.get(key)
        except ObjectNotFound:
            return None
        return JournalEntry.from_bytes(blob.data, key)

    def _executor(self, width: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="s3exp-journal")
            return self._pool
