"""Experiment specs: the two shapes (grouped and flat), strict validation, hashing.

Grouped (the shape researchers asked for)::

    {"name": "testExp0", "runs_per_pair": 10, "definition": {
        "data_groups":  {"group0": ["dataUID0", "dataUID1"]},
        "model_groups": {"model0": {"model": "modelUID0", "hype": {"lr": {...}}}},
        "applications": {"group0": ["model0"]}}}

Flat (a W&B-style sweep with no datasets or models)::

    {"name": "sweep1", "method": "grid", "runs_per_pair": 2,
     "parameters": {"lr": {"values": [0.1, 0.01]}, "wd": {"min": 0.0, "max": 0.1}}}

Every validation error is a :class:`~s3exp.SpecError` whose ``field`` is the dotted path
of the offending field, e.g. ``definition.model_groups.model0.hype.lr``.  Reading a spec
from a file or a mapping, with the checks that need the expansion, is
:mod:`s3exp.specs._loading`'s.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from s3exp.core import SpecError, name_problem, param_name_problem
from s3exp.specs._distributions import Param

__all__ = [
    "MAX_RUNS",
    "SCHEMA_VERSION",
    "Definition",
    "ExperimentSpec",
    "Metric",
    "ModelGroup",
    "canonical_json",
]

SCHEMA_VERSION: Literal[1] = 1
MAX_RUNS = 1_000_000
"""The most runs one spec may expand to (checked by :func:`s3exp.specs._loading.parse_spec`)."""


def canonical_json(obj: Any) -> str:
    """The one JSON form that hashes are taken over: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _check_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(f"name {value!r} {problem}")
    return value


def _named(field: str, value: str) -> None:
    problem = name_problem(value)
    if problem:
        raise SpecError(field, f"name {value!r} {problem}")


def _check_space(space: dict[str, Param]) -> dict[str, Param]:
    for name in space:
        problem = param_name_problem(name)
        if problem:
            raise ValueError(f"parameter {name!r}: {problem}")
    return space


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelGroup(_Strict):
    """A model and its hyperparameter space."""

    model: str
    hype: dict[str, Param] = Field(default_factory=dict)

    _name = field_validator("model")(_check_name)
    _space = field_validator("hype")(_check_space)


class Definition(_Strict):
    """The grouped shape: which models apply to which datasets."""

    data_groups: dict[str, list[str]]
    model_groups: dict[str, ModelGroup]
    applications: dict[str, list[str]]

    @field_validator("data_groups")
    @classmethod
    def _datasets(cls, groups: dict[str, list[str]]) -> dict[str, list[str]]:
        where = "definition.data_groups"
        if not groups:
            raise SpecError(where, "needs at least one data group")
        for group, datasets in groups.items():
            _named(f"{where}.{group}", group)
            if not datasets:
                raise SpecError(f"{where}.{group}", "is empty")
            seen: set[str] = set()
            for i, d in enumerate(datasets):
                _named(f"{where}.{group}.{i}", d)
                if d in seen:
                    raise SpecError(f"{where}.{group}.{i}", f"dataset {d!r} is listed twice")
                seen.add(d)
        return groups

    @field_validator("model_groups")
    @classmethod
    def _models(cls, groups: dict[str, ModelGroup]) -> dict[str, ModelGroup]:
        if not groups:
            raise SpecError("definition.model_groups", "needs at least one model group")
        for group in groups:
            _named(f"definition.model_groups.{group}", group)
        return groups

    @model_validator(mode="after")
    def _applications(self) -> Definition:
        if not self.applications:
            raise SpecError("definition.applications", "needs at least one application")
        for data_group, model_groups in self.applications.items():
            where = f"definition.applications.{data_group}"
            if data_group not in self.data_groups:
                raise SpecError(where, f"unknown data group {data_group!r} "
                                f"(known: {', '.join(self.data_groups)})")
            if not model_groups:
                raise SpecError(where, "lists no model groups")
            for i, mg in enumerate(model_groups):
                if mg not in self.model_groups:
                    raise SpecError(f"{where}.{i}", f"unknown model group {mg!r} "
                                    f"(known: {', '.join(self.model_groups)})")
            if len(set(model_groups)) != len(model_groups):
                raise SpecError(where, "lists a model group twice")
        return self


class Metric(_Strict):
    """The metric that "best run" means, as in a W&B sweep's ``metric`` block."""

    name: str
    goal: Literal["minimize", "maximize"] = "maximize"


class ExperimentSpec(_Strict):
    """An experiment: a grouped ``definition`` or a flat ``parameters`` space.

    ``runs_per_pair`` is the number of replicates of every (dataset, model, grid point)
    cell; in the flat shape there is one implicit pair.  Fields after ``seed`` are
    operational: they do not change which runs exist or their parameters.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=False)

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    runs_per_pair: int = Field(default=1, ge=1, le=MAX_RUNS)
    definition: Definition | None = None
    method: Literal["grid", "random"] = "random"
    parameters: dict[str, Param] | None = None
    seed: int = 0
    # -- operational: not part of the space hash --
    description: str = ""
    metric: Metric | None = None
    priority: int = 0
    lease_seconds: float = Field(default=60.0, gt=0, le=86_400)
    max_attempts: int = Field(default=3, ge=1, le=100)

    _name = field_validator("name")(_check_name)

    @field_validator("runs_per_pair", "seed", "priority", "lease_seconds", "max_attempts",
                     mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        # pydantic's lax mode reads true as 1; a boolean here is a mistake, not a count.
        if isinstance(value, bool):
            raise ValueError(f"must be a number, not {str(value).lower()}")
        return value

    @field_validator("parameters")
    @classmethod
    def _params(cls, space: dict[str, Param] | None) -> dict[str, Param] | None:
        return None if space is None else _check_space(space)

    @model_validator(mode="after")
    def _shape(self) -> ExperimentSpec:
        if (self.definition is None) == (self.parameters is None):
            raise SpecError("definition", "give exactly one of 'definition' (grouped shape) "
                            "or 'parameters' (flat shape)")
        if self.parameters is not None and not self.parameters:
            raise SpecError("parameters", "is empty")
        return self

    @property
    def is_grouped(self) -> bool:
        return self.definition is not None

    def normalized(self) -> dict[str, Any]:
        """The spec as stored: defaults omitted, numbers as numbers, names as given."""
        return self.model_dump(mode="json", exclude_defaults=True) | {"name": self.name}

    @property
    def spec_hash(self) -> str:
        """Identity of the whole spec; a resubmission must match it."""
        return hashlib.sha256(canonical_json(self.normalized()).encode()).hexdigest()

    @property
    def space_hash(self) -> str:
        """Identity of what defines the runs (shape, space, replicates, seed).

        Parameters are drawn from RNGs seeded by (space hash, run id), so operational
        changes (priority, lease time, the name) never change a run's parameters.
        """
        keep = {"schema_version", "runs_per_pair", "definition", "method", "parameters", "seed"}
        space = {k: v for k, v in self.model_dump(mode="json", exclude_defaults=True).items()
                 if k in keep}
        return hashlib.sha256(canonical_json(space).encode()).hexdigest()
