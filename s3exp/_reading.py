"""Reading results where they lie: exact views of ``metrics`` and ``results``, and DuckDB.

The exact view is what compaction has committed plus what it has not reached yet:

* compacted parts listed in the manifest (published key, or the pending one before the
  roll-forward), and
* staged shards of runs the manifest does not hold: of finished runs, the attempt that
  wrote ``result.json``; of runs still going, the live (highest) attempt.  Failed runs
  and superseded attempts are left out.

Every file is read through the store interface, so one code path serves S3, the directory
store and the in-memory store, with the store's retries and request counting.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from s3exp import _keys
from s3exp._compaction import read_manifest, staged_shards
from s3exp._errors import ConfigError, ObjectNotFound
from s3exp._experiments import list_experiments, load_experiment
from s3exp._leases import parse_listing
from s3exp._tables import METRICS_SCHEMA, results_table, with_experiment
from s3exp.stores import Store, open_store

__all__ = ["VIEWS", "metrics", "query", "results"]

VIEWS = ("metrics", "results")


def _read(store: Store, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(store.get(key).data))


def _part_key(part: dict[str, Any], published: set[str]) -> str:
    return str(part["key"]) if part["key"] in published else str(part["pending"])


def _parts(store: Store, exp: str, table: str) -> list[pa.Table]:
    manifest = read_manifest(store, exp)
    published = {m.key for m in store.list(_keys.table_prefix(table, exp))}
    out = []
    for part in manifest.parts:
        if part["table"] != table:
            continue
        try:
            out.append(_read(store, _part_key(part, published)))
        except ObjectNotFound:
            # Published and its pending copy deleted between our LIST and GET.
            out.append(_read(store, str(part["key"])))
    return out


def _concat(tables: list[pa.Table], schema: pa.Schema | None = None) -> pa.Table:
    if not tables:
        return schema.empty_table() if schema is not None else pa.table({})
    return pa.concat_tables(tables, promote_options="permissive")


def metrics(store: Store | str, exp: str, *, as_pandas: bool = False) -> Any:
    """Every metric row of ``exp`` exactly once, as a ``pyarrow.Table`` (or DataFrame)."""
    store = open_store(store)
    load_experiment(store, exp)
    manifest = read_manifest(store, exp)
    tables = _parts(store, exp, "metrics")
    listing = parse_listing(exp, list(store.list(_keys.runs_prefix(exp))), store.server_time())
    for run_id, attempts in staged_shards(store, exp).items():
        if run_id in manifest.runs or not attempts:
            continue
        objs = listing.get(run_id)
        if objs.result is not None:
            if len(attempts) == 1:
                attempt = next(iter(attempts))
            else:  # which attempt won is only in the result body
                attempt = int(json.loads(store.get(_keys.result(exp, run_id)).data)["attempt"])
        elif objs.lease is not None:
            attempt = max(attempts)  # attempts only go up: the highest is the live one
            if _lease_state(store, exp, run_id) == "failed":
                continue
        else:
            continue
        for meta in attempts.get(attempt, []):
            tables.append(_read(store, meta.key).select(METRICS_SCHEMA.names).cast(METRICS_SCHEMA))
    table = with_experiment(_concat(tables, METRICS_SCHEMA), exp)
    return table.to_pandas() if as_pandas else table


def _lease_state(store: Store, exp: str, run_id: str) -> str:
    try:
        return str(json.loads(store.get(_keys.lease(exp, run_id)).data)["state"])
    except ObjectNotFound:
        return "absent"


def results(store: Store | str, exp: str, *, as_pandas: bool = False) -> Any:
    """One row per finished run of ``exp`` (compacted parts plus newer result records)."""
    store = open_store(store)
    spec = load_experiment(store, exp)
    manifest = read_manifest(store, exp)
    tables = _parts(store, exp, "results")
    listing = parse_listing(exp, list(store.list(_keys.runs_prefix(exp))), store.server_time())
    fresh = [json.loads(store.get(_keys.result(exp, rid)).data)
             for rid, objs in sorted(listing.runs.items())
             if objs.result is not None and rid not in manifest.runs]
    if fresh or not tables:
        tables.append(results_table(spec, fresh))
    table = with_experiment(_concat(tables), exp)
    return table.to_pandas() if as_pandas else table


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
