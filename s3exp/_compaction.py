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
   ``compaction/<exp>/pending/`` (invisible to readers of ``metrics/``); likewise one
   results part.
4. Commit: compare-and-swap the manifest with the new runs and parts.  If another
   compactor committed first, our pending parts are deleted and nothing else changed.
5. Publish: copy the new parts to ``metrics/experiment=<exp>/`` and
   ``results/experiment=<exp>/`` (create-only) and delete the pending copies.

A compactor that dies before 4 leaves only pending parts, which no reader lists; one that
dies between 4 and 5 leaves committed parts unpublished, and the next compactor publishes
them in step 2.  So a reader that lists ``metrics/`` (Athena, pyarrow ``dataset()``) never
sees a row twice; at worst, briefly, it misses the newest generation.
"""

from __future__ import annotations

import io
import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from s3exp import _keys
from s3exp._errors import AlreadyExists, Conflict, ObjectNotFound
from s3exp._experiments import load_experiment
from s3exp._leases import parse_listing
from s3exp._status import write_status_rollup
from s3exp._tables import METRICS_SCHEMA, results_table
from s3exp.stores import ObjectMeta, Store

__all__ = ["CompactionReport", "Manifest", "compact", "read_manifest", "staged_shards"]

MANIFEST_FORMAT = "s3exp.compaction/1"


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
                "metric_rows": sum(p["rows"] for p in self.parts if p["table"] == "metrics"),
                "updated_at": datetime.now(UTC).isoformat()}
        return json.dumps(body, separators=(",", ":")).encode()


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
    committed: bool = False
    lost_race: bool = False

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


def _read_shard(store: Store, key: str) -> pa.Table:
    table = pq.read_table(io.BytesIO(store.get(key).data))
    return table.select(METRICS_SCHEMA.names).cast(METRICS_SCHEMA)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=256 * 1024)
    return sink.getvalue()


def _publish(store: Store, manifest: Manifest, report: CompactionReport) -> None:
    """Copy committed parts that are not yet at their published key (roll forward)."""
    published: set[str] = set()
    for table in ("metrics", "results"):
        published.update(m.key for m in store.list(_keys.table_prefix(table, manifest.experiment)))
    for part in manifest.parts:
        if part["key"] in published:
            continue
        try:
            blob = store.get(part["pending"])
        except ObjectNotFound:
            continue  # published and cleaned up by a racing compactor
        try:
            store.put_if_absent(part["key"], blob.data)
            report.parts_published += 1
        except AlreadyExists:
            pass
        try:
            store.delete_if_match(part["pending"], blob.etag)
        except Conflict:
            pass


def _metric_parts(store: Store, exp: str, runs: list[tuple[str, list[ObjectMeta]]],
                  part_rows: int, report: CompactionReport) -> Iterator[pa.Table]:
    """Stream shards into tables of at most about ``part_rows`` rows (bounded memory)."""
    batch: list[pa.Table] = []
    rows = 0
    for _, shards in runs:
        for meta in shards:
            t = _read_shard(store, meta.key)
            report.shards_read += 1
            batch.append(t)
            rows += t.num_rows
            if rows >= part_rows:
                yield pa.concat_tables(batch)
                batch, rows = [], 0
    if batch:
        yield pa.concat_tables(batch)


def compact(
    store: Store,
    exp: str,
    *,
    part_rows: int = 1_000_000,
    retention: timedelta = timedelta(days=7),
    inject: Callable[[str], None] | None = None,
) -> CompactionReport:
    """Compact newly finished runs of ``exp``; safe to run concurrently and to kill.

    ``inject(stage)`` is called at "parts-written", "committed" and "published" (tests use
    it to kill a compactor halfway).
    """
    spec = load_experiment(store, exp)
    manifest = read_manifest(store, exp)
    report = CompactionReport(exp, manifest.generation)
    _publish(store, manifest, report)

    listing = parse_listing(exp, list(store.list(_keys.runs_prefix(exp))), store.server_time())
    staged = staged_shards(store, exp)
    new_done = sorted(rid for rid, objs in listing.runs.items()
                      if objs.result is not None and rid not in manifest.runs)
    if not new_done:
        _expire_staging(store, exp, manifest, staged, listing.server_now - retention, report)
        write_status_rollup(store, exp)
        return report

    records = {rid: json.loads(store.get(_keys.result(exp, rid)).data) for rid in new_done}
    winners = {rid: int(records[rid]["attempt"]) for rid in new_done}
    runs = [(rid, sorted(staged.get(rid, {}).get(winners[rid], []), key=lambda m: m.key))
            for rid in new_done]

    generation = manifest.generation + 1
    token = uuid.uuid4().hex[:12]
    parts: list[dict[str, Any]] = []

    def write(table_name: str, table: pa.Table) -> None:
        n = len(parts)
        pending = _keys.pending_part(exp, token, n)
        store.put_if_absent(pending, _parquet_bytes(table))
        parts.append({"table": table_name, "generation": generation, "rows": table.num_rows,
                      "key": _keys.table_part(table_name, exp, generation, token, n),
                      "pending": pending})

    for part in _metric_parts(store, exp, runs, part_rows, report):
        part = part.sort_by([("run_id", "ascending"), ("step", "ascending"), ("name", "ascending")])
        report.rows += part.num_rows
        write("metrics", part)
    write("results", results_table(spec, [records[rid] for rid in new_done]))
    report.parts_written = len(parts)
    if inject:
        inject("parts-written")

    committed = Manifest(exp, generation, {**manifest.runs, **winners}, manifest.parts + parts)
    try:
        if manifest.etag is None:
            meta = store.put_if_absent(_keys.manifest(exp), committed.to_bytes())
        else:
            meta = store.put_if_match(_keys.manifest(exp), committed.to_bytes(), manifest.etag)
    except (AlreadyExists, Conflict):
        report.lost_race = True
        for p in parts:  # another compactor committed first; ours were never visible
            try:
                store.delete_if_match(p["pending"], store.head(p["pending"]).etag)
            except (ObjectNotFound, Conflict):
                pass
        return report
    committed.etag = meta.etag
    report.committed = True
    report.generation = generation
    report.runs_compacted = len(new_done)
    if inject:
        inject("committed")
    _publish(store, committed, report)
    if inject:
        inject("published")
    _expire_staging(store, exp, committed, staged, listing.server_now - retention, report)
    write_status_rollup(store, exp)
    return report


def _expire_staging(store: Store, exp: str, manifest: Manifest,
                    staged: dict[str, dict[int, list[ObjectMeta]]], cutoff: datetime,
                    report: CompactionReport) -> None:
    """Delete shards of compacted runs (winning and superseded attempts) older than the
    retention cutoff: the winning rows live in parts, the rest was kept for audit."""
    for rid in manifest.runs:
        for shards in staged.get(rid, {}).values():
            for meta in shards:
                if meta.last_modified < cutoff:
                    try:
                        store.delete_if_match(meta.key, meta.etag)
                        report.shards_deleted += 1
                    except Conflict:
                        pass
