"""Reading what workers staged, and Parquet objects in general: shared by compaction and
the exact readers.

Shards live at ``staging/<exp>/<run_id>/<attempt>/<seq>.parquet`` (create-only, one
``MetricBuffer`` each), so a LIST of ``staging/<exp>/`` groups them by run and attempt
without reading any.
"""

from __future__ import annotations

import io
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from s3exp.bucket import keys
from s3exp.core import DamagedObject
from s3exp.stores import ObjectMeta, Store
from s3exp.tables._schema import METRICS_SCHEMA, ROW_SCHEMA

__all__ = ["decode_rows", "decode_shard", "fetch_ordered", "read_table", "staged_shards"]

T = TypeVar("T")


def staged_shards(store: Store, exp: str) -> dict[str, dict[int, list[ObjectMeta]]]:
    """Every staged shard of ``exp``: run_id -> attempt -> shard metas in sequence order."""
    out: dict[str, dict[int, list[ObjectMeta]]] = defaultdict(lambda: defaultdict(list))
    for meta in store.list(keys.staging_prefix(exp)):
        parsed = keys.parse_shard(exp, meta.key)
        if parsed is not None:
            out[parsed[0]][parsed[1]].append(meta)
    return out


def read_table(data: bytes, key: str) -> pa.Table:
    """A whole Parquet object; DamagedObject if it is not one."""
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as e:
        raise DamagedObject(key, f"not a Parquet file ({e})") from None


def decode_shard(data: bytes, key: str) -> pa.Table:
    """A staged shard as metrics rows (``METRICS_SCHEMA``)."""
    return read_table(data, key).select(METRICS_SCHEMA.names).cast(METRICS_SCHEMA)


def decode_rows(data: bytes, key: str) -> pa.Table:
    """A staged shard's logged values (``ROW_SCHEMA``: step, name, value, ts).

    The identity columns are not decoded: a shard is written by the one ``MetricBuffer``
    of one attempt, so within a shard they are constant, and compaction takes them from
    the shard's key (run, attempt) and the run's result record (dataset, model, worker),
    which that attempt wrote from the same lease.  Reading four columns instead of nine
    halves the per-shard cost, which dominates for runs of a few thousand rows.
    """
    try:
        f = pq.ParquetFile(pa.BufferReader(data), read_dictionary=["name"])
        table = f.read(columns=ROW_SCHEMA.names, use_threads=False)
    except (pa.ArrowInvalid, OSError, KeyError) as e:
        raise DamagedObject(key, f"not a metric shard ({e})") from None
    return table if table.schema.equals(ROW_SCHEMA) else table.cast(ROW_SCHEMA)


def fetch_ordered(store: Store, object_keys: Iterable[str], decode: Callable[[bytes, str], T], *,
                  read_ahead: int | None = None) -> Iterator[T]:
    """GET ``object_keys`` with up to ``read_ahead`` (default: ``store.parallel_gets``) in flight;
    yield each decoded (``decode(body, key)``), in key order.

    On S3 a GET is a round trip of tens of milliseconds: fetching one at a time would make
    compaction latency-bound.  The window bounds memory to ``read_ahead`` objects.  Only
    the GETs run in the pool; ``decode`` runs in the caller's thread.  Decoding is mostly
    Python-level set-up per object (a Parquet footer, a JSON body), and eight threads
    contending for the GIL over it were 1.6x slower than one (benchmarks/RESULTS.md);
    for the same reason a local store is read by the caller alone.
    """
    if read_ahead is None:
        read_ahead = store.parallel_gets
    if read_ahead <= 1:
        for key in object_keys:
            yield decode(store.get(key).data, key)
        return

    def one(key: str) -> tuple[bytes, str]:
        return store.get(key).data, key

    with ThreadPoolExecutor(max_workers=read_ahead, thread_name_prefix="s3exp-fetch") as pool:
        window: deque[Future[tuple[bytes, str]]] = deque()
        try:
            for key in object_keys:
                window.append(pool.submit(one, key))
                if len(window) >= read_ahead:
                    yield decode(*window.popleft().result())
            while window:
                yield decode(*window.popleft().result())
        finally:
            for fut in window:
                fut.cancel()


