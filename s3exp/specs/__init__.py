"""Experiment specs: the models (``_models``), the distributions (``_distributions``), reading
a spec from a file or a mapping (``_loading``), the deterministic expansion into run slots
(``_expansion``), and submitting, loading and listing stored experiments
(``_experiments``).  Imports bucket and below."""

import typing as _typing

from s3exp.core import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from s3exp.specs._distributions import Param
    from s3exp.specs._expansion import (
        RunSlot,
        count_runs,
        expand,
        iter_slots,
    )
    from s3exp.specs._experiments import (
        SubmitResult,
        first_difference,
        list_experiments,
        load_experiment,
        submit,
    )
    from s3exp.specs._loading import (
        load_spec,
        parse_spec,
    )
    from s3exp.specs._models import (
        MAX_RUNS,
        SCHEMA_VERSION,
        Definition,
        ExperimentSpec,
        Metric,
        ModelGroup,
        canonical_json,
    )

__getattr__, __dir__ = _lazy_exports(__name__, {
    "Definition": "._models",
    "ExperimentSpec": "._models",
    "MAX_RUNS": "._models",
    "Metric": "._models",
    "ModelGroup": "._models",
    "Param": "._distributions",
    "RunSlot": "._expansion",
    "SCHEMA_VERSION": "._models",
    "SubmitResult": "._experiments",
    "canonical_json": "._models",
    "count_runs": "._expansion",
    "expand": "._expansion",
    "first_difference": "._experiments",
    "iter_slots": "._expansion",
    "list_experiments": "._experiments",
    "load_experiment": "._experiments",
    "load_spec": "._loading",
    "parse_spec": "._loading",
    "submit": "._experiments",
}, globals())

__all__ = [
    "Definition",
    "ExperimentSpec",
    "MAX_RUNS",
    "Metric",
    "ModelGroup",
    "Param",
    "RunSlot",
    "SCHEMA_VERSION",
    "SubmitResult",
    "canonical_json",
    "count_runs",
    "expand",
    "first_difference",
    "iter_slots",
    "list_experiments",
    "load_experiment",
    "load_spec",
    "parse_spec",
    "submit",
]
