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
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - registers the compute kernels that the Parquet writer

#   uses; pyarrow >= 21 does so only on this import, and a writer thread that gets
#   there first fails with "No function registered with name: unique"
import pyarrow.parquet as pq

from s3exp.bucket import _keys
from s3exp.bucket._leases import parse_listing
from s3exp.core._errors import AlreadyExists, Conflict, ObjectNotFound, S3ExpError
from s3exp.ops._status import write_status_rollup
from s3exp.specs._experiments import load_experiment
from s3exp.stores import ObjectMeta, Store
from s3exp.tables._schema import METRICS_SCHEMA, results_table

__all__ = ["CompactionReport", "Manifest", "compact", "collect_orphans", "read_manifest",
           "staged_shards"]

MANIFEST_FORMAT = "s3exp.compaction/1"
ORPHAN_AGE = timedelta(hours=1)
MAX_ROUNDS = 5

# String columns are decoded as dictionaries (a handful of distinct values per shard):
# several times faster to read and write than plain strings, and a fraction of the memory.
_DICT_COLUMNS = ("run_id", "name", "dataset", "model", "worker")
PART_SCHEMA = pa.schema([
    pa.field(f.name, pa.dictionary(pa.int32(), f.type) if f.name in _DICT_COLUMNS else f.type)
    for f in METRICS_SCHEMA
])
# Parts are written in row groups of this many rows (a few MB: large enough for Athena's
# and DuckDB's scans, small enough that encoding one overlaps reading the next).
ROW_GROUP_ROWS = 256 * 1024
# How parts are written.  Snappy: Athena's default codec, and about twice as fast to write
# as zstd for parts of this shape, at 7% more bytes (benchmarks/RESULTS.md).  The Arrow
# schema is not stored, so readers see plain ``string`` columns (the Parquet data is
# dictionary-encoded either way).
_PART_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "snappy", "use_dictionary": list(_DICT_COLUMNS), "store_schema": False}
# What compaction decodes from a shard; the rest of a row is its owner's (see decode_rows).
ROW_SCHEMA = pa.schema([PART_SCHEMA.field(n) for n in ("step", "name", "value", "ts")])


@dataclass(slots=True)
class Manifest:
    """What is compacted: the runs (and their winning attempt) and the parts holding them."""

    experiment: str
    generation: int = 0
    runs: dict[str, int] = field(default_factory=dict)
    parts: list[dict[str, Any]] = field(default_factory=list)
    etag: str | None = None

    def to_bytes(self) -> bytes:
        body = {"format": MANIFEST_FORMAT, "experiment": self.experiment,
                "generation": self.generation, "runs": self.runs, "parts": self.parts,
                "metric_rows": self.metric_rows,
                "updated_at": datetime.now(UTC).isoformat()}
        return json.dumps(body, separators=(",", ":")).encode()

    @property
    def metric_rows(self) -> int:
        return sum(int(p["rows"]) for p in self.parts if p["table"] == "metrics")


def read_manifest(store: Store, exp: str) -> Manifest:
    try:
        blob = store.get(_keys.manifest(exp))
    except ObjectNotFound:
        return Manifest(exp)
    raw = json.loads(blob.data)
    return Manifest(exp, int(raw["generation"]), dict(raw["runs"]), list(raw["parts"]), blob.etag)


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

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


def staged_shards(store: Store, exp: str) -> dict[str, dict[int, list[ObjectMeta]]]:
    """Every staged shard of ``exp``: run_id -> attempt -> shard metas in sequence order."""
    out: dict[str, dict[int, list[ObjectMeta]]] = defaultdict(lambda: defaultdict(list))
    for meta in store.list(_keys.staging_prefix(exp)):
        parsed = _keys.parse_shard(exp, meta.key)
        if parsed is not None:
            out[parsed[0]][parsed[1]].append(meta)
    return out


def decode_rows(data: bytes) -> pa.Table:
    """A staged shard's per-row columns (``ROW_SCHEMA``: step, name, value, ts).

    The identity columns are not decoded: a shard is written by the one ``MetricBuffer``
    of one attempt, so within a shard they are constant, and compaction takes them from
    the shard's key (run, attempt) and the run's result record (dataset, model, worker),
    which that attempt wrote from the same lease.  Reading four columns instead of nine
    halves the per-shard cost, which dominates for runs of a few thousand rows.
    """
    f = pq.ParquetFile(pa.BufferReader(data), read_dictionary=["name"])
    table = f.read(columns=ROW_SCHEMA.names, use_threads=False)
    return table if table.schema.equals(ROW_SCHEMA) else table.cast(ROW_SCHEMA)


@dataclass(frozen=True, slots=True)
class ShardOwner:
    """The identity columns of every row of a run's winning attempt."""

    run_id: str
    attempt: int
    dataset: str | None
    model: str | None
    worker: str | None

    @classmethod
    def of(cls, run_id: str, record: dict[str, Any]) -> ShardOwner:
        """The owner of the shards of ``run_id``'s attempt that wrote ``record``."""
        return cls(run_id, int(record["attempt"]), record.get("dataset"), record.get("model"),
                   record.get("worker"))


Pieces = list[tuple[ShardOwner, pa.Table]]  # decoded shards (or slices) and their owners


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
    columns = {
        "run_id": _coded([o.run_id for o in owners], counts),
        "attempt": pa.array(np.repeat(np.array([o.attempt for o in owners], np.int32), counts)),
        "dataset": _coded([o.dataset for o in owners], counts),
        "model": _coded([o.model for o in owners], counts),
        "worker": _coded([o.worker for o in owners], counts),
    }
    return pa.Table.from_arrays(
        [columns[n] if n in columns else rows.column(n) for n in PART_SCHEMA.names],
        schema=PART_SCHEMA)


def fetch_ordered(store: Store, keys: Iterable[str], decode: Callable[[bytes], Any], *,
                  read_ahead: int | None = None) -> Iterator[Any]:
    """GET ``keys`` with up to ``read_ahead`` (default: ``store.parallel_gets``) in flight;
    yield each decoded, in key order.

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
        for key in keys:
            yield decode(store.get(key).data)
        return

    def one(key: str) -> bytes:
        return store.get(key).data

    with ThreadPoolExecutor(max_workers=read_ahead, thread_name_prefix="s3exp-fetch") as pool:
        window: deque[Future[bytes]] = deque()
        try:
            for key in keys:
                window.append(pool.submit(one, key))
                if len(window) >= read_ahead:
                    yield decode(window.popleft().result())
            while window:
                yield decode(window.popleft().result())
        finally:
            for fut in window:
                fut.cancel()


def parquet_bytes(table: pa.Table, row_group_size: int = ROW_GROUP_ROWS) -> bytes:
    """A table's bytes as a part (the results part; metrics parts use ``_PartEncoder``)."""
    sink = io.BytesIO()
    pq.write_table(table.combine_chunks(), sink, row_group_size=row_group_size,
                   **_PART_WRITE_OPTIONS)
    return sink.getvalue()


def _row_groups(pieces: Iterable[tuple[ShardOwner, pa.Table]], part_rows: int,
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
        self._writer = pq.ParquetWriter(self._sink, PART_SCHEMA, **_PART_WRITE_OPTIONS)
        self.rows = 0

    def add(self, pieces: Pieces) -> None:
        group = assemble_group(pieces)
        self._writer.write_table(group, row_group_size=group.num_rows)

    def finish(self) -> bytes:
        self._writer.close()
        return self._sink.getvalue()


def _publish(store: Store, manifest: Manifest, report: CompactionReport) -> None:
    """Copy committed parts that are not yet at their published key (roll forward).

    Only the newest generation can be unpublished: whoever commits generation G+1 has
    first rolled generation G forward (step 1, on the very manifest its CAS replaces).  So
    one HEAD per part of that generation, not a LIST of the tables, tells what to do.
    """
    for part in manifest.parts:
        if int(part["generation"]) != manifest.generation:
            continue
        try:
            store.head(part["key"])
            continue
        except ObjectNotFound:
            pass
        try:
            blob = store.get(part["pending"])
        except ObjectNotFound:
            # Published, and its pending copy removed, by a racing compactor since our
            # HEAD.  Anything else would be a lost part: say so loudly.
            try:
                store.head(part["key"])
            except ObjectNotFound:
                raise S3ExpError(f"compacted part {part['key']} is neither published nor "
                                 f"pending ({part['pending']}): manifest generation "
                                 f"{manifest.generation} of {manifest.experiment!r} is damaged"
                                 ) from None
            continue
        try:
            store.put_if_absent(part["key"], blob.data)
            report.parts_published += 1
        except AlreadyExists:
            pass
        try:
            store.delete_if_match(part["pending"], blob.etag)
        except Conflict:
            pass


def _delete_quietly(store: Store, key: str) -> None:
    try:
        store.delete_if_match(key, store.head(key).etag)
    except (ObjectNotFound, Conflict):
        pass


def compact(
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
    are collected, and the status rollup is rewritten.  Without it, a call that finds no
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
        _publish(store, latest, report)

        # The runs are listed before the shards: a run's shards are all staged before its
        # result is committed, so every run seen done here has all its shards listed.
        listing = parse_listing(exp, list(store.list(_keys.runs_prefix(exp))), store.server_time())
        new_done = {rid: objs.result.key for rid, objs in sorted(listing.runs.items())
                    if objs.result is not None and rid not in latest.runs}
        if not new_done and not housekeeping:
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
    _expire_staging(store, exp, set(first.runs), staged, retention, report)
    write_status_rollup(store, exp, spec=spec, listing=listing)
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
    owners: dict[str, ShardOwner] = {}

    def bodies() -> Iterator[dict[str, Any]]:
        keys = list(new_done.values())
        for rid, body in zip(new_done, fetch_ordered(store, keys, json.loads,
                                                     read_ahead=read_ahead), strict=True):
            owners[rid] = ShardOwner.of(rid, body)
            yield body

    results = results_table(spec, bodies())
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
        pending = _keys.pending_part(exp, token, n)
        if first_write is None:
            first_write = time.monotonic()
        submit(lambda: store.put_if_absent(pending, body()))
        parts.append({"table": table_name, "generation": generation, "rows": nrows,
                      "key": _keys.table_part(table_name, exp, generation, token, n),
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
        if manifest.etag is None:
            meta = store.put_if_absent(_keys.manifest(exp), committed.to_bytes())
        else:
            meta = store.put_if_match(_keys.manifest(exp), committed.to_bytes(), manifest.etag)
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
    _publish(store, committed, report)
    if inject:
        inject("published")
    return committed


def collect_orphans(store: Store, exp: str, orphan_age: timedelta = ORPHAN_AGE,
                    known: Manifest | None = None) -> int:
    """Delete pending parts that no manifest lists and that are older than ``orphan_age``
    on the store's clock (left by compactors that died before committing).  Returns how
    many were deleted.  ``orphan_age=0`` deletes every unlisted pending part: use it only
    when no compactor is running.  ``known``, a manifest already read, saves a GET when
    no part is pending outside it (the usual case: one LIST)."""
    pending = list(store.list(_keys.pending_prefix(exp)))
    if known is not None:
        listed = {str(p["pending"]) for p in known.parts}
        pending = [m for m in pending if m.key not in listed]
    if not pending:
        return 0
    # Candidates: judge them against a manifest read now, so that a part committed a
    # moment ago is recognised (its compactor committed it young: see compact()).
    read_at = time.monotonic()
    listed = {str(p["pending"]) for p in read_manifest(store, exp).parts}
    cutoff = store.server_time() - orphan_age
    if orphan_age and time.monotonic() - read_at > orphan_age.total_seconds() / 2:
        return 0  # our manifest is too old to tell an orphan from a fresh commit
    deleted = 0
    for meta in pending:
        if meta.key in listed or meta.last_modified >= cutoff:
            continue
        try:
            store.delete_if_match(meta.key, meta.etag)
            deleted += 1
        except Conflict:
            pass
    return deleted


def _expire_staging(store: Store, exp: str, compacted: set[str],
                    staged: dict[str, dict[int, list[ObjectMeta]]], retention: timedelta,
                    report: CompactionReport) -> None:
    """Delete shards of runs compacted before this call (winning and superseded attempts)
    that are older than ``retention``: the winning rows live in parts, the rest was kept
    for audit.  Only runs that were already in the manifest when this call began are
    touched, so a reader holding the previous manifest still finds the shards of runs
    compacted just now (and a reader that loses that race reads the view again)."""
    if not compacted:
        return
    cutoff = store.server_time() - retention
    for run_id, attempts in staged.items():
        if run_id not in compacted:
            continue
        for shards in attempts.values():
            for meta in shards:
                if meta.last_modified >= cutoff:
                    continue
                try:
                    store.delete_if_match(meta.key, meta.etag)
                    report.shards_deleted += 1
                except Conflict:
                    pass
