"""Reading results where they lie: exact views of ``metrics`` and ``results``, and DuckDB.

The exact view is what compaction has committed plus what it has not reached yet, both
taken from one reading of the manifest:

* compacted parts listed in the manifest (published key, or the pending one before the
  roll-forward), and
* staged shards of runs that manifest does not hold: of finished runs, the attempt that
  committed its result; of runs still going, the attempt named by the running lease.
  Failed, released and interrupted runs, and superseded attempts, are left out.

The runs are listed before the shards (a finished run's shards are all staged before its
result is written), so a run that finishes while we read is either wholly absent or whole.
If an object vanishes under us (a part published and its pending copy removed, shards
expired by a compactor that committed after our manifest read), the view is read again.

Every file is read through the store interface, so one code path serves S3, the directory
store and the in-memory store, with the store's retries and request counting; GETs go out
several at a time.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from s3exp.bucket import Lease, ResultRecord, keys, list_runs
from s3exp.core import ConfigError, ObjectNotFound, S3ExpError
from s3exp.specs import ExperimentSpec, expand, load_experiment
from s3exp.stores import Store, open_store
from s3exp.tables._manifest import Manifest, part_keys, read_manifest
from s3exp.tables._schema import METRICS_SCHEMA, results_table, with_experiment
from s3exp.tables._shards import decode_shard, fetch_ordered, read_table, staged_shards

__all__ = ["concat", "metrics", "read_results", "results"]

_ATTEMPTS = 5  # readings of the view before giving up on a store that keeps changing


def _parts(store: Store, manifest: Manifest, table: str) -> list[pa.Table]:
    """The committed parts of ``table`` in ``manifest``, wherever each is now."""
    return list(fetch_ordered(store, part_keys(store, manifest, table), read_table))


def concat(tables: list[pa.Table], schema: pa.Schema | None = None) -> pa.Table:
    """Tables of one view (parts and staged rows; or several experiments) as one."""
    if not tables:
        return schema.empty_table() if schema is not None else pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


def _retrying(read: Any, what: str) -> Any:
    for _ in range(_ATTEMPTS):
        try:
            return read()
        except ObjectNotFound:
            continue  # compaction moved something while we read: read the view again
    raise S3ExpError(f"{what} kept changing while it was read ({_ATTEMPTS} tries); try again")


def _pandas(table: pa.Table) -> Any:
    try:
        return table.to_pandas()
    except ImportError:
        raise ConfigError("as_pandas=True needs pandas: pip install pandas") from None


def metrics(store: Store | str, exp: str, *, as_pandas: bool = False) -> Any:
    """Every metric row of ``exp`` exactly once, as a ``pyarrow.Table`` (or DataFrame).

    Rows of runs not compacted yet are read from staging (winning or live attempt only),
    so the view is complete without waiting for compaction.
    """
    st = open_store(store)
    load_experiment(st, exp)
    table = _retrying(lambda: _metrics_once(st, exp), f"metrics of {exp!r}")
    return _pandas(table) if as_pandas else table


def _metrics_once(store: Store, exp: str) -> pa.Table:
    manifest = read_manifest(store, exp)
    tables = _parts(store, manifest, "metrics")
    listing = list_runs(store, exp)
    staged = {rid: a for rid, a in staged_shards(store, exp).items()
              if rid not in manifest.runs and a}
    done = sorted(rid for rid in staged if listing.get(rid).result is not None)
    going = sorted(rid for rid in staged if listing.get(rid).result is None
                   and listing.get(rid).lease is not None)
    # Which attempt won is in the result's key; which attempt is live only in the lease
    # body: one GET per uncompacted running run that has shards.
    keep = {rid: w for rid in done if (w := listing.get(rid).winner) is not None}
    leases = fetch_ordered(store, [keys.lease(exp, rid) for rid in going], Lease.from_bytes)
    for rid, lease in zip(going, leases, strict=True):
        if lease.state == "running":
            keep[rid] = lease.attempt
    shard_keys = [m.key for rid in sorted(keep) for m in staged[rid].get(keep[rid], [])]
    tables.extend(fetch_ordered(store, shard_keys, decode_shard))
    return with_experiment(concat(tables, METRICS_SCHEMA), exp)


def results(store: Store | str, exp: str, *, as_pandas: bool = False) -> Any:
    """One row per finished run of ``exp`` (compacted parts plus newer result records)."""
    st = open_store(store)
    spec = load_experiment(st, exp)
    table = _retrying(lambda: _results_once(st, exp, spec), f"results of {exp!r}")
    return _pandas(table) if as_pandas else table


def _results_once(store: Store, exp: str, spec: ExperimentSpec) -> pa.Table:
    manifest = read_manifest(store, exp)
    tables = _parts(store, manifest, "results")
    listing = list_runs(store, exp)
    fresh_keys = [objs.result.key for rid, objs in sorted(listing.runs.items())
                  if objs.result is not None and rid not in manifest.runs]
    fresh = list(fetch_ordered(store, fresh_keys, ResultRecord.from_bytes))
    if fresh or not tables:
        tables.append(results_table(spec, fresh))
    return with_experiment(concat(tables), exp)


def read_results(store: Store, exp: str) -> list[dict[str, Any]]:
    """One record per finished run (its committed result body), in run-slot order."""
    spec = load_experiment(store, exp)
    listing = list_runs(store, exp)
    rows = []
    for slot in expand(spec):
        objs = listing.get(slot.run_id)
        if objs.result is None:
            continue
        try:
            blob = store.get(objs.result.key)
        except ObjectNotFound:
            continue
        rows.append(ResultRecord.from_bytes(blob.data, blob.meta.key).to_dict())
    return rows
