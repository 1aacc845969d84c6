"""Compaction: staged metric shards of finished runs into analysis-ready Parquet parts.

Only runs with a committed result are compacted, and of each only the attempt that wrote it:
rows of superseded attempts are fenced out (they stay in staging, for audit, until the
retention window passes).  Runs still going are read from staging by the exact readers.

Commit protocol (exactly once, for our readers and for anything that lists a prefix):

1. Read the manifest ``compaction/<exp>/manifest.json`` and its ETag.
2. Roll forward: every part the manifest lists but that is not yet at its published key is
   copied there from its pending key (create-only, so racing compactors agree).
3. Find finished runs not yet in the manifest; stream their winning attempt's shards into
   parts of at most ``part_rows`` rows, each written create-only under
   ``compaction/<exp>/pending/`` (outside ``metrics/``: no reader lists it); likewise one
   results part.
4. Commit: compare-and-swap the manifest with the new runs and parts.  If another
   compactor committed first, our pending parts are deleted and we start again from 1
   with what is left.
5. Publish: copy the new parts to ``metrics/experiment=<exp>/`` and
   ``results/experiment=<exp>/`` (create-only) and delete the pending copies.
6. Collect orphans: pending parts that no manifest lists and that are older than
   ``orphan_age`` (left by a compactor that died before step 4) are deleted.

A compactor that dies before 4 leaves only pending parts, which no reader lists and step 6
removes later; one that dies between 4 and 5 leaves committed parts unpublished, and the
next compactor publishes them in step 2.  So a reader that lists ``metrics/`` (Athena,
pyarrow ``dataset()``) never sees a row twice; at worst, until the next compaction, it
misses (part of) the newest generation.  The exact readers (``s3exp.metrics``) follow the
manifest and never miss anything.

Orphan collection must never delete the pending part of a compactor that is about to
commit.  Two guards make that so: a compactor gives up (deletes its parts, commits
nothing) if more than ``orphan_age / 2`` has passed since it wrote its first part, and the
collector judges age on the store's clock against a manifest it read moments before.

Memory is bounded by two row groups of decoded rows (``ROW_GROUP_ROWS``), one part's
encoded bytes (``part_rows`` rows) and ``read_ahead`` shards being fetched, whatever the
size of the experiment.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - registers the compute kernels that the Parquet writer

#   uses; pyarrow >= 21 does so only on this import, and a writer thread that gets
#   there first fails with "No function registered with name: unique"
import pyarrow.parquet as pq

from s3exp.bucket import ResultRecord, RunListing, keys, list_runs
from s3exp.core import AlreadyExists, Conflict, ObjectNotFound, S3ExpError
from s3exp.specs import ExperimentSpec, load_experiment
from s3exp.stores import ObjectMeta, Store
from s3exp.tables._housekeeping import ORPHAN_AGE, collect_orphans, expire_staging
from s3exp.tables._manifest import Manifest, commit_manifest, publish, read_manifest
from s3exp.tables._schema import (
    IDENTITY,
    PART_SCHEMA,
    PART_WRITE_OPTIONS,
    AttemptIdentity,
    results_table,
)
from s3exp.tables._shards import decode_rows, fetch_ordered, staged_shards

__all__ = ["CompactionReport", "compact_tables"]

MAX_ROUNDS = 5

# Parts are written in row groups of this many rows (a few MB: large enough for Athena's
# and DuckDB's scans, small enough that encoding one overlaps reading the next).
ROW_GROUP_ROWS = 256 * 1024


@dataclass(slots=True)
class CompactionReport:
    """What one ``compact`` call did."""

    experiment: str
    generation: int
    runs_compacted: int = 0
    rows: int = 0
    shards_read: int = 0
    parts_written: int = 0
    parts_published: int = 0
    shards_deleted: int = 0
    orphans_deleted: int = 0
    lost_races: int = 0
    committed: bool = False
    lost_race: bool = False
    seconds: float = 0.0
    listing: RunListing | None = field(default=None, repr=False)
    """The LIST of the runs the compaction worked from (not in ``to_dict``): what the
    status rollup is computed from, without listing the runs again."""
    spec: ExperimentSpec | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if k not in ("listing", "spec")}


Pieces = list[tuple[AttemptIdentity, pa.Table]]  # decoded shards (or slices) and their owners


def _coded(values: list[str | None], counts: np.ndarray) -> pa.DictionaryArray:
    """A dictionary column holding ``values[i]`` ``counts[i]`` times (``None``: nulls)."""
    codes: dict[str, int] = {}
    per_piece = np.fromiter((-1 if v is None else codes.setdefault(v, len(codes))
                             for v in values), np.int32, len(values))
    indices = np.repeat(per_piece, counts)
    missing = indices < 0 if (per_piece < 0).any() else None
    if missing is not None:
        indices[missing] = 0
    return pa.DictionaryArray.from_arrays(pa.array(indices, mask=missing),
                                          pa.array(list(codes), pa.string()), safe=False)


def assemble_group(pieces: Pieces) -> pa.Table:
    """One row group of a part (``PART_SCHEMA``, one chunk per column) from decoded shards
    and their owners: the per-row columns concatenated, the identity columns built as
    dictionary indices repeated per piece, with no per-row Python work."""
    counts = np.array([t.num_rows for _, t in pieces], np.int64)
    owners = [o for o, _ in pieces]
    rows = pa.concat_tables([t for _, t in pieces]).combine_chunks()
    columns: dict[str, pa.Array] = {}
    for name in IDENTITY:
        values = [getattr(o, name) for o in owners]
        t = PART_SCHEMA.field(name).type
        columns[name] = (_coded(values, counts) if pa.types.is_dictionary(t) else
                         pa.array(np.repeat(np.array(values, t.to_pandas_dtype()), counts), t))
    return pa.Table.from_arrays(
        [columns[n] if n in columns else rows.column(n) for n in PART_SCHEMA.names],
        schema=PART_SCHEMA)


def parquet_bytes(table: pa.Table, row_group_size: int = ROW_GROUP_ROWS) -> bytes:
    """A table's bytes as a part (the results part; metrics parts use ``_PartEncoder``)."""
    sink = io.BytesIO()
    pq.write_table(table.combine_chunks(), sink, row_group_size=row_group_size,
                   **PART_WRITE_OPTIONS)
    return sink.getvalue()


def _row_groups(pieces: Iterable[tuple[AttemptIdentity, pa.Table]], part_rows: int,
                group_rows: int) -> Iterator[tuple[int, Pieces, int]]:
    """Regroup a stream of (owner, rows) pieces into row groups: (part number, the pieces
    of one row group, their row count).  Parts have exactly ``part_rows`` rows (the last
    one fewer), cut into row groups of at most ``group_rows``.  At most one row group's
    worth is held at a time."""
    batch: Pieces = []
    rows = part = in_part = 0
    for owner, t in pieces:
        while t.num_rows:
            take = min(group_rows - rows, part_rows - in_part - rows, t.num_rows)
            batch.append((owner, t if take == t.num_rows else t.slice(0, take)))
            rows += take
            t = t.slice(take)
            if rows == group_rows or in_part + rows == part_rows:
                yield part, batch, rows
                in_part += rows
                batch, rows = [], 0
                if in_part == part_rows:
                    part, in_part = part + 1, 0
    if rows:
        yield part, batch, rows


class _PartEncoder:
    """One metrics part, assembled and encoded a row group at a time as groups arrive."""

    def __init__(self) -> None:
        self._sink = io.BytesIO()
        self._writer = pq.ParquetWriter(self._sink, PART_SCHEMA, **PART_WRITE_OPTIONS)
        self.rows = 0

    def add(self, pieces: Pieces) -> None:
        group = assemble_group(pieces)
        self._writer.write_table(group, row_group_size=group.num_rows)

    def finish(self) -> bytes:
        self._writer.close()
        return self._sink.getvalue()


def _delete_quietly(store: Store, key: str) -> None:
    try:
        store.delete_if_match(key, store.head(key).etag)
    except (ObjectNotFound, Conflict):
        pass


def compact_tables(
    store: Store,
    exp: str,
    *,
    part_rows: int = 1_000_000,
    retention: timedelta = timedelta(days=7),
    orphan_age: timedelta = ORPHAN_AGE,
    read_ahead: int | None = None,
    inject: Callable[[str], None] | None = None,
    housekeeping: bool = True,
) -> CompactionReport:
    """Compact newly finished runs of ``exp``; safe to run concurrently and to kill.

    With ``housekeeping`` (the default), staged shards of compacted runs older than
    ``retention`` are deleted, pending parts of dead compactors older than ``orphan_age``
    are collected (the status rollup is rewritten by ``s3exp.ops.compact_and_record``).
    Without it, a call that finds no
    newly finished run stops after one GET of the manifest and one LIST of the runs: the
    S3-event trigger fires on every shard upload, and must not list every shard each time.
    ``inject(stage)`` is a test
    hook called at "parts-written" (parts are pending, the manifest is not committed),
    "committed" and "published"; raising from it, or killing the process there, is how
    the tests simulate a compactor that dies halfway.
    """
    started = time.monotonic()
    spec = load_experiment(store, exp)
    report = CompactionReport(exp, 0)
    first: Manifest | None = None
    latest: Manifest | None = None
    staged: dict[str, dict[int, list[ObjectMeta]]] = {}
    for _ in range(MAX_ROUNDS):
        latest = read_manifest(store, exp)
        first = first or latest
        report.generation = latest.generation
        report.parts_published += publish(store, latest)

        # The runs are listed before the shards: a run's shards are all staged before its
        # result is committed, so every run seen done here has all its shards listed.
        listing = list_runs(store, exp)
        new_done = {rid: objs.result.key for rid, objs in sorted(listing.runs.items())
                    if objs.result is not None and rid not in latest.runs}
        if not new_done and not housekeeping:
            report.listing, report.spec = listing, spec
            report.seconds = time.monotonic() - started
            return report
        staged = staged_shards(store, exp)
        if not new_done:
            break
        committed = _compact_round(store, exp, spec, latest, new_done, staged, part_rows,
                                   orphan_age, read_ahead, inject, report)
        if committed is not None:
            latest = committed
            break
        report.lost_races += 1
        report.lost_race = True

    assert first is not None and latest is not None
    report.orphans_deleted = collect_orphans(store, exp, orphan_age, latest)
    report.shards_deleted = expire_staging(store, exp, set(first.runs), staged, retention)
    report.listing, report.spec = listing, spec
    report.seconds = time.monotonic() - started
    return report


def _compact_round(store: Store, exp: str, spec: Any, manifest: Manifest, new_done: dict[str, str],
                   staged: dict[str, dict[int, list[ObjectMeta]]], part_rows: int,
                   orphan_age: timedelta, read_ahead: int | None,
                   inject: Callable[[str], None] | None,
                   report: CompactionReport) -> Manifest | None:
    """One attempt at the next generation: the committed manifest, or None if another
    compactor committed first (our parts are then deleted).  ``new_done`` maps the runs to
    compact, in run id order, to their result keys."""
    # The result bodies are streamed into the results table as they arrive; of each, only
    # its row and its owner are kept (thousands of parsed bodies would be most of the
    # memory of a large compaction).
    owners: dict[str, AttemptIdentity] = {}

    def records() -> Iterator[ResultRecord]:
        result_keys = list(new_done.values())
        for rid, record in zip(new_done, fetch_ordered(store, result_keys, ResultRecord.from_bytes,
                                                       read_ahead=read_ahead), strict=True):
            owners[rid] = AttemptIdentity.of_result(record)
            yield record

    results = results_table(spec, records())
    winners = {rid: owner.attempt for rid, owner in owners.items()}
    # Each attempt's shards are in sequence order already: LIST is sorted by key, and the
    # sequence numbers in the keys are zero-padded (the store contract tests both).
    owned = [(owners[rid], m.key) for rid in new_done
             for m in staged.get(rid, {}).get(winners[rid], [])]
    shard_keys = [key for _, key in owned]

    generation = manifest.generation + 1
    token = uuid.uuid4().hex[:12]
    parts: list[dict[str, Any]] = []
    first_write: float | None = None
    rows = 0

    # The main thread GETs and decodes shards; one background thread assembles each row
    # group, encodes it into the current part and uploads the part when it is full.  So
    # reading and writing overlap, and at most two row groups' worth of decoded shards
    # plus one part's encoded bytes are in memory.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3exp-part-writer")
    in_flight: Future[Any] | None = None

    def submit(fn: Callable[[], Any]) -> None:
        nonlocal in_flight
        if in_flight is not None:
            in_flight.result()
        in_flight = writer.submit(fn)

    def upload(table_name: str, body: Callable[[], bytes], nrows: int) -> None:
        nonlocal first_write
        n = len(parts)
        pending = keys.pending_part(exp, token, n)
        if first_write is None:
            first_write = time.monotonic()
        submit(lambda: store.put_if_absent(pending, body()))
        parts.append({"table": table_name, "generation": generation, "rows": nrows,
                      "key": keys.table_part(table_name, exp, generation, token, n),
                      "pending": pending})

    try:
        try:
            shards = fetch_ordered(store, shard_keys, decode_rows, read_ahead=read_ahead)
            pieces = zip((owner for owner, _ in owned), shards, strict=True)
            encoder: _PartEncoder | None = None
            encoder_part = -1
            for part_no, group, group_rows in _row_groups(pieces, part_rows, ROW_GROUP_ROWS):
                if part_no != encoder_part:
                    if encoder is not None:
                        upload("metrics", encoder.finish, encoder.rows)
                    encoder, encoder_part = _PartEncoder(), part_no
                assert encoder is not None
                encoder.rows += group_rows
                rows += group_rows
                submit(partial(encoder.add, group))
            if encoder is not None:
                upload("metrics", encoder.finish, encoder.rows)
            upload("results", lambda: parquet_bytes(results), results.num_rows)
            assert in_flight is not None
            in_flight.result()
        finally:
            writer.shutdown(wait=True)
        if inject:
            inject("parts-written")
        assert first_write is not None
        if time.monotonic() - first_write > orphan_age.total_seconds() / 2:
            # Our first part may already look orphaned to a collector: never commit it.
            raise S3ExpError(f"compaction of {exp!r} took longer than half the orphan age "
                             f"({orphan_age}); its parts were dropped, run it again")
    except S3ExpError:  # (not a simulated crash: that leaves its parts, as a real one would)
        for p in parts:
            _delete_quietly(store, p["pending"])
        raise
    committed = Manifest(exp, generation, {**manifest.runs, **winners}, manifest.parts + parts)
    try:
        meta = commit_manifest(store, manifest, committed)
    except (AlreadyExists, Conflict):
        for p in parts:  # another compactor committed first; ours were never visible
            _delete_quietly(store, p["pending"])
        return None
    # Any other failure of the commit leaves the parts alone: the commit may have been
    # applied with its reply lost, and then they are the committed data.
    committed.etag = meta.etag
    report.committed = True
    report.generation = generation
    report.runs_compacted = len(new_done)
    report.rows = rows
    report.shards_read = len(shard_keys)
    report.parts_written = len(parts)
    if inject:
        inject("committed")
    report.parts_published += publish(store, committed)
    if inject:
        inject("published")
    return committed


