"""s3exp: run machine-learning experiments from an S3 bucket, with no server.

The public API is what ``__all__`` lists; every module whose name starts with ``_`` is
private.
"""

import importlib as _importlib
import typing as _typing

from s3exp._version import __version__
from s3exp.core import (
    AlreadyExists,
    Clock,
    ConfigError,
    Conflict,
    DamagedObject,
    FakeClock,
    Interrupted,
    LeaseLost,
    NotFoundError,
    ObjectNotFound,
    RunAlreadyCompleted,
    S3ExpError,
    SpecConflict,
    SpecError,
    StoreError,
    SystemClock,
    Unavailable,
)
from s3exp.specs import SCHEMA_VERSION, ExperimentSpec, load_spec, parse_spec

# The rest is imported on first use (PEP 562): pyarrow, boto3 and numpy cost about 0.3 s,
# which every CLI command paid, ``--help`` and a one-line input error included.
_LAZY = {
    "current_run": "s3exp.runs",
    "CompactionReport": "s3exp.tables", "compact": "s3exp.ops",
    "RunSlot": "s3exp.specs", "count_runs": "s3exp.specs", "expand": "s3exp.specs",
    "SubmitResult": "s3exp.specs", "list_experiments": "s3exp.specs",
    "load_experiment": "s3exp.specs", "submit": "s3exp.specs",
    "read_results": "s3exp.tables", "reset_runs": "s3exp.ops",
    "set_control": "s3exp.ops",
    "metrics": "s3exp.tables", "query": "s3exp.tables", "results": "s3exp.tables",
    "ExperimentStatus": "s3exp.ops", "experiment_status": "s3exp.ops",
    "Run": "s3exp.runs", "Worker": "s3exp.runs", "WorkerStats": "s3exp.runs",
    "FileStore": "s3exp.stores", "MemoryStore": "s3exp.stores", "S3Store": "s3exp.stores",
    "Store": "s3exp.stores", "open_store": "s3exp.stores",
}

if _typing.TYPE_CHECKING:
    from s3exp.ops import (
        ExperimentStatus,
        compact,
        experiment_status,
        reset_runs,
        set_control,
    )
    from s3exp.runs import Run, Worker, WorkerStats, current_run
    from s3exp.specs import (
        RunSlot,
        SubmitResult,
        count_runs,
        expand,
        list_experiments,
        load_experiment,
        submit,
    )
    from s3exp.stores import FileStore, MemoryStore, S3Store, Store, open_store
    from s3exp.tables import CompactionReport, metrics, query, read_results, results


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 's3exp' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AlreadyExists",
    "Clock",
    "CompactionReport",
    "ConfigError",
    "Conflict",
    "DamagedObject",
    "ExperimentSpec",
    "ExperimentStatus",
    "FakeClock",
    "FileStore",
    "Interrupted",
    "LeaseLost",
    "MemoryStore",
    "NotFoundError",
    "ObjectNotFound",
    "Run",
    "RunAlreadyCompleted",
    "RunSlot",
    "S3ExpError",
    "S3Store",
    "SCHEMA_VERSION",
    "SpecConflict",
    "SpecError",
    "Store",
    "StoreError",
    "SubmitResult",
    "SystemClock",
    "Unavailable",
    "Worker",
    "WorkerStats",
    "__version__",
    "compact",
    "count_runs",
    "current_run",
    "expand",
    "experiment_status",
    "list_experiments",
    "load_experiment",
    "load_spec",
    "metrics",
    "open_store",
    "parse_spec",
    "query",
    "read_results",
    "reset_runs",
    "results",
    "set_control",
    "submit",
]
