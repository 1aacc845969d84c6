"""Submitting, loading and listing experiments.

``submit`` is idempotent and safe to race: the spec record is written create-only, so
of any number of concurrent submitters exactly one creates it; every other one reads the
winner back and either finds the same spec hash (a no-op) or raises SpecConflict.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from s3exp._version import __version__
from s3exp.bucket import SpecRecord, keys
from s3exp.core import (
    AlreadyExists,
    DamagedObject,
    NotFoundError,
    ObjectNotFound,
    SpecConflict,
    SpecError,
    name_problem,
)
from s3exp.specs._expansion import count_runs
from s3exp.specs._loading import parse_spec
from s3exp.specs._models import ExperimentSpec, canonical_json
from s3exp.stores import Store

__all__ = [
    "SubmitResult",
    "first_difference",
    "list_experiments",
    "load_experiment",
    "submit",
]


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What ``submit`` did: ``created`` is False when the same spec was already there."""

    name: str
    spec_hash: str
    runs: int
    created: bool


def _record(spec: ExperimentSpec) -> bytes:
    return SpecRecord(spec.normalized(), spec.spec_hash, spec.space_hash, count_runs(spec),
                      __version__, datetime.now(UTC).isoformat()).to_bytes()


def first_difference(a: Any, b: Any, path: str = "") -> str:
    """The dotted path of the first place where two JSON values differ ('' if equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{path}.{k}".lstrip(".")
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return ""
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            d = first_difference(x, y, f"{path}.{i}")
            if d:
                return d
        return f"{path}.{min(len(a), len(b))}".lstrip(".") if len(a) != len(b) else ""
    return "" if canonical_json(a) == canonical_json(b) else (path.lstrip(".") or "<root>")


def submit(store: Store, spec: ExperimentSpec) -> SubmitResult:
    """Store ``spec`` create-only.  The same spec again is a no-op (``created=False``);
    a different spec under the same name raises SpecConflict and writes nothing."""
    runs = count_runs(spec)
    try:
        store.put_if_absent(keys.spec(spec.name), _record(spec))
        return SubmitResult(spec.name, spec.spec_hash, runs, created=True)
    except AlreadyExists:
        pass
    stored = _read_record(store, spec.name)
    if stored.spec_hash == spec.spec_hash:
        return SubmitResult(spec.name, spec.spec_hash, runs, created=False)
    where = first_difference(stored.spec, spec.normalized()) or "<root>"
    raise SpecConflict(spec.name, stored.spec_hash, spec.spec_hash, where)


def _read_record(store: Store, name: str) -> SpecRecord:
    problem = name_problem(name)
    if problem:
        raise NotFoundError(f"no experiment {name!r}: the name {problem}")
    key = keys.spec(name)
    try:
        blob = store.get(key)
    except ObjectNotFound:
        raise NotFoundError(f"no experiment {name!r} in {store.url}") from None
    return SpecRecord.from_bytes(blob.data, key)


def load_experiment(store: Store, name: str) -> ExperimentSpec:
    """The spec stored under ``name``; NotFoundError if there is none, DamagedObject if
    the stored record does not parse or its spec is no longer valid."""
    record = _read_record(store, name)
    try:
        return parse_spec(record.spec)
    except SpecError as e:
        raise DamagedObject(keys.spec(name), f"the stored spec is not valid: {e}") from None


def list_experiments(store: Store) -> list[str]:
    """Names of all experiments in the store, sorted."""
    names = (keys.experiment_from_spec_key(m.key) for m in store.list(keys.EXPERIMENTS))
    return sorted(n for n in names if n)
