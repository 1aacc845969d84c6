"""s3exp: run machine-learning experiments from an S3 bucket, with no server.

The public API is what ``__all__`` lists; every module whose name starts with ``_`` is
private.
"""

from s3exp._child import current_run
from s3exp._clock import Clock, FakeClock, SystemClock
from s3exp._errors import (
    AlreadyExists,
    ConfigError,
    Conflict,
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
from s3exp._compaction import CompactionReport, compact
from s3exp._expansion import RunSlot, count_runs, expand
from s3exp._experiments import SubmitResult, list_experiments, load_experiment, submit
from s3exp._operations import read_results, reset_runs, set_control
from s3exp._reading import metrics, query, results
from s3exp._specs import SCHEMA_VERSION, ExperimentSpec, load_spec, parse_spec
from s3exp._status import ExperimentStatus, experiment_status
from s3exp._version import __version__
from s3exp._worker import Run, Worker, WorkerStats
from s3exp.stores import FileStore, MemoryStore, S3Store, Store, open_store

__all__ = [
    "AlreadyExists",
    "Clock",
    "CompactionReport",
    "ConfigError",
    "Conflict",
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
