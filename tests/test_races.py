"""Many processes racing for the same keys, on the file store and on real SeaweedFS.

16 processes (spawned, so each has its own interpreter and its own store client) are
released together by a barrier.  moto is not used here: its conditional writes are not
atomic under concurrent requests.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from s3exp.stores import Store

from . import _race_workers
from .conftest import collect_reports, shared_target

PROCESSES = 16
RESULT_TIMEOUT = 180.0

# Rounds and increments per backend.  A contended key on SeaweedFS can make the losers
# wait a second or more, so it gets fewer.
CREATE_ROUNDS = {"file": 20, "seaweed": 10}
CAS_INCREMENTS = {"file": 10, "seaweed": 5}


def run_processes(target: Callable[..., None], args: tuple[Any, ...]) -> list[Any]:
    """Run ``target(i, *args, barrier, results)`` in PROCESSES spawned processes; return
    what each put on the results queue."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(i, *args, barrier, results), daemon=True)
             for i in range(PROCESSES)]
    return collect_reports(procs, results, RESULT_TIMEOUT)


@pytest.fixture(params=["file", pytest.param("seaweed", marks=pytest.mark.seaweed)])
def race_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str], Store]:
    """(backend, where-for-children, a parent-side store on the same place)."""
    where, store = shared_target(request.param, request, tmp_path, prefix="races")
    return request.param, where, store


def test_create_only_has_exactly_one_winner_per_key(race_target: tuple[str, dict[str, str], Store]) -> None:
    backend, where, store = race_target
    rounds = CREATE_ROUNDS[backend]
    reports = run_processes(_race_workers.create_race, (where, rounds))

    errors = [o for _, outcomes in reports for r, o in outcomes if o.startswith("error")]
    assert not errors, errors[0]
    winners: dict[int, list[int]] = {r: [] for r in range(rounds)}
    for worker, outcomes in reports:
        assert [r for r, _ in outcomes] == list(range(rounds)), f"worker {worker} skipped a round"
        for r, outcome in outcomes:
            assert outcome in ("won", "lost")
            if outcome == "won":
                winners[r].append(worker)
    for r, ws in winners.items():
        assert len(ws) == 1, f"round {r}: winners {ws}"
        # the stored body is the winner's, whole
        assert store.get(f"race/{r:04d}.json").data == f"worker {ws[0]} round {r}".encode()
    assert [m.key for m in store.list("race/")] == [f"race/{r:04d}.json" for r in range(rounds)]


def test_cas_counter_loses_no_update(race_target: tuple[str, dict[str, str], Store]) -> None:
    backend, where, store = race_target
    k = CAS_INCREMENTS[backend]
    store.put_if_absent("counter.json", b"0 initial")
    reports = run_processes(_race_workers.cas_counter, (where, k))

    errors = [e for *_, e in reports if e]
    assert not errors, errors[0]
    final = int(store.get("counter.json").data.split()[0])
    successes = {worker: len(written) for worker, written, _, _ in reports}
    assert final == PROCESSES * k
    assert all(n == k for n in successes.values()), successes
    assert sum(successes.values()) == final
    # Every value from 1 to the total was written exactly once: no two processes both
    # "succeeded" on the same version, and none was skipped.
    written = Counter(v for _, ws, _, _ in reports for v in ws)
    assert sorted(written) == list(range(1, final + 1))
    assert set(written.values()) == {1}
    # and each worker's own writes went up (it never wrote from a stale read)
    for worker, ws, _, _ in reports:
        assert ws == sorted(ws), worker
    # the race was real: somebody lost at least once
    assert sum(c for _, _, c, _ in reports) > 0
