"""Operations on experiments: ``s3exp.compact`` and ``compact_and_record`` (``_compact``),
status (``_status``) and its rollup (``_rollup``), pause / resume / cancel (``_control``),
reset (``_reset``), and the cost meter (``_costs``).  Imports tables and below."""

import typing as _typing

from s3exp.core import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from s3exp.ops._compact import (
        compact,
        compact_and_record,
    )
    from s3exp.ops._control import (
        Control,
        read_control,
        set_control,
    )
    from s3exp.ops._costs import (
        COMPACTOR_ID,
        CostMeter,
        CostReport,
        check_meter_id,
        dollars,
        read_costs,
        record_requests,
        render_costs,
    )
    from s3exp.ops._reset import reset_runs
    from s3exp.ops._rollup import (
        read_status_rollup,
        write_status_rollup,
    )
    from s3exp.ops._status import (
        STATES,
        ExperimentStatus,
        compute_status,
        experiment_status,
        render_status,
        run_states,
    )

__getattr__, __dir__ = _lazy_exports(__name__, {
    "COMPACTOR_ID": "._costs",
    "Control": "._control",
    "CostMeter": "._costs",
    "CostReport": "._costs",
    "ExperimentStatus": "._status",
    "STATES": "._status",
    "check_meter_id": "._costs",
    "compact": "._compact",
    "compact_and_record": "._compact",
    "compute_status": "._status",
    "dollars": "._costs",
    "experiment_status": "._status",
    "read_control": "._control",
    "read_costs": "._costs",
    "read_status_rollup": "._rollup",
    "record_requests": "._costs",
    "render_costs": "._costs",
    "render_status": "._status",
    "reset_runs": "._reset",
    "run_states": "._status",
    "set_control": "._control",
    "write_status_rollup": "._rollup",
}, globals())

__all__ = [
    "COMPACTOR_ID",
    "Control",
    "CostMeter",
    "CostReport",
    "ExperimentStatus",
    "STATES",
    "check_meter_id",
    "compact",
    "compact_and_record",
    "compute_status",
    "dollars",
    "experiment_status",
    "read_control",
    "read_costs",
    "read_status_rollup",
    "record_requests",
    "render_costs",
    "render_status",
    "reset_runs",
    "run_states",
    "set_control",
    "write_status_rollup",
]
