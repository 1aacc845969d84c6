"""Spec fixtures shared by test_specs.py and test_cli.py: the examples and a table of
malformed specs, each with the field path its error must name."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GROUPED = EXAMPLES / "grouped.json"
FLAT_GRID = EXAMPLES / "flat_grid.json"

Spec = dict[str, Any]


def grouped() -> Spec:
    """A fresh copy of examples/grouped.json as a dict."""
    return dict(json.loads(GROUPED.read_text()))


def flat() -> Spec:
    return dict(json.loads(FLAT_GRID.read_text()))


def _hype(d: Spec, group: str = "model0") -> dict[str, Any]:
    return d["definition"]["model_groups"][group]["hype"]  # type: ignore[no-any-return]


def _set(path: str, value: Any) -> Callable[[Spec], None]:
    """A mutation that sets the dotted ``path`` (list indices as numbers) to ``value``."""

    def mutate(d: Spec) -> None:
        *parents, last = path.split(".")
        node: Any = d
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _rename(path: str, old: str, new: str) -> Callable[[Spec], None]:
    """A mutation that renames the key ``old`` of the mapping at ``path`` (and, for groups,
    every reference to it in ``applications``)."""

    def mutate(d: Spec) -> None:
        node: Any = d
        for p in path.split("."):
            node = node[p]
        node[new] = node.pop(old)
        apps = d["definition"]["applications"]
        if path == "definition.data_groups" and old in apps:
            apps[new] = apps.pop(old)
        if path == "definition.model_groups":
            for k, v in apps.items():
                apps[k] = [new if x == old else x for x in v]

    return mutate


def _pop(key: str) -> Callable[[Spec], None]:
    return lambda d: d.pop(key)


MG0 = "definition.model_groups.model0"
LR = f"{MG0}.hype.learning_rate"

# (id, mutation of grouped.json, the field path the error must name)
BAD_SPECS: list[tuple[str, Callable[[Spec], None], str]] = [
    ("unknown-distribution", _set(f"{LR}.distribution", "loguniform"), f"{LR}.distribution"),
    ("min-gt-max", _set(f"{LR}.min", 3.0), LR),
    ("int-min-gt-max", _set(f"{MG0}.hype.layers", {"distribution": "int_uniform", "min": 5, "max": 2}),
     f"{MG0}.hype.layers"),
    ("log-uniform-values-min-zero",
     _set(f"{MG0}.hype.wd", {"distribution": "log_uniform_values", "min": 0, "max": 0.1}), f"{MG0}.hype.wd"),
    ("log-uniform-values-min-negative",
     _set(f"{MG0}.hype.wd", {"distribution": "log_uniform_values", "min": -1e-3, "max": 0.1}),
     f"{MG0}.hype.wd"),
    ("unknown-field-in-param", _set(f"{LR}.mn", 0.0), f"{LR}.mn"),
    ("applications-unknown-data-group", _set("definition.applications.group9", ["model0"]),
     "definition.applications.group9"),
    ("applications-unknown-model-group", _set("definition.applications.group1", ["model0", "model7"]),
     "definition.applications.group1.1"),
    ("empty-data-group", _set("definition.data_groups.group0", []), "definition.data_groups.group0"),
    ("duplicate-dataset", _set("definition.data_groups.group1", ["dataUID3", "dataUID4", "dataUID3"]),
     "definition.data_groups.group1.2"),
    ("name-slash", _set("name", "test/Exp0"), "name"),
    ("name-dotdot", _set("name", "test..Exp0"), "name"),
    ("name-newline", _set("name", "testExp0\nrm -rf"), "name"),
    ("name-control", _set("name", "test\x1bExp0"), "name"),
    ("name-leading-dot", _set("name", ".testExp0"), "name"),
    ("name-too-long", _set("name", "e" * 129), "name"),
    ("name-empty", _set("name", ""), "name"),
    ("data-group-slash", _rename("definition.data_groups", "group0", "group/0"),
     "definition.data_groups.group/0"),
    ("data-group-dotdot", _rename("definition.data_groups", "group0", ".."), "definition.data_groups..."),
    ("dataset-dotdot", _set("definition.data_groups.group0.1", "../dataUID1"), "definition.data_groups.group0.1"),
    ("dataset-leading-dot", _set("definition.data_groups.group0.0", ".dataUID0"),
     "definition.data_groups.group0.0"),
    ("dataset-control", _set("definition.data_groups.group0.2", "data\tUID2"), "definition.data_groups.group0.2"),
    ("dataset-too-long", _set("definition.data_groups.group1.0", "d" * 129), "definition.data_groups.group1.0"),
    ("model-group-slash", _rename("definition.model_groups", "model1", "model/1"),
     "definition.model_groups.model/1"),
    ("model-group-leading-dot", _rename("definition.model_groups", "model1", ".model1"),
     "definition.model_groups..model1"),
    ("model-slash", _set(f"{MG0}.model", "models/UID0"), f"{MG0}.model"),
    ("model-control", _set(f"{MG0}.model", "model\x00UID0"), f"{MG0}.model"),
    ("model-too-long", _set(f"{MG0}.model", "m" * 129), f"{MG0}.model"),
    ("both-shapes", _set("parameters", {"x": {"value": 1}}), "definition"),
    ("neither-shape", _pop("definition"), "definition"),
    ("unknown-top-level-field", _set("runs_per_pairs", 3), "runs_per_pairs"),
    ("runs-per-pair-zero", _set("runs_per_pair", 0), "runs_per_pair"),
    ("runs-per-pair-abc", _set("runs_per_pair", "abc"), "runs_per_pair"),
    ("runs-per-pair-negative", _set("runs_per_pair", -3), "runs_per_pair"),
    ("runs-per-pair-fraction", _set("runs_per_pair", 2.5), "runs_per_pair"),
    ("schema-version-unknown", _set("schema_version", 99), "schema_version"),
    ("missing-name", _pop("name"), "name"),
]


def bad_spec(mutation: Callable[[Spec], None]) -> Spec:
    d = copy.deepcopy(grouped())
    mutation(d)
    return d
