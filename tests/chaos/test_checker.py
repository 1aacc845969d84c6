"""The chaos checker finds what it claims to find (fast, on the memory store).

A clean experiment passes; each kind of damage the checker exists to catch is then done to
a copy of the same state, and must be reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import s3exp
from s3exp import _keys
from s3exp._compaction import read_manifest
from s3exp._specs import ExperimentSpec
from s3exp.stores import MemoryStore

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
        with run:
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


def _lost_result(store: MemoryStore, ledger: Path) -> None:
    rid = sorted(read_manifest(store, EXP).runs)[0]
    key = _keys.result(EXP, rid)
    store.delete_if_match(key, store.head(key).etag)


def _duplicated_part(store: MemoryStore, ledger: Path) -> None:
    part = next(m for m in store.list(_keys.table_prefix("metrics", EXP)))
    store.put_if_absent(part.key.replace("part-", "part-copy-"), store.get(part.key).data)


def _orphan(store: MemoryStore, ledger: Path) -> None:
    store.put_if_absent(_keys.pending_part(EXP, "deadbeef", 0), b"x")


def _empty_error(store: MemoryStore, ledger: Path) -> None:
    rid = sorted(read_manifest(store, EXP).runs)[0]
    store.put_if_absent(_keys.error(EXP, rid, 7), json.dumps(
        {"run_id": rid, "attempt": 7, "reason": "exception", "error": ""}).encode())


def _unledgered_winner(store: MemoryStore, ledger: Path) -> None:
    ledger.write_text("".join(json.dumps(x) + "\n" for x in _lines(ledger)
                              if x["run_id"] != sorted(read_manifest(store, EXP).runs)[0]))


DAMAGE: dict[str, tuple[Callable[[MemoryStore, Path], None], str]] = {
    "overlap": (_overlap, "took it at"),
    "two executions": (_two_tokens, "several executions"),
    "lost result": (_lost_result, "no result.json"),
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


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damage_is_reported(tmp_path: Path, damage: str) -> None:
    store, spec, ledger = _state(tmp_path)
    do, expect = DAMAGE[damage]
    do(store, ledger)
    report = check(store, spec, [ledger], STEPS)
    assert any(expect in v for v in report.violations), report.violations
