"""The chaos checker finds what it claims to find (fast, on the memory store).

A clean experiment passes; each kind of damage the checker exists to catch is then done to
a copy of the same state, and must be reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import s3exp
from s3exp.bucket import keys
from s3exp.specs._models import ExperimentSpec
from s3exp.stores import MemoryStore
from s3exp.tables._compaction import read_manifest

from ._chaos_procs import LedgerStore
from .checker import check

EXP = "checked"
STEPS = 3


def _state(tmp_path: Path) -> tuple[MemoryStore, ExperimentSpec, Path]:
    store = MemoryStore()
    spec = s3exp.parse_spec({"name": EXP, "runs_per_pair": 3,
                             "parameters": {"lr": {"min": 0.1, "max": 0.2}}})
    s3exp.submit(store, spec)
    ledger = tmp_path / "w.jsonl"
    wrapped = LedgerStore(store, ledger, "w")
    for run in s3exp.Worker(wrapped, EXP, wait=False, handle_signals=False):
        with run, wrapped.body(run):
            for step in range(STEPS):
                run.log({"loss": float(step)}, step=step)
    s3exp.compact(store, EXP)
    return store, spec, ledger


def _lines(ledger: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in ledger.read_text().splitlines()]


def _overlap(store: MemoryStore, ledger: Path) -> None:
    first = next(x for x in _lines(ledger) if x["kind"] == "lease")
    # attempt 2 "took" the lease before attempt 1's claim was even written
    fake = {**first, "attempt": 2, "token": "t2", "t": float(first["t"]) - 1}  # type: ignore[arg-type]
    with open(ledger, "a") as f:
        f.write(json.dumps(fake) + "\n")


def _two_tokens(store: MemoryStore, ledger: Path) -> None:
    first = next(x for x in _lines(ledger) if x["kind"] == "lease")
    with open(ledger, "a") as f:
        f.write(json.dumps({**first, "token": "someone-else"}) + "\n")


def _first_run(store: MemoryStore) -> str:
    return sorted(read_manifest(store, EXP).runs)[0]


def _lost_result(store: MemoryStore, ledger: Path) -> None:
    key = keys.result(EXP, _first_run(store), 1)
    store.delete_if_match(key, store.head(key).etag)


def _second_commit(store: MemoryStore, ledger: Path) -> None:
    rid = _first_run(store)
    body = json.loads(store.get(keys.result(EXP, rid, 1)).data)
    store.put_if_absent(keys.result(EXP, rid, 2), json.dumps({**body, "attempt": 2}).encode())


def _unsealed_predecessor(store: MemoryStore, ledger: Path) -> None:
    """Attempt 2 "won" although attempt 1 was never fenced out."""
    rid = _first_run(store)
    key = keys.result(EXP, rid, 1)
    body = json.loads(store.get(key).data)
    store.delete_if_match(key, store.head(key).etag)
    store.put_if_absent(keys.result(EXP, rid, 2), json.dumps({**body, "attempt": 2}).encode())


def _later_holder(store: MemoryStore, ledger: Path) -> None:
    first = next(x for x in _lines(ledger) if x["kind"] == "lease")
    later = {**first, "attempt": 2, "token": "t2", "t": float(first["t"]) + 100}  # type: ignore[arg-type]
    with open(ledger, "a") as f:
        f.write(json.dumps(later) + "\n")


def _bodies_overlap(store: MemoryStore, ledger: Path) -> None:
    """Attempt 1's body went on for 5 s; attempt 2's ran from 1 s to 4 s in another process."""
    begin = next(x for x in _lines(ledger) if x["kind"] == "begin")
    t = float(begin["t"])  # type: ignore[arg-type]
    late_end = {**begin, "kind": "end", "t": t + 5}
    other = [{**begin, "kind": kind, "attempt": 2, "pid": 1, "t": t + at}
             for kind, at in (("begin", 1.0), ("end", 4.0))]
    with open(ledger, "a") as f:
        for line in (late_end, *other):
            f.write(json.dumps(line) + "\n")


def _duplicated_part(store: MemoryStore, ledger: Path) -> None:
    part = next(m for m in store.list(keys.table_prefix("metrics", EXP)))
    store.put_if_absent(part.key.replace("part-", "part-copy-"), store.get(part.key).data)


def _orphan(store: MemoryStore, ledger: Path) -> None:
    store.put_if_absent(keys.pending_part(EXP, "deadbeef", 0), b"x")


def _empty_error(store: MemoryStore, ledger: Path) -> None:
    rid = _first_run(store)
    store.put_if_absent(keys.error(EXP, rid, 7), json.dumps(
        {"run_id": rid, "attempt": 7, "reason": "exception", "error": ""}).encode())


def _unledgered_winner(store: MemoryStore, ledger: Path) -> None:
    ledger.write_text("".join(json.dumps(x) + "\n" for x in _lines(ledger)
                              if x["run_id"] != sorted(read_manifest(store, EXP).runs)[0]))


DAMAGE: dict[str, tuple[Callable[[MemoryStore, Path], None], str]] = {
    "overlap": (_overlap, "took it at"),
    "two executions": (_two_tokens, "several executions"),
    "lost result": (_lost_result, "0 committed results"),
    "second commit": (_second_commit, "2 committed results"),
    "unsealed predecessor": (_unsealed_predecessor, "never sealed"),
    "later holder": (_later_holder, "later attempts"),
    "bodies overlap": (_bodies_overlap, "body executed"),
    "duplicated part": (_duplicated_part, "more than once"),
    "orphan": (_orphan, "pending parts left"),
    "empty error": (_empty_error, "no traceback or reason"),
    "winner never held": (_unledgered_winner, "no lease write in any ledger"),
}


def test_clean_state_passes(tmp_path: Path) -> None:
    store, spec, ledger = _state(tmp_path)
    report = check(store, spec, [ledger], STEPS)
    assert report.violations == []
    assert (report.results, report.metric_rows, report.attempts_seen) == (3, 3 * STEPS, 3)
    assert report.bodies == 3 and report.max_overlap_s == 0.0


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damage_is_reported(tmp_path: Path, damage: str) -> None:
    store, spec, ledger = _state(tmp_path)
    do, expect = DAMAGE[damage]
    do(store, ledger)
    report = check(store, spec, [ledger], STEPS)
    assert any(expect in v for v in report.violations), report.violations


def test_time_a_zombie_spent_stopped_is_not_execution(tmp_path: Path) -> None:
    """The overlap of "bodies overlap" happens while attempt 1's process is SIGSTOPped
    (its pid in the harness's signal log): that is not execution, so no violation; a
    SIGKILL before the late end cuts its body there."""
    store, spec, ledger = _state(tmp_path)
    _bodies_overlap(store, ledger)
    begin = next(x for x in _lines(ledger) if x["kind"] == "begin")
    t, pid = float(begin["t"]), begin["pid"]  # type: ignore[arg-type]
    stopped = [{"pid": pid, "sig": "STOP", "t": t + 0.5}, {"pid": pid, "sig": "CONT", "t": t + 4.5}]
    assert check(store, spec, [ledger], STEPS, signals=stopped).violations == []
    killed = [{"pid": pid, "sig": "KILL", "t": t + 0.5}]
    assert check(store, spec, [ledger], STEPS, signals=killed).violations == []
    late_kill = [{"pid": pid, "sig": "KILL", "t": t + 3.0}]
    report = check(store, spec, [ledger], STEPS, signals=late_kill)
    assert any("body executed 2.000s" in v for v in report.violations), report.violations
