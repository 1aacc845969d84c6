"""Which run a worker takes: sticky datasets, experiment priority, pause and resume.

Single-process logic on the in-memory store (no concurrency is claimed here; the races
are in test_runs_race.py against real processes).
"""

from __future__ import annotations

import s3exp
from s3exp import MemoryStore, Worker

DATASETS = ["d0", "d1", "d2"]


def _submit(store: MemoryStore, name: str, runs_per_pair: int = 4, priority: int = 0) -> None:
    s3exp.submit(store, s3exp.parse_spec({
        "name": name, "runs_per_pair": runs_per_pair, "priority": priority,
        "definition": {"data_groups": {"g": DATASETS},
                       "model_groups": {"m": {"model": "sgd", "hype": {
                           "lr": {"distribution": "uniform", "min": 0.0, "max": 1.0}}}},
                       "applications": {"g": ["m"]}}}))


def _drain(worker: Worker) -> list[tuple[str, str | None]]:
    """(experiment, dataset) of every run the worker took, in order."""
    taken = []
    for run in worker:
        with run:
            taken.append((run.experiment, run.dataset))
    return taken


def _switches(datasets: list[str | None]) -> int:
    return sum(1 for a, b in zip(datasets, datasets[1:], strict=False) if a != b)


def test_sticky_dataset_stays_on_the_loaded_dataset_until_it_runs_out() -> None:
    store = MemoryStore()
    _submit(store, "e")
    sticky = [d for _, d in _drain(Worker(store, "e", sticky_dataset=True, wait=False,
                                          handle_signals=False, cost_seconds=None))]
    assert sorted(sticky) == sorted(DATASETS * 4)
    assert _switches(sticky) == len(DATASETS) - 1  # one block per dataset

    # Without it, slots come replicate-major: the dataset changes with almost every run.
    plain_store = MemoryStore()
    _submit(plain_store, "e")
    plain = [d for _, d in _drain(Worker(plain_store, "e", wait=False, handle_signals=False,
                                         cost_seconds=None, window=1))]
    assert _switches(plain) > len(DATASETS) - 1


def test_higher_priority_experiment_is_served_first() -> None:
    store = MemoryStore()
    _submit(store, "low", runs_per_pair=2, priority=1)
    _submit(store, "high", runs_per_pair=2, priority=5)
    taken = [e for e, _ in _drain(Worker(store, ["low", "high"], wait=False,
                                         handle_signals=False, cost_seconds=None))]
    assert taken == ["high"] * 6 + ["low"] * 6


def test_pause_stops_claims_and_resume_lets_them_go_on() -> None:
    store = MemoryStore()
    _submit(store, "e", runs_per_pair=1)
    s3exp.set_control(store, "e", "paused")
    assert _drain(Worker(store, "e", wait=False, handle_signals=False, cost_seconds=None)) == []
    assert s3exp.experiment_status(store, "e").counts["pending"] == 3

    s3exp.set_control(store, "e", "active")
    assert len(_drain(Worker(store, "e", wait=False, handle_signals=False, cost_seconds=None))) == 3
    assert s3exp.experiment_status(store, "e").counts["done"] == 3
