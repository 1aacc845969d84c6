"""Specs: loading both shapes, deterministic expansion, W&B distribution meanings, strict
validation that names the field."""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

import s3exp
from s3exp import SCHEMA_VERSION, SpecError, count_runs, expand, load_spec, parse_spec

from ._specdata import BAD_SPECS, FLAT_GRID, GROUPED, bad_spec, flat, grouped

DATASETS = {"group0": ["dataUID0", "dataUID1", "dataUID2"], "group1": ["dataUID3", "dataUID4", "dataUID5"]}
EXPECTED_PAIRS = (
    {(d, "model0") for d in DATASETS["group0"]}
    | {(d, mg) for d in DATASETS["group1"] for mg in ("model0", "model1")}
)


def flat_spec(parameters: dict[str, Any], runs: int = 1, method: str = "random", **extra: Any) -> s3exp.ExperimentSpec:
    return parse_spec({"name": "flat", "runs_per_pair": runs, "method": method,
                       "parameters": parameters, **extra})


def draws(param: dict[str, Any], n: int = 2000) -> list[Any]:
    """n draws of one parameter (one per replicate of a flat random spec)."""
    return [s.params["x"] for s in expand(flat_spec({"x": param}, runs=n))]


def test_version_and_schema_version_exist() -> None:
    assert isinstance(s3exp.__version__, str) and s3exp.__version__[0].isdigit()
    assert SCHEMA_VERSION == 1
    assert load_spec(GROUPED).schema_version == SCHEMA_VERSION


# -- the grouped example ------------------------------------------------------------


def test_grouped_example_loads_with_string_runs_per_pair() -> None:
    assert json.loads(GROUPED.read_text())["runs_per_pair"] == "10"
    spec = load_spec(GROUPED)
    assert spec.name == "testExp0"
    assert spec.runs_per_pair == 10
    assert spec.is_grouped
    assert spec.definition is not None
    assert spec.definition.data_groups == DATASETS
    assert count_runs(spec) == 90


def test_grouped_expands_to_90_runs_over_9_pairs() -> None:
    slots = expand(load_spec(GROUPED))
    assert len(slots) == 90
    assert [s.index for s in slots] == list(range(90))
    pairs = Counter((s.dataset, s.model_group) for s in slots)
    assert set(pairs) == EXPECTED_PAIRS
    assert set(pairs.values()) == {10}
    for pair in EXPECTED_PAIRS:
        reps = sorted(s.replicate for s in slots if (s.dataset, s.model_group) == pair)
        assert reps == list(range(10))
    models = {s.model_group: s.model for s in slots}
    assert models == {"model0": "modelUID0", "model1": "modelUID1"}


def test_replicate_order_fewest_started_first() -> None:
    slots = expand(load_spec(GROUPED))
    replicates = [s.replicate for s in slots]
    assert replicates == sorted(replicates)
    # every pair's replicate r comes before any pair's replicate r + 1
    assert {(s.dataset, s.model_group) for s in slots[:9]} == EXPECTED_PAIRS
    for r in range(10):
        assert {s.replicate for s in slots[9 * r: 9 * r + 9]} == {r}


def test_run_ids_unique_readable_and_stable() -> None:
    slots = expand(load_spec(GROUPED))
    ids = [s.run_id for s in slots]
    assert len(set(ids)) == 90
    for s in slots:
        assert s.run_id == f"{s.dataset}__{s.model_group}__r{s.replicate:02d}"
    # pinned: run ids name stored objects, so they must not change between versions
    assert ids[0] == "dataUID0__model0__r00"
    assert ids[-1] == "dataUID5__model1__r09"
    assert [s.to_dict() for s in expand(load_spec(GROUPED))] == [s.to_dict() for s in slots]


def test_run_ids_sort_in_replicate_order_with_zero_padding() -> None:
    spec = flat_spec({"x": {"value": 1}}, runs=12)
    ids = [s.run_id for s in expand(spec)]
    assert ids[:3] == ["r00", "r01", "r02"] and ids[-1] == "r11"
    assert ids == sorted(ids)


def test_grouped_params_follow_wandb_meanings() -> None:
    slots = expand(load_spec(GROUPED))
    lo, hi = math.exp(0.0), math.exp(2.5)
    for s in slots:
        if s.model_group == "model0":
            assert set(s.params) == {"learning_rate", "layers"}
            assert isinstance(s.params["layers"], int) and 0 <= s.params["layers"] <= 2
        else:
            assert set(s.params) == {"learning_rate"}
        assert lo <= s.params["learning_rate"] <= hi
    lrs = [s.params["learning_rate"] for s in slots]
    # log_uniform min/max are exponents: values reach well past 2.5
    assert max(lrs) > 2.5
    # int_uniform includes both ends
    assert {s.params["layers"] for s in slots if s.model_group == "model0"} == {0, 1, 2}


def test_pinned_params_of_the_grouped_example() -> None:
    """Parameters on any machine and any version are these; a change would silently give
    a resumed experiment different runs."""
    spec = load_spec(GROUPED)
    assert spec.spec_hash == "e37c705977c1ffd36a5725b543d8c42d0a0101159dc641455b4d96fcfdc4ad31"
    assert spec.space_hash == "5d928cc3459444fb629e16c0d0e9e07e860e1896a8d38a5c7398b1be33142d82"
    slots = expand(spec)
    assert slots[0].params == {"layers": 1, "learning_rate": pytest.approx(1.1025707076178195, rel=1e-12)}
    assert slots[89].params == {"learning_rate": pytest.approx(6.650214930605283, rel=1e-12)}


def test_shared_dataset_is_paired_once() -> None:
    d = grouped()
    d["definition"]["data_groups"] = {"a": ["d1", "d2"], "b": ["d2", "d3"]}
    d["definition"]["applications"] = {"a": ["model0"], "b": ["model0", "model1"]}
    d["runs_per_pair"] = 1
    slots = expand(parse_spec(d))
    pairs = [(s.dataset, s.model_group) for s in slots]
    assert len(pairs) == len(set(pairs)) == 5
    assert count_runs(parse_spec(d)) == 5


# -- determinism across processes ---------------------------------------------------


_EXPAND_SCRIPT = ("import json, sys; from s3exp import expand, load_spec; "
                  "print(json.dumps([s.to_dict() for s in expand(load_spec(sys.argv[1]))]))")


def _expand_in_subprocess(path: Path, hashseed: str) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    out = subprocess.run([sys.executable, "-c", _EXPAND_SCRIPT, str(path)], env=env,
                         capture_output=True, text=True, check=True, timeout=60)
    return list(json.loads(out.stdout))


@pytest.mark.parametrize("path", [GROUPED, FLAT_GRID], ids=["grouped", "flat_grid"])
def test_expansion_identical_in_separate_processes(path: Path) -> None:
    # Different hash seeds: nothing may depend on set or dict-of-str iteration order.
    a = _expand_in_subprocess(path, "1")
    b = _expand_in_subprocess(path, "2")
    assert a == b
    here = json.loads(json.dumps([s.to_dict() for s in expand(load_spec(path))]))
    assert a == here
    assert len(a) == count_runs(load_spec(path))


# -- what changes the params and what does not -----------------------------------------


@pytest.mark.parametrize("change", [
    {"priority": 5}, {"description": "now with words"}, {"lease_seconds": 300},
    {"max_attempts": 7}, {"metric": {"name": "acc", "goal": "maximize"}}, {"name": "testExp1"},
])
def test_operational_changes_keep_the_params(change: dict[str, Any]) -> None:
    base = parse_spec(grouped())
    changed = parse_spec(grouped() | change)
    assert changed.spec_hash != base.spec_hash
    assert changed.space_hash == base.space_hash
    assert [s.to_dict() for s in expand(changed)] == [s.to_dict() for s in expand(base)]


def test_seed_changes_the_params_but_not_the_slots() -> None:
    base = expand(parse_spec(grouped()))
    reseeded_spec = parse_spec(grouped() | {"seed": 1})
    assert reseeded_spec.space_hash != parse_spec(grouped()).space_hash
    reseeded = expand(reseeded_spec)
    assert [s.run_id for s in reseeded] == [s.run_id for s in base]
    lr_base = [s.params["learning_rate"] for s in base]
    lr_new = [s.params["learning_rate"] for s in reseeded]
    assert sum(a != b for a, b in zip(lr_base, lr_new, strict=True)) == 90


def test_each_run_gets_its_own_draw() -> None:
    lrs = [s.params["learning_rate"] for s in expand(load_spec(GROUPED))]
    assert len(set(lrs)) == 90


def test_spec_hash_is_stable_and_canonical(tmp_path: Path) -> None:
    spec = load_spec(GROUPED)
    assert len(spec.spec_hash) == 64 and int(spec.spec_hash, 16) >= 0
    # key order, whitespace, "10" versus 10, and YAML versus JSON do not matter
    d = grouped()
    reordered = dict(reversed(list(d.items())))
    reordered["runs_per_pair"] = 10
    assert parse_spec(reordered).spec_hash == spec.spec_hash
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(d, sort_keys=True))
    assert load_spec(tmp_path / "g.yaml").spec_hash == spec.spec_hash
    # writing the defaults out explicitly is the same spec
    explicit = grouped() | {"schema_version": 1, "seed": 0, "priority": 0, "method": "random"}
    assert parse_spec(explicit).spec_hash == spec.spec_hash
    # but a real change is not
    changed = grouped()
    changed["definition"]["data_groups"]["group0"].append("dataUID9")
    assert parse_spec(changed).spec_hash != spec.spec_hash
    assert parse_spec(changed).space_hash != spec.space_hash


def test_stored_form_round_trips() -> None:
    spec = load_spec(GROUPED)
    again = parse_spec(json.loads(json.dumps(spec.normalized())))
    assert again == spec
    assert again.spec_hash == spec.spec_hash


# -- the flat shape ------------------------------------------------------------------


def test_flat_grid_example() -> None:
    spec = load_spec(FLAT_GRID)
    assert not spec.is_grouped
    slots = expand(spec)
    assert len(slots) == count_runs(spec) == 3 * 2 * 2
    points = [(s.params["learning_rate"], s.params["batch_size"]) for s in slots]
    product = {(lr, bs) for lr in (0.1, 0.01, 0.001) for bs in (32, 64)}
    # the whole cartesian product, once per replicate, replicate 0 first
    assert set(points[:6]) == product and set(points[6:]) == product
    assert [s.replicate for s in slots] == [0] * 6 + [1] * 6
    assert [s.grid_index for s in slots] == list(range(6)) * 2
    assert all(s.dataset is None and s.model is None for s in slots)
    assert all(s.params["optimizer"] == "adam" for s in slots)
    wds = [s.params["weight_decay"] for s in slots]
    assert all(1e-6 <= w <= 1e-2 for w in wds)
    assert len(set(wds)) == 12  # drawn per run, not per grid point
    assert [s.run_id for s in slots][:2] == ["g00__r00", "g01__r00"]
    assert len({s.run_id for s in slots}) == 12


def test_grid_distribution_enumerates_in_random_method() -> None:
    spec = flat_spec({"a": {"distribution": "grid", "values": [1, 2, 3]},
                      "b": {"distribution": "grid", "values": ["x", "y"]},
                      "c": {"values": ["p", "q"]}}, runs=3)
    slots = expand(spec)
    assert len(slots) == 18 == count_runs(spec)
    for r in range(3):
        cell = [(s.params["a"], s.params["b"]) for s in slots if s.replicate == r]
        assert sorted(cell) == sorted((a, b) for a in (1, 2, 3) for b in ("x", "y"))
    # under method=random, plain "values" is categorical (drawn), not enumerated
    assert {s.params["c"] for s in slots} <= {"p", "q"}


def test_grid_inside_a_model_group() -> None:
    d = grouped()
    d["definition"]["model_groups"]["model1"]["hype"]["depth"] = {"distribution": "grid", "values": [2, 4]}
    spec = parse_spec(d)
    slots = expand(spec)
    assert len(slots) == count_runs(spec) == (6 + 3 * 2) * 10
    m1 = [s for s in slots if s.model_group == "model1"]
    assert Counter(s.params["depth"] for s in m1) == {2: 30, 4: 30}
    assert "dataUID3__model1__g00__r00" in {s.run_id for s in m1}


# -- distributions -------------------------------------------------------------------


def test_uniform() -> None:
    xs = draws({"distribution": "uniform", "min": 2.0, "max": 3.0})
    assert all(isinstance(x, float) and 2.0 <= x <= 3.0 for x in xs)
    assert 2.45 < statistics.fmean(xs) < 2.55


def test_int_uniform_is_inclusive() -> None:
    xs = draws({"distribution": "int_uniform", "min": -2, "max": 2})
    assert all(type(x) is int for x in xs)
    assert set(xs) == {-2, -1, 0, 1, 2}


def test_log_uniform_takes_natural_log_exponents() -> None:
    xs = draws({"distribution": "log_uniform", "min": -1.0, "max": 1.0})
    assert all(math.exp(-1) <= x <= math.exp(1) for x in xs)
    logs = [math.log(x) for x in xs]
    assert min(logs) < -0.9 and max(logs) > 0.9
    assert -0.05 < statistics.fmean(logs) < 0.05  # uniform in the exponent


def test_log_uniform_values_takes_values() -> None:
    xs = draws({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1})
    assert all(1e-4 <= x <= 1e-1 for x in xs)
    # log-uniform: each decade holds about a third of the draws (uniform would put ~1%
    # below 1e-3)
    below = sum(x < 1e-3 for x in xs) / len(xs)
    assert 0.28 < below < 0.39


def test_q_uniform_gives_multiples_of_q() -> None:
    xs = draws({"distribution": "q_uniform", "min": 0.0, "max": 10.0, "q": 2.5})
    assert all(0 <= x <= 10 for x in xs)
    assert all(math.isclose(x / 2.5, round(x / 2.5), abs_tol=1e-9) for x in xs)
    assert set(xs) == {0.0, 2.5, 5.0, 7.5, 10.0}
    ints = draws({"distribution": "q_uniform", "min": 0, "max": 100, "q": 10}, n=300)
    assert all(type(x) is int and x % 10 == 0 for x in ints)


def test_normal() -> None:
    xs = draws({"distribution": "normal", "mu": 5.0, "sigma": 0.1})
    assert abs(statistics.fmean(xs) - 5.0) < 0.02
    assert 0.09 < statistics.stdev(xs) < 0.11
    assert min(xs) < 4.85 and max(xs) > 5.15  # unbounded, unlike a uniform


def test_values_and_value() -> None:
    xs = draws({"values": ["sgd", "adam", 3]}, n=300)
    assert set(xs) == {"sgd", "adam", 3}
    assert draws({"value": {"nested": [1, 2]}}, n=3) == [{"nested": [1, 2]}] * 3
    assert draws({"distribution": "constant", "value": 0.5}, n=2) == [0.5, 0.5]


def test_distribution_inferred_as_wandb_does() -> None:
    assert set(draws({"min": 1, "max": 3}, n=200)) == {1, 2, 3}
    floats = draws({"min": 0.0, "max": 1.0}, n=50)
    assert all(isinstance(x, float) for x in floats) and len(set(floats)) == 50


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize("mutation, field", [pytest.param(m, f, id=i) for i, m, f in BAD_SPECS])
def test_bad_spec_names_the_field(mutation: Any, field: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_spec(bad_spec(mutation))
    assert e.value.field == field
    assert str(e.value).startswith(f"{field}: ")


def test_names_at_the_limit_and_with_allowed_characters_are_fine() -> None:
    d = grouped()
    d["name"] = "e" * 128
    d["definition"]["data_groups"]["group0"] = ["ds-1.v2+a@b:c", "D_2", "3"]
    d["definition"]["model_groups"]["model0"]["model"] = "m" * 128
    spec = parse_spec(d)
    assert spec.name == "e" * 128
    assert "ds-1.v2+a@b:c__model0__r00" in {s.run_id for s in expand(spec)}


def test_multibyte_name_limit_is_in_bytes() -> None:
    d = grouped()
    d["name"] = "é" * 65  # 65 characters, 130 bytes
    with pytest.raises(SpecError) as e:
        parse_spec(d)
    assert e.value.field == "name"


def test_spec_must_be_an_object() -> None:
    with pytest.raises(SpecError):
        parse_spec([grouped()])


@pytest.mark.parametrize("name, text", [
    ("bad.json", '{"name": "x", "runs_per_pair": 2,'),
    ("nan.json", '{"name": "x", "parameters": {"a": {"min": NaN, "max": 1.0}}}'),
    ("bad.yaml", "name: [unclosed\n  parameters: {"),
    ("inf.yaml", "name: x\nparameters:\n  a: {min: 0.0, max: .inf}\n"),
    ("list.json", "[1, 2]"),
])
def test_unreadable_spec_files(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError):
        load_spec(tmp_path / name)


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.json")


def test_yaml_spec(tmp_path: Path) -> None:
    (tmp_path / "f.yml").write_text(yaml.safe_dump(flat()))
    assert load_spec(tmp_path / "f.yml").spec_hash == load_spec(FLAT_GRID).spec_hash


def test_bad_specs_table_is_really_bad_one_by_one() -> None:
    """Guard the table itself: the unmutated example is valid, so each failure above comes
    from its own mutation."""
    parse_spec(copy.deepcopy(grouped()))
    assert len(BAD_SPECS) >= 12
