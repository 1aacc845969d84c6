"""s3exp: run machine-learning experiments from an S3 bucket, with no server.

The public API is what ``__all__`` lists; every module whose name starts with ``_`` is
private.
"""

from s3exp._clock import Clock, FakeClock, SystemClock
from s3exp._errors import (
    AlreadyExists,
    ConfigError,
    Conflict,
    NotFoundError,
    ObjectNotFound,
    S3ExpError,
    SpecConflict,
    SpecError,
    StoreError,
    Unavailable,
)
from s3exp._expansion import RunSlot, count_runs, expand
from s3exp._experiments import SubmitResult, list_experiments, load_experiment, submit
from s3exp._specs import SCHEMA_VERSION, ExperimentSpec, load_spec, parse_spec
from s3exp._version import __version__
from s3exp.stores import FileStore, MemoryStore, S3Store, Store, open_store

__all__ = [
    "SCHEMA_VERSION",
    "AlreadyExists",
    "Clock",
    "ConfigError",
    "Conflict",
    "ExperimentSpec",
    "FakeClock",
    "FileStore",
    "MemoryStore",
    "NotFoundError",
    "ObjectNotFound",
    "RunSlot",
    "S3ExpError",
    "S3Store",
    "SpecConflict",
    "SpecError",
    "Store",
    "StoreError",
    "SubmitResult",
    "SystemClock",
    "Unavailable",
    "__version__",
    "count_runs",
    "expand",
    "list_experiments",
    "load_experiment",
    "load_spec",
    "open_store",
    "parse_spec",
    "submit",
]
