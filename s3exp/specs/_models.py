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
of the offending field, e.g. ``definition.model_groups.model0.hype.lr``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from s3exp.core._errors import SpecError
from s3exp.core._names import name_problem, param_name_problem
from s3exp.specs._distributions import Param

__all__ = [
    "SCHEMA_VERSION",
    "Definition",
    "ExperimentSpec",
    "Metric",
    "ModelGroup",
    "canonical_json",
    "load_spec",
    "parse_spec",
]

SCHEMA_VERSION: Literal[1] = 1
MAX_RUNS = 1_000_000


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
        from s3exp.specs._expansion import count_runs  # avoid an import cycle

        n = count_runs(self)
        if n > MAX_RUNS:
            raise SpecError("runs_per_pair", f"the spec expands to {n} runs (limit {MAX_RUNS})")
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


def _field_path(loc: tuple[int | str, ...], data: Any, error_type: str) -> str:
    """The dotted path of an error's location in the user's input.

    pydantic's ``loc`` also holds tags that are not in the input: union members (``int``,
    ``float``) and validator wrappers.  An element is kept only if it indexes the input
    at that point, or it is the last one and names a missing field.
    """
    parts: list[str] = []
    node: Any = data
    for i, p in enumerate(loc):
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            node = node[p]
        elif not (i == len(loc) - 1 and error_type == "missing"):
            continue  # a tag, not a field
        parts.append(str(p))
    return ".".join(parts)


def _message(error: Any) -> str:
    msg = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "is required"
    return msg


def parse_spec(data: Any) -> ExperimentSpec:
    """Validate a spec given as a mapping; raise SpecError naming the first bad field."""
    if not isinstance(data, dict):
        raise SpecError("", f"a spec must be a JSON object (a mapping), not {_json_type(data)}")
    try:
        return ExperimentSpec.model_validate(data)
    except SpecError:
        raise
    except ValidationError as e:
        errors = e.errors(include_url=False)
        first = errors[0]
        ctx_error = (first.get("ctx") or {}).get("error")
        if isinstance(ctx_error, SpecError):
            raise SpecError(ctx_error.field, ctx_error.message) from None
        paths = [_field_path(err["loc"], data, err["type"]) for err in errors]
        loc = paths[0]
        # A value that fits no member of a union (a number given as a string) gives one
        # error per member at the same path: one problem, reported as alternatives.
        same = [_message(err) for err, path in zip(errors, paths, strict=True) if path == loc]
        msg = " or ".join([same[0]] + [m.removeprefix("Input should be ") for m in same[1:]])
        others = len(set(paths) - {loc})
        more = f" (and {others} more problem{'s' if others > 1 else ''})" if others else ""
        raise SpecError(loc, msg + more) from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null (is the file empty?)"
    for kind, name in ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
                       (list, "an array"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads object hook: a key given twice is an error, not "the last one wins"."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


class _SpecLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping key given twice (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: construct_mapping reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


# YAML aliases can make a small file expand to billions of values ("billion laughs").
MAX_SPEC_VALUES = 250_000


def _no_nan(value: str) -> float:
    raise ValueError(f"{value} is not allowed in a spec")


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a spec from a JSON or YAML file; raise SpecError for any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("", f"spec file {str(p)!r} does not exist") from None
    except IsADirectoryError:
        raise SpecError("", f"spec file {str(p)!r} is a directory") from None
    except UnicodeDecodeError:
        raise SpecError("", f"spec file {str(p)!r} is not UTF-8 text") from None
    except OSError as e:
        raise SpecError("", f"cannot read spec file {str(p)!r}: {e.strerror}") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.load(text, Loader=_SpecLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None)
            raise SpecError("", f"{p.name} is not valid YAML{where}"
                                + (f": {problem}" if problem else "")) from None
        _reject_non_finite(data, budget=[MAX_SPEC_VALUES])
    else:
        try:
            data = json.loads(text, parse_constant=_no_nan, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as e:
            raise SpecError("", f"{p.name} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        except ValueError as e:
            raise SpecError("", f"{p.name}: {e}") from None
    return parse_spec(data)


def _reject_non_finite(data: Any, path: str = "", *, budget: list[int]) -> None:
    """Refuse inf and nan, and stop after ``budget[0]`` values (aliases count each time
    they are used, so an alias bomb is refused before anything walks all of it)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise SpecError("", f"the spec expands to more than {MAX_SPEC_VALUES} values "
                            "(YAML aliases used many times?)")
    if isinstance(data, float) and not math.isfinite(data):
        raise SpecError(path.lstrip("."), f"{data} is not allowed in a spec")
    if isinstance(data, dict):
        for k, v in data.items():
            _reject_non_finite(v, f"{path}.{k}", budget=budget)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _reject_non_finite(v, f"{path}.{i}", budget=budget)
