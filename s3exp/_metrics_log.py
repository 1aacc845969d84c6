"""Non-blocking metric logging: an in-memory buffer and a background shard writer.

``Run.log`` appends one tuple per metric to a list under a lock and returns; it never
touches the network.  A flusher thread writes the buffer as a Parquet shard every
``flush_seconds``, or sooner when ``flush_rows`` rows are waiting, to

    staging/<exp>/<run_id>/<attempt>/<seq>.parquet

with a create-only write.  The key is deterministic (run, attempt, sequence), so a retried
upload is a no-op, and a failed upload keeps its rows (and its sequence number) for the
next try.  A crash loses at most the rows logged since the last flush.
"""

from __future__ import annotations

import io
import math
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from s3exp import _keys
from s3exp._errors import AlreadyExists, S3ExpError, StoreError
from s3exp.stores import Store

__all__ = ["SHARD_SCHEMA", "MetricBuffer", "RunIdentity", "coerce_metrics"]

SHARD_SCHEMA = pa.schema([
    ("experiment", pa.string()),
    ("run_id", pa.string()),
    ("attempt", pa.int32()),
    ("step", pa.int64()),
    ("name", pa.string()),
    ("value", pa.float64()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("dataset", pa.string()),
    ("model", pa.string()),
    ("worker", pa.string()),
])


@dataclass(frozen=True, slots=True)
class RunIdentity:
    """What every metric row of one attempt carries besides (step, name, value, ts)."""

    experiment: str
    run_id: str
    attempt: int
    dataset: str | None
    model: str | None
    worker: str


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
    is left, synchronously, and stops the flusher; it is idempotent.
    """

    def __init__(self, store: Store, ident: RunIdentity, *, flush_seconds: float = 5.0,
                 flush_rows: int = 50_000) -> None:
        self.store = store
        self.ident = ident
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._rows: list[tuple[int, str, float, float]] = []
        self._next_step = 0
        self._seq = 0
        self.rows_written = 0
        self.shards_written = 0
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"s3exp-metrics-{ident.run_id}")
        self._thread.start()

    def log(self, metrics: Mapping[str, Any], step: int | None = None,
            ts: float | None = None) -> None:
        """Append one row per metric; ``step`` defaults to one more than the last step."""
        t = time.time() if ts is None else float(ts)
        with self._lock:
            if step is None:
                step = self._next_step
            # Built whole before it is kept: a bad value raises and keeps nothing.
            self._rows.extend([(step, n if type(n) is str else _bad_name(n), float(v), t)
                               for n, v in metrics.items()])
            self._next_step = step + 1
            full = len(self._rows) >= self.flush_rows
        if full:
            self._wake.set()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                self.flush()
            except StoreError as e:  # kept for the next try; the run goes on
                print(f"s3exp: metric upload for {self.ident.run_id} failed, will retry: {e}",
                      file=sys.stderr)

    def _shard(self, rows: list[tuple[int, str, float, float]]) -> bytes:
        steps, names, values, stamps = zip(*rows, strict=True)
        n = len(rows)
        ident = self.ident
        table = pa.table({
            "experiment": pa.array([ident.experiment] * n, pa.string()),
            "run_id": pa.array([ident.run_id] * n, pa.string()),
            "attempt": pa.array([ident.attempt] * n, pa.int32()),
            "step": pa.array(steps, pa.int64()),
            "name": pa.array(names, pa.string()),
            "value": pa.array(values, pa.float64()),
            "ts": pa.array([int(s * 1_000_000) if math.isfinite(s) else None for s in stamps],
                           pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "dataset": pa.array([ident.dataset] * n, pa.string()),
            "model": pa.array([ident.model] * n, pa.string()),
            "worker": pa.array([ident.worker] * n, pa.string()),
        }, schema=SHARD_SCHEMA)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        return sink.getvalue()

    def flush(self) -> int:
        """Write everything buffered as one shard now; returns the rows written."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            key = _keys.shard(self.ident.experiment, self.ident.run_id, self.ident.attempt, self._seq)
            try:
                self.store.put_if_absent(key, self._shard(rows))
            except AlreadyExists:
                pass  # an earlier try of this very shard landed: create-only keys make it a no-op
            except BaseException:
                with self._lock:
                    self._rows[:0] = rows  # keep them, in order, for the next try
                raise
            self._seq += 1
            self.rows_written += len(rows)
            self.shards_written += 1
            return len(rows)

    def close(self) -> None:
        """Stop the flusher and write what is left (synchronously)."""
        if not self._stopped.is_set():
            self._stopped.set()
            self._wake.set()
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout=30)
        self.flush()
