"""Executing runs: claims (``_claims``), the worker (``_worker``), the user's handle ``Run``
(``_run``) and what it talks to its worker through (``_hooks``), the lease keeper with its
heartbeat and deadline (``_lease_keeper``), the asynchronous stop (``_async_stop``), the
records that end an attempt (``_outcomes``), the command agent (``_agent``) and its child's
side (``_child``), and provenance.  Imports ops and below."""

import typing as _typing

from s3exp.core import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from s3exp.runs._agent import (
        FIXED_FIELDS,
        check_template,
        fill_template,
        run_command,
    )
    from s3exp.runs._child import (
        ChildRun,
        current_run,
        parse_metric_line,
    )
    from s3exp.runs._claims import (
        Claim,
        Claimer,
    )
    from s3exp.runs._hooks import (
        Outcome,
        RunHooks,
    )
    from s3exp.runs._provenance import provenance
    from s3exp.runs._worker import (
        Run,
        Worker,
        WorkerStats,
    )

__getattr__, __dir__ = _lazy_exports(__name__, {
    "ChildRun": "._child",
    "Claim": "._claims",
    "Claimer": "._claims",
    "FIXED_FIELDS": "._agent",
    "Outcome": "._hooks",
    "Run": "._worker",
    "RunHooks": "._hooks",
    "Worker": "._worker",
    "WorkerStats": "._worker",
    "check_template": "._agent",
    "current_run": "._child",
    "fill_template": "._agent",
    "parse_metric_line": "._child",
    "provenance": "._provenance",
    "run_command": "._agent",
}, globals())

__all__ = [
    "ChildRun",
    "Claim",
    "Claimer",
    "FIXED_FIELDS",
    "Outcome",
    "Run",
    "RunHooks",
    "Worker",
    "WorkerStats",
    "check_template",
    "current_run",
    "fill_template",
    "parse_metric_line",
    "provenance",
    "run_command",
]
