"""Compaction: staged metric shards of finished runs into analysis-ready Parquet parts.

Only runs with a ``result.json`` are compacted, and of each only the attempt that wrote it:
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

Memory is bounded by one output part (``part_rows`` rows, decoded with dictionary-encoded
strings) plus ``read_ahead`` shards being fetched, whatever the size of the experiment.
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
from typing import Any

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - registers the compute kernels that the Parquet writer
#   uses; pyarrow >= 21 does so only on this import, and a writer thread that gets
#   there first fails with "No function registered with name: unique"
import pyarrow.parquet as pq

from s3exp import _keys
from s3exp._errors import AlreadyExists, Conflict, ObjectNotFound, S3ExpError
from s3exp._experiments import load_experiment
from s3exp._leases import parse_listing
from s3exp._status import write_status_rollup
from s3exp._tables import METRICS_SCHEMA, results_table
from s3exp.stores import ObjectMeta, Store

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


def decode_shard(data: bytes) -> pa.Table:
    """A staged shard's rows in the compacted layout (``PART_SCHEMA``)."""
    f = pq.ParquetFile(pa.BufferReader(data), read_dictionary=list(_DICT_COLUMNS))
    table = f.read(columns=PART_SCHEMA.names, use_threads=False)
    return table if table.schema.equals(PART_SCHEMA) else table.cast(PART_SCHEMA)


def fetch_ordered(store: Store, keys: Iterable[str], decode: Callable[[bytes], Any], *,
                  read_ahead: int = 8) -> Iterator[Any]:
    """GET and decode ``keys`` with up to ``read_ahead`` in flight; yield in key order.

    On S3 a GET is a round trip of tens of milliseconds: fetching one at a time would make
    compaction latency-bound.  The window bounds memory to ``read_ahead`` objects.
    """
    if read_ahead <= 1:
        for key in keys:
            yield decode(store.get(key).data)
        return

    def one(key: str) -> Any:
        return decode(store.get(key).data)

    with ThreadPoolExecutor(max_workers=read_ahead, thread_name_prefix="s3exp-fetch") as pool:
        window: deque[Future[Any]] = deque()
        try:
            for key in keys:
                window.append(pool.submit(one, key))
                if len(window) >= read_ahead:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for fut in window:
                fut.cancel()


def parquet_bytes(table: pa.Table, row_group_size: int = 256 * 1024) -> bytes:
    """A part's bytes.  The Arrow schema is not stored, so readers see plain ``string``
    columns (the Parquet data is dictionary-encoded either way)."""
    sink = io.BytesIO()
    # One chunk with one dictionary per column: the writer is 3x slower on a part made of
    # a thousand small shards, each chunk with its own dictionaries.
    table = table.combine_chunks()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size,
                   use_dictionary=list(_DICT_COLUMNS), store_schema=False)
    return sink.getvalue()


def _parts_of(tables: Iterator[pa.Table], part_rows: int) -> Iterator[pa.Table]:
    """Regroup a stream of tables into tables of exactly ``part_rows`` rows (the last one
    fewer), holding at most one part's worth at a time."""
    batch: list[pa.Table] = []
    rows = 0
    for t in tables:
        while t.num_rows:
            take = min(part_rows - rows, t.num_rows)
            batch.append(t.slice(0, take))
            rows += take
            t = t.slice(take)
            if rows == part_rows:
                yield pa.concat_tables(batch)
                batch, rows = [], 0
    if rows:
        yield pa.concat_tables(batch)


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
    read_ahead: int = 8,
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
        # result.json is written, so every run seen done here has all its shards listed.
        listing = parse_listing(exp, list(store.list(_keys.runs_prefix(exp))), store.server_time())
        new_done = sorted(rid for rid, objs in listing.runs.items()
                          if objs.result is not None and rid not in latest.runs)
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
    write_status_rollup(store, exp)
    report.seconds = time.monotonic() - started
    return report


def _compact_round(store: Store, exp: str, spec: Any, manifest: Manifest, new_done: list[str],
                   staged: dict[str, dict[int, list[ObjectMeta]]], part_rows: int,
                   orphan_age: timedelta, read_ahead: int,
                   inject: Callable[[str], None] | None,
                   report: CompactionReport) -> Manifest | None:
    """One attempt at the next generation: the committed manifest, or None if another
    compactor committed first (our parts are then deleted)."""
    records = dict(zip(new_done, fetch_ordered(
        store, [_keys.result(exp, rid) for rid in new_done], json.loads,
        read_ahead=read_ahead), strict=True))
    winners = {rid: int(records[rid]["attempt"]) for rid in new_done}
    shard_keys = [m.key for rid in new_done
                  for m in sorted(staged.get(rid, {}).get(winners[rid], []), key=lambda m: m.key)]

    generation = manifest.generation + 1
    token = uuid.uuid4().hex[:12]
    parts: list[dict[str, Any]] = []
    first_write: float | None = None
    rows = 0

    # One part is encoded and uploaded in the background while the next is assembled:
    # at most two parts are in memory, and reading and writing overlap.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3exp-part-writer")
    in_flight: Future[Any] | None = None

    def write(table_name: str, table: pa.Table) -> None:
        nonlocal first_write, in_flight
        n = len(parts)
        pending = _keys.pending_part(exp, token, n)
        if first_write is None:
            first_write = time.monotonic()
        if in_flight is not None:
            in_flight.result()
        in_flight = writer.submit(lambda: store.put_if_absent(pending, parquet_bytes(table)))
        parts.append({"table": table_name, "generation": generation, "rows": table.num_rows,
                      "key": _keys.table_part(table_name, exp, generation, token, n),
                      "pending": pending})

    try:
        try:
            shards = fetch_ordered(store, shard_keys, decode_shard, read_ahead=read_ahead)
            for part in _parts_of(shards, part_rows):
                rows += part.num_rows
                write("metrics", part)
            write("results", results_table(spec, [records[rid] for rid in new_done]))
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
