"""Expanding a spec into its ordered run slots.

A slot is one (dataset, model group, grid point, replicate).  Expansion is a pure function
of the spec, so every machine that expands the same spec gets the same slots, in the same
order, with the same parameters:

* order: replicate 0 of every (pair, grid point) cell, then replicate 1, and so on.  A
  worker that takes free slots from the front therefore always serves the cells with the
  fewest started runs first;
* ``run_id``: ``<dataset>__<model group>[__g<grid point>]__r<replicate>`` (grouped) or
  ``[g<grid point>__]r<replicate>`` (flat), zero-padded;
* parameters: drawn from ``numpy.random.default_rng`` seeded by SHA-256 of
  (space hash, run_id), parameter by parameter in sorted name order.  A retried run gets
  its parameters back unchanged.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from s3exp.core import SpecError
from s3exp.specs._distributions import Param
from s3exp.specs._models import ExperimentSpec

__all__ = ["RunSlot", "count_runs", "expand", "pairs"]


@dataclass(frozen=True, slots=True)
class RunSlot:
    """One run of an experiment, as the spec defines it."""

    index: int
    run_id: str
    dataset: str | None
    model: str | None
    model_group: str | None
    grid_index: int
    replicate: int
    params: dict[str, Any] = field(hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "run_id": self.run_id,
            "dataset": self.dataset,
            "model": self.model,
            "model_group": self.model_group,
            "grid_index": self.grid_index,
            "replicate": self.replicate,
            "params": self.params,
        }


@dataclass(frozen=True, slots=True)
class _Cell:
    dataset: str | None
    model_group: str | None
    model: str | None
    space: dict[str, Param]


def pairs(spec: ExperimentSpec) -> list[tuple[str | None, str | None]]:
    """The (dataset, model group) pairs in expansion order; a dataset that two applied
    data groups share is paired with each model group once."""
    if spec.definition is None:
        return [(None, None)]
    d = spec.definition
    out: dict[tuple[str | None, str | None], None] = {}
    for data_group, model_groups in d.applications.items():
        for dataset in d.data_groups[data_group]:
            for mg in model_groups:
                out.setdefault((dataset, mg), None)
    return list(out)


def _cells(spec: ExperimentSpec) -> list[_Cell]:
    if spec.definition is None:
        assert spec.parameters is not None
        return [_Cell(None, None, None, spec.parameters)]
    groups = spec.definition.model_groups
    return [_Cell(ds, mg, groups[mg].model, groups[mg].hype) for ds, mg in pairs(spec)
            if mg is not None]


def _grid_names(spec: ExperimentSpec, space: dict[str, Param]) -> list[str]:
    return sorted(n for n, p in space.items()
                  if p.is_grid or (spec.method == "grid" and p.distribution == "categorical"))


def _grid_points(spec: ExperimentSpec, space: dict[str, Param]) -> list[dict[str, Any]]:
    names = _grid_names(spec, space)
    axes = [space[n].values or [] for n in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


def count_runs(spec: ExperimentSpec) -> int:
    """How many runs ``spec`` expands to, without expanding it."""
    total = 0
    for cell in _cells(spec):
        n = 1
        for name in _grid_names(spec, cell.space):
            n *= len(cell.space[name].values or [])
        total += n
    return total * spec.runs_per_pair


def _rng(space_hash: str, run_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{space_hash}:{run_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def _width(n: int) -> int:
    return max(2, len(str(max(n - 1, 0))))


def expand(spec: ExperimentSpec, *, params: bool = True) -> list[RunSlot]:
    """All run slots of ``spec``, in claim order.  Pure and deterministic.  With
    ``params=False`` the sampled parameters are left out (``{}``): sampling is most of
    the cost, and a status count needs only ids, datasets and model groups."""
    return list(iter_slots(spec, params=params))


def iter_slots(spec: ExperimentSpec, *, params: bool = True) -> Iterator[RunSlot]:
    space_hash = spec.space_hash
    cells = [(cell, _grid_points(spec, cell.space)) for cell in _cells(spec)]
    rep_w = _width(spec.runs_per_pair)
    seen: set[str] = set()
    index = 0
    for replicate in range(spec.runs_per_pair):
        for cell, grid in cells:
            grid_w = _width(len(grid))
            for gi, point in enumerate(grid):
                parts = [p for p in (cell.dataset, cell.model_group) if p is not None]
                if len(grid) > 1:
                    parts.append(f"g{gi:0{grid_w}d}")
                parts.append(f"r{replicate:0{rep_w}d}")
                run_id = "__".join(parts)
                if run_id in seen:  # names cannot contain "__", so this is a safety net
                    raise SpecError("definition", f"two runs would share the id {run_id!r}")
                seen.add(run_id)
                values: dict[str, Any] = {}
                if params:
                    rng = _rng(space_hash, run_id)
                    values = {name: point[name] if name in point else cell.space[name].sample(rng)
                              for name in sorted(cell.space)}
                yield RunSlot(index, run_id, cell.dataset, cell.model, cell.model_group, gi,
                              replicate, values)
                index += 1
