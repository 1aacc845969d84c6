"""The two analysis tables, ``metrics`` and ``results``: every schema of a metric row and
of a results row, and how rows are made.  Nothing else defines a column.

These names and columns are the contract shared by the logging buffer (shards),
compaction (parts), the readers, the DuckDB views of ``s3exp query`` and the Athena tables
of the AWS stack (``tests/test_infra.py`` checks the Glue columns against them).

``metrics`` (long format, one row per logged value)::

    run_id, attempt, step, name, value, ts, dataset, model, worker   [+ experiment: partition]

A row is the attempt that logged it (``IDENTITY``: constant within a shard, built from
:class:`AttemptIdentity`) and the logged value (``VALUES``: step, name, value, ts).  To
add a column: add it to ``METRICS_SCHEMA`` and to ``IDENTITY`` or ``VALUES``, then fill
it: an identity column is a field of ``AttemptIdentity`` (and of the record it is taken
from), a value column is one more item of the tuples ``MetricBuffer.log`` buffers.  The
shard, part and decode schemas below are derived from these.

``results`` (one row per finished run; ``RESULT_COLUMNS``)::

    run_id, dataset, model, model_group, replicate, status, attempt, duration_s, host,
    worker, started_at, ended_at, params_json, metrics_json,
    param_<name>..., metric_<name>...                                [+ experiment: partition]

``params_json``/``metrics_json`` keep every value whatever the experiment's space, so a
fixed Athena schema can read any experiment; the ``param_*``/``metric_*`` columns are the
convenient typed view of the same values.  To add a column: one line in
``RESULT_COLUMNS`` (its name, type and how it is read off a ``ResultRecord``), and the
field in the record.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from s3exp.bucket import ResultRecord
from s3exp.specs import ExperimentSpec, Param

__all__ = [
    "BUFFERED_ROW",
    "IDENTITY",
    "METRICS_SCHEMA",
    "PART_SCHEMA",
    "PART_WRITE_OPTIONS",
    "RESULTS_BASE_SCHEMA",
    "RESULT_COLUMNS",
    "ROW_SCHEMA",
    "SHARD_SCHEMA",
    "SHARD_WRITE_OPTIONS",
    "VALUES",
    "AttemptIdentity",
    "param_types",
    "results_table",
    "with_experiment",
]

METRICS_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("attempt", pa.int32()),
    ("step", pa.int64()),
    ("name", pa.string()),
    ("value", pa.float64()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("dataset", pa.string()),
    ("model", pa.string()),
    ("worker", pa.string()),
])
IDENTITY = ("run_id", "attempt", "dataset", "model", "worker")
"""The columns that name the attempt: constant within a shard."""
VALUES = ("step", "name", "value", "ts")
"""The columns of one logged value."""


@dataclass(frozen=True, slots=True)
class AttemptIdentity:
    """What every metric row of one attempt carries besides its logged value: the
    buffer writes it into each shard, and compaction rebuilds it from the shard's key and
    the winning result instead of decoding it (the same lease made both)."""

    experiment: str
    run_id: str
    attempt: int
    dataset: str | None
    model: str | None
    worker: str | None

    @classmethod
    def of_result(cls, record: ResultRecord) -> AttemptIdentity:
        return cls(record.experiment, record.run_id, record.attempt, record.dataset,
                   record.model, record.worker)


# Shards: the metrics row plus the experiment (a shard stands alone, outside any partition).
SHARD_SCHEMA = pa.schema([pa.field("experiment", pa.string()), *METRICS_SCHEMA])
# What ``MetricBuffer.log`` keeps per value: VALUES, with ``ts`` as a POSIX float.
BUFFERED_ROW = pa.struct([pa.field(n, pa.float64() if n == "ts" else METRICS_SCHEMA.field(n).type)
                          for n in VALUES])

# Parts: string columns decoded and written as dictionaries (a handful of distinct values
# per shard): several times faster to read and write than plain strings, and a fraction
# of the memory.
_DICT_COLUMNS = tuple(f.name for f in METRICS_SCHEMA if f.type == pa.string())
PART_SCHEMA = pa.schema([
    pa.field(f.name, pa.dictionary(pa.int32(), f.type) if f.name in _DICT_COLUMNS else f.type)
    for f in METRICS_SCHEMA
])
# What compaction decodes from a shard: the values; the identity is the shard's owner's.
ROW_SCHEMA = pa.schema([PART_SCHEMA.field(n) for n in VALUES])

# How shards are written.  The Arrow schema is not stored: readers see plain strings, as
# SHARD_SCHEMA says.  Snappy, not zstd: shards are small and read once, by compaction,
# where zstd's per-column decoder set-up cost about 1 ms per shard (3x snappy's whole
# decode).  Dictionary pages only for the strings: plain-encoded numbers make shards 10%
# smaller and 10% faster to decode than the default.
SHARD_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "snappy",
    "use_dictionary": [f.name for f in SHARD_SCHEMA if f.type == pa.string()],
    "store_schema": False,
}
# How parts are written.  Snappy: Athena's default codec, and about twice as fast to write
# as zstd for parts of this shape, at 7% more bytes (benchmarks/RESULTS.md).  The Arrow
# schema is not stored, so readers see plain ``string`` columns (the Parquet data is
# dictionary-encoded either way).
PART_WRITE_OPTIONS: dict[str, Any] = {
    "compression": "snappy", "use_dictionary": list(_DICT_COLUMNS), "store_schema": False}


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


RESULT_COLUMNS: list[tuple[str, pa.DataType, Callable[[ResultRecord], Any]]] = [
    ("run_id", pa.string(), lambda r: r.run_id),
    ("dataset", pa.string(), lambda r: r.dataset),
    ("model", pa.string(), lambda r: r.model),
    ("model_group", pa.string(), lambda r: r.model_group),
    ("replicate", pa.int32(), lambda r: r.replicate),
    ("status", pa.string(), lambda r: r.status),
    ("attempt", pa.int32(), lambda r: r.attempt),
    ("duration_s", pa.float64(), lambda r: r.duration_s),
    ("host", pa.string(), lambda r: r.provenance.get("host")),
    ("worker", pa.string(), lambda r: r.worker),
    ("started_at", pa.string(), lambda r: r.started_at),
    ("ended_at", pa.string(), lambda r: r.ended_at),
    ("params_json", pa.string(), lambda r: _json(r.params)),
    ("metrics_json", pa.string(), lambda r: _json(r.metrics)),
]
"""The fixed columns of ``results``: name, type, and how to read it off a record."""
RESULTS_BASE_SCHEMA = pa.schema([(name, t) for name, t, _ in RESULT_COLUMNS])


def _value_type(values: Sequence[Any]) -> pa.DataType:
    if all(isinstance(v, bool) for v in values):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return pa.string()


def _param_type(p: Param) -> pa.DataType:
    if p.distribution == "int_uniform":
        return pa.int64()
    if p.distribution == "constant":
        return _value_type([p.value])
    if p.distribution in ("categorical", "grid"):
        return _value_type(p.values or [])
    return pa.float64()  # every sampled distribution, quantised ones included


def param_types(spec: ExperimentSpec) -> dict[str, pa.DataType]:
    """One Arrow type per parameter name, decided by the spec (not by the values seen),
    so every compaction generation writes the same column types."""
    spaces = ([spec.parameters] if spec.parameters is not None else
              [g.hype for g in spec.definition.model_groups.values()] if spec.definition else [])
    types: dict[str, pa.DataType] = {}
    for space in spaces:
        for name, p in space.items():
            t = _param_type(p)
            if name in types and types[name] != t:
                t = pa.string() if pa.string() in (t, types[name]) else pa.float64()
            types[name] = t
    return types


def _cell(value: Any, t: pa.DataType) -> Any:
    if value is None:
        return None
    if t == pa.string():
        return value if isinstance(value, str) else json.dumps(value)
    if t == pa.float64():
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return value


def results_table(spec: ExperimentSpec, records: Iterable[ResultRecord]) -> pa.Table:
    """The results rows of ``records`` (committed results), typed by the spec.

    One pass, so ``records`` may be a stream: compaction feeds the records as it GETs
    them and keeps only these columns, not thousands of parsed bodies."""
    ptypes = param_types(spec)
    columns: dict[str, list[Any]] = {name: [] for name, _, _ in RESULT_COLUMNS}
    for name in ptypes:
        columns[f"param_{name}"] = []
    metric_columns: dict[str, list[Any]] = {}
    n = 0
    for r in records:
        for name, _, read in RESULT_COLUMNS:
            columns[name].append(read(r))
        for name, t in ptypes.items():
            columns[f"param_{name}"].append(_cell(r.params.get(name), t))
        for name in r.metrics:
            if name not in metric_columns:
                metric_columns[name] = [None] * n  # a metric first seen now: earlier rows lack it
        for name, values in metric_columns.items():
            values.append(_cell(r.metrics.get(name), pa.float64()))
        n += 1
    for name in sorted(metric_columns):
        columns[f"metric_{name}"] = metric_columns[name]
    fields = list(RESULTS_BASE_SCHEMA) + [pa.field(f"param_{n}", t) for n, t in ptypes.items()] \
        + [pa.field(f"metric_{n}", pa.float64()) for n in sorted(metric_columns)]
    return pa.table(columns, schema=pa.schema(fields))


def with_experiment(table: pa.Table, exp: str) -> pa.Table:
    """Add the ``experiment`` column that the Hive partition path carries."""
    if "experiment" in table.column_names:
        return table
    return table.append_column("experiment", pa.array([exp] * table.num_rows, pa.string()))
