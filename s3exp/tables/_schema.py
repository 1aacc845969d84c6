"""The two analysis tables, ``metrics`` and ``results``: their schemas and how rows are made.

These names and columns are the contract shared by compaction, the readers, the DuckDB
views of ``s3exp query`` and the Athena tables of the AWS stack.

``metrics`` (long format, one row per logged value)::

    run_id, attempt, step, name, value, ts, dataset, model, worker   [+ experiment: partition]

``results`` (one row per finished run)::

    run_id, dataset, model, model_group, replicate, status, attempt, duration_s, host,
    worker, started_at, ended_at, params_json, metrics_json,
    param_<name>..., metric_<name>...                                [+ experiment: partition]

``params_json``/``metrics_json`` keep every value whatever the experiment's space, so a
fixed Athena schema can read any experiment; the ``param_*``/``metric_*`` columns are the
convenient typed view of the same values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from s3exp.specs._distributions import Param
from s3exp.specs._models import ExperimentSpec

__all__ = ["METRICS_SCHEMA", "RESULTS_BASE_SCHEMA", "param_types", "results_table", "with_experiment"]

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

RESULTS_BASE_SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("dataset", pa.string()),
    ("model", pa.string()),
    ("model_group", pa.string()),
    ("replicate", pa.int32()),
    ("status", pa.string()),
    ("attempt", pa.int32()),
    ("duration_s", pa.float64()),
    ("host", pa.string()),
    ("worker", pa.string()),
    ("started_at", pa.string()),
    ("ended_at", pa.string()),
    ("params_json", pa.string()),
    ("metrics_json", pa.string()),
])


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


def results_table(spec: ExperimentSpec, records: Iterable[dict[str, Any]]) -> pa.Table:
    """The results rows of ``records`` (committed result bodies), typed by the spec.

    One pass, so ``records`` may be a stream: compaction feeds the bodies as it GETs
    them and keeps only these columns, not thousands of parsed bodies."""
    ptypes = param_types(spec)
    columns: dict[str, list[Any]] = {f.name: [] for f in RESULTS_BASE_SCHEMA}
    for name in ptypes:
        columns[f"param_{name}"] = []
    metric_columns: dict[str, list[Any]] = {}
    n = 0
    for r in records:
        prov = r.get("provenance") or {}
        params = r.get("params") or {}
        metrics = r.get("metrics") or {}
        base = {
            "run_id": r.get("run_id"), "dataset": r.get("dataset"), "model": r.get("model"),
            "model_group": r.get("model_group"), "replicate": r.get("replicate"),
            "status": r.get("status", "done"), "attempt": r.get("attempt"),
            "duration_s": r.get("duration_s"), "host": prov.get("host"), "worker": r.get("worker"),
            "started_at": r.get("started_at"), "ended_at": r.get("ended_at"),
            "params_json": json.dumps(params, sort_keys=True, default=str),
            "metrics_json": json.dumps(metrics, sort_keys=True, default=str),
        }
        for k, v in base.items():
            columns[k].append(v)
        for name, t in ptypes.items():
            columns[f"param_{name}"].append(_cell(params.get(name), t))
        for name in metrics:
            if name not in metric_columns:
                metric_columns[name] = [None] * n  # a metric first seen now: earlier rows lack it
        for name, values in metric_columns.items():
            values.append(_cell(metrics.get(name), pa.float64()))
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
