"""The kernel: the error tree, name rules, clocks and the process's timer thread.

Imports nothing from the rest of s3exp; everything else may import it.
"""

from s3exp.core._clock import (
    Clock,
    FakeClock,
    SystemClock,
    elapsed,
)
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
from s3exp.core._lazy import lazy_exports
from s3exp.core._names import (
    name_problem,
    param_name_problem,
    safe_name,
)
from s3exp.core._timers import (
    Timer,
    call_later,
)

__all__ = [
    "AlreadyExists",
    "Clock",
    "ConfigError",
    "Conflict",
    "DamagedObject",
    "FakeClock",
    "Interrupted",
    "LeaseLost",
    "NotFoundError",
    "ObjectNotFound",
    "RunAlreadyCompleted",
    "S3ExpError",
    "SpecConflict",
    "SpecError",
    "StoreError",
    "SystemClock",
    "Timer",
    "Unavailable",
    "call_later",
    "elapsed",
    "lazy_exports",
    "name_problem",
    "param_name_problem",
    "safe_name",
]
