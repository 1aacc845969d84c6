"""Child-process bodies for the metrics tests (test_metrics_*.py).

They run under the multiprocessing "spawn" start method or as ``python -m``, so they live
in an importable module and take only plain values: each child builds its own store.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from typing import Any

from s3exp import compact
from s3exp.runs._worker import Worker

from ._race_workers import open_child_store

NAMES = ("loss", "acc", "lr", "grad_norm", "val_loss")


def values(run_id: str, step: int) -> dict[str, float]:
    """The metric values a test run logs at ``step``: derived from (run, step), so a
    reader can check every value, not just count rows."""
    base = (sum(map(ord, run_id)) % 97) / 97
    return {name: base + step + i / 10 for i, name in enumerate(NAMES)}


def log_worker(index: int, where: dict[str, str], exp: str, max_runs: int, steps: int,
               results: Any) -> None:
    """Drain up to ``max_runs`` runs of ``exp``; each logs ``steps`` steps of 5 metrics
    with ``run.log`` and completes.  Reports (index, run ids, error)."""
    done: list[str] = []
    error = ""
    try:
        store = open_child_store(where)
        for run in Worker(store, exp, max_runs=max_runs, handle_signals=False,
                          worker_id=f"w{index}"):
            with run:
                for step in range(steps):
                    run.log(values(run.run_id, step), step=step)
                run.complete({"loss": values(run.run_id, steps - 1)["loss"]})
            done.append(run.run_id)
    except BaseException:  # noqa: BLE001 - report everything to the parent
        error = traceback.format_exc()
    results.put((index, done, error))


def compactor(index: int, where: dict[str, str], exp: str, until_runs: int, barrier: Any,
              results: Any) -> None:
    """Compact ``exp`` in a loop until the manifest holds ``until_runs`` runs; the first
    commit waits at ``barrier`` for the other compactors.  Reports (index, [report
    dicts], error)."""
    from s3exp.tables._compaction import read_manifest

    reports: list[dict[str, Any]] = []
    error = ""
    held = False

    def hold_first_commit(stage: str) -> None:
        # Every compactor waits, parts written, until all have written theirs: they all
        # read the same manifest, so their commits race for the same generation.
        nonlocal held
        if stage == "parts-written" and not held:
            held = True
            barrier.wait(120)

    try:
        store = open_child_store(where)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            reports.append(compact(store, exp, part_rows=700, inject=hold_first_commit).to_dict())
            if len(read_manifest(store, exp).runs) >= until_runs:
                break
            time.sleep(0.05)
    except BaseException:  # noqa: BLE001 - report everything to the parent
        error = traceback.format_exc()
    results.put((index, reports, error))


def _main() -> None:
    """``python -m tests._metrics_workers KIND WHERE-JSON EXP [ARGS]``: bodies that the
    parent kills with SIGKILL, so they must be real processes it can address."""
    kind, where, exp = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    store = open_child_store(where)
    if kind == "compact-then-die":
        # Die with SIGKILL between writing the parts and committing the manifest.
        def die(stage: str) -> None:
            if stage == "parts-written":
                print("parts-written", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

        compact(store, exp, part_rows=int(sys.argv[4]), inject=die)
        print("survived", flush=True)
    elif kind == "log-then-hang":
        # Claim one run, log STEPS steps, wait until they are staged, say so, then hang
        # until killed.
        steps = int(sys.argv[4])
        for run in Worker(store, exp, max_runs=1, handle_signals=False, worker_id="doomed"):
            with run:
                for step in range(steps):
                    run.log(values(run.run_id, step), step=step)
                deadline = time.monotonic() + 60  # the flusher writes within seconds
                prefix = f"staging/{exp}/{run.run_id}/{run.attempt:04d}/"
                while not list(store.list(prefix)) and time.monotonic() < deadline:
                    time.sleep(0.05)
                print(json.dumps({"run_id": run.run_id, "attempt": run.attempt}), flush=True)
                time.sleep(600)
    else:
        raise SystemExit(f"unknown kind {kind!r}")


if __name__ == "__main__":
    _main()


def no_error(report: tuple[int, Any, str]) -> None:
    """For ``collect_reports``: a child's (index, payload, error) report has no error."""
    assert not report[2], report[2]
