"""Guarantee 1 under a real race: 16 worker processes drain a 400-run experiment.

Every worker is a separate interpreter using the public ``s3exp.Worker`` API against a real
SeaweedFS server, and again against the file store (moto is never used for concurrency:
its conditional writes are not atomic).  The workers are released together by a gate
file.  The verdict comes from the store's own records: every run has exactly one lease
that was never taken over (attempt 1, no error or interrupt records) and a result written
by that lease's holder.  An independent ledger, one file per worker, shows that no run's
body was executed twice.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

import s3exp
from s3exp.specs._expansion import expand
from s3exp.stores import Store

from . import _run_workers as rw
from .conftest import shared_target

WORKERS = 16
RUNS = 400
MAX_SLEEP_MS = 50
EXP = "race"


@pytest.fixture(params=["file", pytest.param("seaweed", marks=pytest.mark.seaweed)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[rw.Where, Store]:
    """(where-for-children, a parent-side store on the same place)."""
    return shared_target(request.param, request, tmp_path)


def test_16_workers_drain_400_runs_each_exactly_once(target: tuple[rw.Where, Store],
                                                     tmp_path: Path) -> None:
    where, store = target
    spec = s3exp.parse_spec({"name": EXP, "runs_per_pair": RUNS,
                             "parameters": {"x": {"min": 0.0, "max": 1.0}}})
    s3exp.submit(store, spec)
    run_ids = [s.run_id for s in expand(spec)]
    assert len(run_ids) == RUNS

    logs = tmp_path / "logs"
    logs.mkdir()
    gate = tmp_path / "go"
    procs = [rw.start_worker(where, EXP, f"w{i:02d}", logs,
                             {"kind": "sleep", "max_ms": MAX_SLEEP_MS},
                             ledger=str(logs / f"w{i:02d}.ledger"), gate=str(gate),
                             ready=str(logs / f"w{i:02d}.ready"), poll_seconds=0.5)
             for i in range(WORKERS)]
    try:
        rw.wait_until("every worker to be ready",
                      lambda: all((logs / f"w{i:02d}.ready").exists() for i in range(WORKERS)),
                      timeout=90)
        t0 = time.monotonic()
        gate.touch()
        codes = [p.wait(timeout=150) for p in procs]
        drain_s = time.monotonic() - t0
    finally:
        for p in procs:
            p.kill()
    reports = [p.report() for p in procs]
    assert codes == [0] * WORKERS, [p.stderr()[-2000:] for p in procs if p.popen.returncode]

    # -- the store's own records --------------------------------------------------------
    by_run: dict[str, set[str]] = {}
    for m in store.list(f"runs/{EXP}/"):
        run_id, _, name = m.key[len(f"runs/{EXP}/"):].partition("/")
        by_run.setdefault(run_id, set()).add(name)
    assert sorted(by_run) == sorted(run_ids)
    extra = {r: names for r, names in by_run.items() if names != {"lease.json", "result-0001.json"}}
    assert not extra, f"runs with other records than one lease and one result: {extra}"

    holder: dict[str, tuple[str, str]] = {}
    for run_id in run_ids:
        lease = rw.read_lease(store, EXP, run_id)
        result = rw.read_json(store, f"runs/{EXP}/{run_id}/result-0001.json")
        assert lease is not None and result is not None
        # attempt 1 and no takeover: the one create-only claim was the only lease ever held
        assert (lease.state, lease.attempt, lease.failures) == ("running", 1, 0), lease
        assert result["attempt"] == 1 and result["status"] == "done"
        # the result was written by the lease's holder, in the execution that held it
        assert result["token"] == lease.token, run_id
        assert result["worker"] == lease.worker.id
        assert result["metrics"]["worker"] == lease.worker.id
        holder[run_id] = (lease.worker.id, lease.token)

    # -- the independent ledger: no body ran twice --------------------------------------
    executions: list[tuple[str, str, int, str, float, float]] = []
    for i in range(WORKERS):
        path = logs / f"w{i:02d}.ledger"
        for line in path.read_text().splitlines() if path.exists() else []:
            run_id, n, token, start, end = line.split()
            executions.append((f"w{i:02d}", run_id, int(n), token, float(start), float(end)))
    counts = Counter(e[1] for e in executions)
    twice = {r: n for r, n in counts.items() if n > 1}
    assert not twice, f"runs executed more than once: {twice}"
    assert set(counts) == set(run_ids)
    for worker_id, run_id, attempt, token, _, _ in executions:
        assert (worker_id, token) == holder[run_id], run_id
        assert attempt == 1

    # -- the workers agree, and the race was real ----------------------------------------
    stats = [r["stats"] for r in reports]
    assert sum(s["claimed"] for s in stats) == RUNS
    assert sum(s["completed"] for s in stats) == RUNS
    assert sum(s["failed"] + s["lost"] + s["interrupted"] for s in stats) == 0
    busy = [s for s in stats if s["completed"]]
    assert len(busy) >= WORKERS // 2, f"only {len(busy)} workers did any work"
    # at some moment many bodies were running at once
    edges = sorted([(e[4], 1) for e in executions] + [(e[5], -1) for e in executions])
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    assert peak >= 4, f"at most {peak} runs executed at once: no real race"
    print(f"{where['kind']}: drained {RUNS} runs with {WORKERS} workers in {drain_s:.1f}s, "
          f"{len(busy)} busy, peak concurrency {peak}")
