"""Non-blocking metric logging: an in-memory buffer and a background shard writer.

``Run.log`` appends one tuple per metric to a list, without a lock, and returns; it never
touches the network.  A flusher thread writes the buffer as a Parquet shard every
``flush_seconds``, or sooner when ``flush_rows`` rows are waiting, to

    staging/<exp>/<run_id>/<attempt>/<seq>.parquet

with a create-only write.  The key is deterministic (run, attempt, sequence), so a retried
upload is a no-op.  A failed upload keeps its exact bytes and sequence number and is
retried first, unchanged, at the next flush: the failed try may have landed, and a retry
with more rows under the same key would be refused as a duplicate and lose the newer rows.
A crash loses at most the rows logged since the last successful flush.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - registers the compute kernels that the Parquet writer

#   uses; pyarrow >= 21 does so only on this import, and a writer thread that gets
#   there first fails with "No function registered with name: unique"
import pyarrow.parquet as pq

from s3exp.bucket import keys
from s3exp.core import AlreadyExists, S3ExpError, call_later
from s3exp.stores import Store
from s3exp.tables._schema import (
    BUFFERED_ROW,
    SHARD_SCHEMA,
    SHARD_WRITE_OPTIONS,
    VALUES,
    AttemptIdentity,
)

__all__ = ["MetricBuffer", "coerce_metrics"]

log = logging.getLogger(__name__)

def coerce_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, float]]:
    """Validate a log call's metrics: string names, real numbers (bools count as 0/1)."""
    out = []
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            raise S3ExpError(f"metric names must be non-empty strings, got {name!r}")
        try:
            out.append((name, float(value)))
        except (TypeError, ValueError):
            raise S3ExpError(f"metric {name!r} must be a number, got {type(value).__name__}") from None
    return out


def _bad_name(name: object) -> str:
    raise S3ExpError(f"metric names must be strings, got {name!r}")


class MetricBuffer:
    """Buffers one attempt's metric rows and writes them as Parquet shards.

    ``log`` may be called from any thread; it is cheap (no I/O).  ``close`` flushes what
    is left, synchronously, and stops the flusher; it is idempotent.  ``log`` after
    ``close`` raises, so a row can never be accepted and then silently left unwritten.
    """

    def __init__(self, store: Store, ident: AttemptIdentity, *, flush_seconds: float = 5.0,
                 flush_rows: int = 50_000) -> None:
        self.store = store
        self.ident = ident
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._flush_lock = threading.Lock()
        self._rows: list[tuple[int, str, float, float]] = []
        self._next_step = 0
        self._seq = 0
        # A shard whose upload failed: (seq, body, rows).  It is retried byte for byte
        # before anything newer, because the failed try may in fact have landed: a retry
        # with different bytes under the same key would find it taken and drop the rows
        # that were not in the first try.
        self._unsent: tuple[int, bytes, int] | None = None
        self._closed = False
        self.rows_written = 0
        self.shards_written = 0
        self.failed_uploads = 0
        self._wake = threading.Event()
        self._stopped = threading.Event()
        # The flusher thread starts when the first flush falls due (or flush_rows rows
        # wait): a run shorter than flush_seconds starts none and writes one shard, at
        # close.  Starting a thread per run cost more than the run itself for short runs.
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._timer = call_later(flush_seconds, self._start_flusher)

    def _start_flusher(self) -> None:
        with self._thread_lock:
            if self._thread is not None or self._stopped.is_set():
                return
            self._wake.set()  # due now: the flusher's first wait returns at once
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name=f"s3exp-metrics-{self.ident.run_id}")
            self._thread.start()

    def log(self, metrics: Mapping[str, Any], step: int | None = None,
            ts: float | None = None) -> None:
        """Append one row per metric; ``step`` defaults to one more than the last step.

        Takes no lock: ``list.extend`` is atomic under the GIL, and the flusher only ever
        removes a prefix it has copied.  (A lock taken on every call starves the flusher:
        the training loop re-takes it before the woken flusher can run.)  Threads that
        log concurrently should pass ``step``; the default step is not synchronised.
        """
        if self._closed:
            raise S3ExpError(f"run {self.ident.run_id} has ended: its metrics are closed")
        t = time.time() if ts is None else float(ts)
        if step is None:
            step = self._next_step
        # Built whole before it is kept: a bad name or value raises and keeps nothing.
        try:
            new = [(step, n if type(n) is str else _bad_name(n), float(v), t)
                   for n, v in metrics.items()]
        except (TypeError, ValueError):
            coerce_metrics(metrics)  # raises the readable error
            raise
        rows = self._rows
        rows.extend(new)
        self._next_step = step + 1
        if len(rows) >= self.flush_rows and not self._wake.is_set():
            # Once: setting an Event takes its lock; doing it on every call would starve
            # the flusher waiting to get that lock back.
            if self._thread is None:
                self._start_flusher()  # sets _wake too
            else:
                self._wake.set()
        if self._closed:  # closed while we appended: make sure these rows are written
            self.flush()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                self.flush()
            except Exception as e:  # noqa: BLE001 - kept for the next try; the run goes on
                log.warning("metric upload for %s failed, will retry: %s", self.ident.run_id, e)

    def _shard(self, rows: list[tuple[int, str, float, float]]) -> bytes:
        """Encode rows as one Parquet shard.  Runs on the flusher thread, so it is kept
        vectorised: it competes with the training loop for the GIL."""
        n = len(rows)
        ident = self.ident
        # One conversion of the row tuples as a struct array: several times faster than
        # transposing them in Python first.
        logged = dict(zip(VALUES, pa.array(rows, type=BUFFERED_ROW).flatten(), strict=True))
        micros = logged["ts"].to_numpy() * 1e6
        finite = np.isfinite(micros)
        logged["ts"] = pa.array(np.where(finite, micros, 0).astype(np.int64),
                                mask=None if finite.all() else ~finite).cast(SHARD_SCHEMA.field("ts").type)

        def constant(f: pa.Field) -> pa.Array:
            value = getattr(ident, f.name)
            if f.type != pa.string():
                return pa.array(np.full(n, value), f.type)
            if value is None:
                return pa.nulls(n, pa.string())
            # One dictionary entry and n zero indices: no per-row Python object.
            return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                                  pa.array([value], pa.string()))

        table = pa.table([logged[f.name] if f.name in logged else constant(f) for f in SHARD_SCHEMA],
                         names=SHARD_SCHEMA.names)
        sink = io.BytesIO()
        pq.write_table(table, sink, **SHARD_WRITE_OPTIONS)
        return sink.getvalue()

    def _upload(self, seq: int, body: bytes, rows: int) -> None:
        key = keys.shard(self.ident.experiment, self.ident.run_id, self.ident.attempt, seq)
        try:
            self.store.put_if_absent(key, body)
        except AlreadyExists:
            pass  # an earlier try of these very bytes landed: create-only makes it a no-op
        except BaseException:
            self._unsent = (seq, body, rows)
            self.failed_uploads += 1
            raise
        self._unsent = None
        self._seq = seq + 1
        self.rows_written += rows
        self.shards_written += 1

    def flush(self) -> int:
        """Write everything buffered now (a shard that failed before first, unchanged);
        returns the rows written.  On failure the rows are kept for the next try."""
        with self._flush_lock:
            written = 0
            if self._unsent is not None:
                seq, body, n = self._unsent
                self._upload(seq, body, n)
                written += n
            # Copy a prefix, then delete it: each step is one atomic list operation, and
            # rows appended meanwhile land after the prefix and stay for the next flush.
            buffer = self._rows
            n = len(buffer)
            if not n:
                return written
            rows = buffer[:n]
            del buffer[:n]
            try:
                body = self._shard(rows)
            except BaseException:
                buffer[:0] = rows  # keep them, in order, for the next try
                raise
            self._upload(self._seq, body, len(rows))
            return written + len(rows)

    def close(self) -> None:
        """Stop the flusher and write what is left (synchronously).  Further ``log`` calls
        raise; a failed final write may be retried by calling ``close`` again."""
        self._closed = True
        if not self._stopped.is_set():
            self._stopped.set()
            self._timer.cancel()
            with self._thread_lock:
                thread = self._thread
            self._wake.set()
            if thread is not None and threading.current_thread() is not thread:
                thread.join(timeout=30)
        self.flush()
