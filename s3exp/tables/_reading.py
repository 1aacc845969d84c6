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

import io
import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from s3exp.bucket import _keys
from s3exp.bucket._leases import parse_listing
from s3exp.core._errors import ConfigError, ObjectNotFound, S3ExpError
from s3exp.specs._experiments import list_experiments, load_experiment
from s3exp.specs._models import ExperimentSpec
from s3exp.stores import Store, open_store
from s3exp.tables._compaction import (
    Manifest,
    fetch_ordered,
    read_manifest,
    staged_shards,
)
from s3exp.tables._schema import METRICS_SCHEMA, results_table, with_experiment

__all__ = ["VIEWS", "metrics", "query", "results"]

VIEWS = ("metrics", "results")
_ATTEMPTS = 5  # readings of the view before giving up on a store that keeps changing


def _decode(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def _decode_shard(data: bytes) -> pa.Table:
    return _decode(data).select(METRICS_SCHEMA.names).cast(METRICS_SCHEMA)


def _parts(store: Store, manifest: Manifest, table: str) -> list[pa.Table]:
    """The committed parts of ``table`` in ``manifest``, wherever each is now."""
    wanted = [p for p in manifest.parts if p["table"] == table]
    if not wanted:
        return []
    published = {m.key for m in store.list(_keys.table_prefix(table, manifest.experiment))}
    keys = [str(p["key"]) if p["key"] in published else str(p["pending"]) for p in wanted]
    return list(fetch_ordered(store, keys, _decode))


def _concat(tables: list[pa.Table], schema: pa.Schema | None = None) -> pa.Table:
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
    listing = parse_listing(exp, list(store.list(_keys.runs_prefix(exp))), store.server_time())
    staged = {rid: a for rid, a in staged_shards(store, exp).items()
              if rid not in manifest.runs and a}
    done = sorted(rid for rid in staged if listing.get(rid).result is not None)
    going = sorted(rid for rid in staged if listing.get(rid).result is None
                   and listing.get(rid).lease is not None)
    # Which attempt won is in the result's key; which attempt is live only in the lease
    # body: one GET per uncompacted running run that has shards.
    keep = {rid: w for rid in done if (w := listing.get(rid).winner) is not None}
    leases = fetch_ordered(store, [_keys.lease(exp, rid) for rid in going], json.loads)
    for rid, lease in zip(going, leases, strict=True):
        if lease.get("state") == "running":
            keep[rid] = int(lease["attempt"])
    keys = [m.key for rid in sorted(keep) for m in staged[rid].get(keep[rid], [])]
    tables.extend(fetch_ordered(store, keys, _decode_shard))
    return with_experiment(_concat(tables, METRICS_SCHEMA), exp)


def results(store: Store | str, exp: str, *, as_pandas: bool = False) -> Any:
    """One row per finished run of ``exp`` (compacted parts plus newer result records)."""
    st = open_store(store)
    spec = load_experiment(st, exp)
    table = _retrying(lambda: _results_once(st, exp, spec), f"results of {exp!r}")
    return _pandas(table) if as_pandas else table


def _results_once(store: Store, exp: str, spec: ExperimentSpec) -> pa.Table:
    manifest = read_manifest(store, exp)
    tables = _parts(store, manifest, "results")
    listing = parse_listing(exp, list(store.list(_keys.runs_prefix(exp))), store.server_time())
    fresh_keys = [objs.result.key for rid, objs in sorted(listing.runs.items())
                  if objs.result is not None and rid not in manifest.runs]
    fresh = list(fetch_ordered(store, fresh_keys, json.loads))
    if fresh or not tables:
        tables.append(results_table(spec, fresh))
    return with_experiment(_concat(tables), exp)


def query(store: Store | str, sql: str, *, experiments: Iterable[str] | None = None) -> pa.Table:
    """Run ``sql`` in DuckDB over the views ``metrics`` and ``results`` (the names of the
    Athena tables), spanning ``experiments`` (default: all in the store)."""
    store = open_store(store)
    try:
        import duckdb
    except ImportError:
        raise ConfigError("s3exp query needs duckdb: pip install 's3exp[query]'") from None
    names = list(experiments) if experiments is not None else list_experiments(store)
    m = _concat([metrics(store, n) for n in names])
    r = _concat([results(store, n) for n in names])
    con = duckdb.connect()
    try:
        con.register("metrics", m if m.num_columns else with_experiment(METRICS_SCHEMA.empty_table(), ""))
        con.register("results", r if r.num_columns else pa.table({"experiment": pa.array([], pa.string())}))
        try:
            rel = con.sql(sql)
            to_arrow = getattr(rel, "to_arrow_table", None) or rel.arrow  # name differs by version
            out: pa.Table = to_arrow()
        except duckdb.Error as e:
            raise ConfigError(f"query failed: {str(e).splitlines()[0]}") from e
        return out
    finally:
        con.close()
