"""The metric and results tables: every schema (``_schema``), the logging buffer that writes
Parquet shards (``_buffer``), reading shards (``_shards``), the manifest (``_manifest``),
exactly-once compaction (``_compaction``) and its housekeeping, the exact readers
(``_reading``), DuckDB queries (``_query``) and exports (``_formats``).  Imports specs and
below."""

import typing as _typing

from s3exp.core import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from s3exp.tables._buffer import (
        MetricBuffer,
        coerce_metrics,
    )
    from s3exp.tables._compaction import (
        CompactionReport,
        compact_tables,
    )
    from s3exp.tables._formats import format_table
    from s3exp.tables._housekeeping import (
        ORPHAN_AGE,
        collect_orphans,
    )
    from s3exp.tables._manifest import (
        Manifest,
        read_manifest,
    )
    from s3exp.tables._query import (
        VIEWS,
        query,
    )
    from s3exp.tables._reading import (
        metrics,
        read_results,
        results,
    )
    from s3exp.tables._schema import (
        METRICS_SCHEMA,
        RESULTS_BASE_SCHEMA,
        SHARD_SCHEMA,
        AttemptIdentity,
        param_types,
        results_table,
        with_experiment,
    )
    from s3exp.tables._shards import (
        fetch_ordered,
        staged_shards,
    )

__getattr__, __dir__ = _lazy_exports(__name__, {
    "AttemptIdentity": "._schema",
    "CompactionReport": "._compaction",
    "METRICS_SCHEMA": "._schema",
    "Manifest": "._manifest",
    "MetricBuffer": "._buffer",
    "ORPHAN_AGE": "._housekeeping",
    "RESULTS_BASE_SCHEMA": "._schema",
    "SHARD_SCHEMA": "._schema",
    "VIEWS": "._query",
    "coerce_metrics": "._buffer",
    "collect_orphans": "._housekeeping",
    "compact_tables": "._compaction",
    "fetch_ordered": "._shards",
    "format_table": "._formats",
    "metrics": "._reading",
    "param_types": "._schema",
    "query": "._query",
    "read_manifest": "._manifest",
    "read_results": "._reading",
    "results": "._reading",
    "results_table": "._schema",
    "staged_shards": "._shards",
    "with_experiment": "._schema",
}, globals())

__all__ = [
    "AttemptIdentity",
    "CompactionReport",
    "METRICS_SCHEMA",
    "Manifest",
    "MetricBuffer",
    "ORPHAN_AGE",
    "RESULTS_BASE_SCHEMA",
    "SHARD_SCHEMA",
    "VIEWS",
    "coerce_metrics",
    "collect_orphans",
    "compact_tables",
    "fetch_ordered",
    "format_table",
    "metrics",
    "param_types",
    "query",
    "read_manifest",
    "read_results",
    "results",
    "results_table",
    "staged_shards",
    "with_experiment",
]
