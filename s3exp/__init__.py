"""s3exp: run machine-learning experiments from an S3 bucket, with no server.

The public API is what ``__all__`` lists; every module whose name starts with ``_`` is
private.
"""

import importlib as _importlib
import typing as _typing

from s3exp._version import __version__
from s3exp.core._clock import Clock, FakeClock, SystemClock
from s3exp.core._errors import (
    AlreadyExists,
    ConfigError,
    Conflict,
    DamagedObject,
    Interrupted,
    LeaseLost,
    NotFoundError,
    ObjectNotFound,
    RunAlreadyCompleted,
    S3ExpError,
    SpecConflict,
    SpecError,
    StoreError,
    Unavailable,
)
from s3exp.specs._loading import load_spec, parse_spec
from s3exp.specs._models import SCHEMA_VERSION, ExperimentSpec

# The rest is imported on first use (PEP 562): pyarrow, boto3 and numpy cost about 0.3 s,
# which every CLI command paid, ``--help`` and a one-line input error included.
_LAZY = {
    "current_run": "s3exp.runs._child",
    "CompactionReport": "s3exp.tables._compaction", "compact": "s3exp.ops._compact",
    "RunSlot": "s3exp.specs._expansion", "count_runs": "s3exp.specs._expansion", "expand": "s3exp.specs._expansion",
    "SubmitResult": "s3exp.specs._experiments", "list_experiments": "s3exp.specs._experiments",
    "load_experiment": "s3exp.specs._experiments", "submit": "s3exp.specs._experiments",
    "read_results": "s3exp.tables._reading", "reset_runs": "s3exp.ops._reset",
    "set_control": "s3exp.ops._control",
    "metrics": "s3exp.tables._reading", "query": "s3exp.tables._query", "results": "s3exp.tables._reading",
    "ExperimentStatus": "s3exp.ops._status", "experiment_status": "s3exp.ops._status",
    "Run": "s3exp.runs._worker", "Worker": "s3exp.runs._worker", "WorkerStats": "s3exp.runs._worker",
    "FileStore": "s3exp.stores", "MemoryStore": "s3exp.stores", "S3Store": "s3exp.stores",
    "Store": "s3exp.stores", "open_store": "s3exp.stores",
}

if _typing.TYPE_CHECKING:
    from s3exp.ops._compact import compact
    from s3exp.ops._control import set_control
    from s3exp.ops._reset import reset_runs
    from s3exp.ops._status import ExperimentStatus, experiment_status
    from s3exp.runs._child import current_run
    from s3exp.runs._worker import Run, Worker, WorkerStats
    from s3exp.specs._expansion import RunSlot, count_runs, expand
    from s3exp.specs._experiments import (
        SubmitResult,
        list_experiments,
        load_experiment,
        submit,
    )
    from s3exp.stores import FileStore, MemoryStore, S3Store, Store, open_store
    from s3exp.tables._compaction import CompactionReport
    from s3exp.tables._query import query
    from s3exp.tables._reading import metrics, read_results, results


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
