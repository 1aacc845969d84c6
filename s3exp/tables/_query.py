"""``s3exp query``: SQL in DuckDB over the views ``metrics`` and ``results``, under the names
and columns of the Athena tables, so that a query written locally runs unchanged in Athena.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from s3exp.core import ConfigError
from s3exp.specs import list_experiments
from s3exp.stores import Store, open_store
from s3exp.tables._reading import concat, metrics, results
from s3exp.tables._schema import METRICS_SCHEMA, with_experiment

__all__ = ["VIEWS", "query"]

VIEWS = ("metrics", "results")


def query(store: Store | str, sql: str, *, experiments: Iterable[str] | None = None) -> pa.Table:
    """Run ``sql`` in DuckDB over the views ``metrics`` and ``results`` (the names of the
    Athena tables), spanning ``experiments`` (default: all in the store)."""
    store = open_store(store)
    try:
        import duckdb
    except ImportError:
        raise ConfigError("s3exp query needs duckdb, a dependency of s3exp: reinstall it "
                          "(pip install s3exp)") from None
    names = list(experiments) if experiments is not None else list_experiments(store)
    m = concat([metrics(store, n) for n in names])
    r = concat([results(store, n) for n in names])
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
