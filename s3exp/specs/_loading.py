"""Reading a spec: from a JSON or YAML file (strictly: no duplicate keys, no NaN or
infinity, no alias bombs) or from a mapping, into a validated :class:`ExperimentSpec`.

Errors are :class:`~s3exp.SpecError` naming the field, raised before anything is written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from s3exp.core import SpecError
from s3exp.specs._expansion import count_runs
from s3exp.specs._models import MAX_RUNS, ExperimentSpec

__all__ = ["load_spec", "parse_spec"]


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
        spec = ExperimentSpec.model_validate(data)
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
    n = count_runs(spec)
    if n > MAX_RUNS:
        raise SpecError("runs_per_pair", f"the spec expands to {n} runs (limit {MAX_RUNS})")
    return spec


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
