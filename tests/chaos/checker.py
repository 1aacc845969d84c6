"""The chaos scenario's independent checker.

It trusts no worker's report.  It reads the store directly (not through the fault proxy),
the per-process ledgers and the harness's log of the signals it sent, and proves:

1. every run completed exactly once: each of the spec's N runs has exactly one non-empty
   ``result-NNNN.json`` (a commit), and no other run id has one;
2. the winning attempt w held the live lease at its commit: every earlier attempt is
   sealed (its result key exists and is empty), the lease's attempt is still w, no
   ledger shows a lease write of an attempt after w, and no attempt other than w had a
   commit confirmed;
3. no two attempts of one run overlapped in time as lease holders: an attempt's interval
   is [first, last] of its confirmed lease writes, each stamped with the wall time taken
   before the request was sent; attempt k's last precedes attempt k+1's first.  Each
   attempt number belongs to one token (one execution), and the winning result's
   (attempt, token) is one that held the lease;
4. no two attempts' bodies executed at the same time for longer than ``OVERLAP_BOUND_S``
   (the documented bound: design.md, "What is guaranteed").  A body executes from its
   ``begin`` to its ``end`` line (or its process's SIGKILL), minus the time its process
   was SIGSTOPped;
5. the compacted metrics (after a final clean compaction) hold exactly the winning
   attempts' rows: N·M rows, no (run_id, step, name) twice, every row's attempt the
   winner's; what a lister of ``metrics/`` sees is exactly what the manifest lists, and no
   pending part is left;
6. every error record has its traceback or reason text.

Violations are collected, not raised one by one, so a failure shows all of them.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from s3exp.bucket import keys
from s3exp.bucket._records import Lease
from s3exp.specs._expansion import expand
from s3exp.specs._models import ExperimentSpec
from s3exp.stores import Store
from s3exp.tables._compaction import read_manifest

__all__ = ["OVERLAP_BOUND_S", "CheckReport", "check", "read_ledgers"]

OVERLAP_BOUND_S = 1.0
"""How long a zombie's body may still execute beside the live attempt's (see 4 above)."""


@dataclass
class CheckReport:
    runs: int = 0
    results: int = 0
    attempts_seen: int = 0
    takeovers: int = 0
    """Attempts that began by taking over an expired lease ("lease expired" records)."""
    max_attempt: int = 0
    sealed: int = 0
    """Attempts fenced out by an empty result key."""
    commits_refused: int = 0
    """Commits (result writes) the store refused, from the ledgers: fenced zombies."""
    bodies: int = 0
    max_overlap_s: float = 0.0
    """The longest time two attempts' bodies of one run executed at once."""
    metric_rows: int = 0
    error_records: Counter[str] = field(default_factory=Counter)
    interrupt_records: int = 0
    ledger_lines: int = 0
    min_gap_s: float | None = None
    """The smallest gap between one attempt's last lease write and the next one's first."""
    violations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "results": self.results, "attempts_seen": self.attempts_seen,
                "takeovers": self.takeovers, "max_attempt": self.max_attempt,
                "sealed": self.sealed, "commits_refused": self.commits_refused,
                "bodies": self.bodies, "max_overlap_s": round(self.max_overlap_s, 6),
                "metric_rows": self.metric_rows, "error_records": dict(self.error_records),
                "interrupt_records": self.interrupt_records, "ledger_lines": self.ledger_lines,
                "min_gap_s": self.min_gap_s, "violations": len(self.violations)}


def read_ledgers(paths: list[Path]) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for p in paths:
        if p.exists():
            for raw in p.read_text().splitlines():
                if raw.strip():
                    lines.append(json.loads(raw))
    return lines


def _read_parquet(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


Interval = tuple[float, float]


def _measure(intervals: list[Interval]) -> float:
    return sum(max(0.0, b - a) for a, b in intervals)


def _intersect(xs: list[Interval], ys: list[Interval]) -> list[Interval]:
    return [(max(a, c), min(b, d)) for a, b in xs for c, d in ys if max(a, c) < min(b, d)]


def _executing(begin: float, end: float, stops: list[Interval]) -> list[Interval]:
    """[begin, end] minus the times the process was stopped."""
    out, at = [], begin
    for s0, s1 in sorted(stops):
        if s1 <= at or s0 >= end:
            continue
        if s0 > at:
            out.append((at, s0))
        at = max(at, s1)
    if at < end:
        out.append((at, end))
    return out


def _bodies(lines: list[dict[str, Any]], signals: list[dict[str, Any]]
            ) -> dict[str, dict[int, list[Interval]]]:
    """For each run and attempt, the intervals during which its body executed."""
    killed: dict[int, float] = {}
    stops: dict[int, list[Interval]] = defaultdict(list)
    stopped_at: dict[int, float] = {}
    for sig in sorted(signals, key=lambda x: x["t"]):
        pid, t = int(sig["pid"]), float(sig["t"])
        if sig["sig"] == "KILL":
            killed.setdefault(pid, t)
        elif sig["sig"] == "STOP":
            stopped_at[pid] = t
        elif sig["sig"] == "CONT" and pid in stopped_at:
            stops[pid].append((stopped_at.pop(pid), t))
    for pid, t in stopped_at.items():  # stopped and never continued: until its kill
        stops[pid].append((t, killed.get(pid, math.inf)))
    last_seen: dict[int, float] = defaultdict(float)
    for ln in lines:
        last_seen[int(ln["pid"])] = max(last_seen[int(ln["pid"])], float(ln["t"]))
    begins: dict[tuple[str, int, int], float] = {}
    ends: dict[tuple[str, int, int], float] = {}
    for ln in lines:
        key = (ln["run_id"], int(ln["attempt"]), int(ln["pid"]))
        if ln["kind"] == "begin":
            begins[key] = float(ln["t"])
        elif ln["kind"] == "end":
            ends[key] = float(ln["t"])
    out: dict[str, dict[int, list[Interval]]] = defaultdict(lambda: defaultdict(list))
    for (rid, attempt, pid), b in begins.items():
        e = min(ends.get((rid, attempt, pid), math.inf), killed.get(pid, math.inf))
        if e == math.inf:  # neither ended nor killed (it exited another way): its last word
            e = last_seen[pid]
        out[rid][attempt].extend(_executing(b, max(b, e), stops.get(pid, [])))
    return out


def check(store: Store, spec: ExperimentSpec, ledger_paths: list[Path], steps: int,
          signals: list[dict[str, Any]] | None = None) -> CheckReport:
    """``signals``: the harness's log of ``{pid, sig: KILL | STOP | CONT, t}``."""
    exp = spec.name
    rep = CheckReport()
    bad = rep.violations
    expected = {s.run_id for s in expand(spec)}
    rep.runs = len(expected)

    # -- 1. every run completed exactly once ----------------------------------------
    by_run: dict[str, dict[str, int]] = defaultdict(dict)
    prefix = keys.runs_prefix(exp)
    for m in store.list(prefix):
        run_id, _, name = m.key[len(prefix):].partition("/")
        by_run[run_id][name] = m.size
    unknown = set(by_run) - expected
    if unknown:
        bad.append(f"objects for run ids the spec does not have: {sorted(unknown)[:5]}")
    results: dict[str, dict[str, Any]] = {}
    for rid in sorted(expected):
        names = by_run.get(rid, {})
        outcomes = {int(n[len("result-"):-len(".json")]): size for n, size in names.items()
                    if n.startswith("result-")}
        committed = sorted(a for a, size in outcomes.items() if size > 0)
        rep.sealed += sum(1 for size in outcomes.values() if size == 0)
        if len(committed) != 1:
            bad.append(f"{rid}: {len(committed)} committed results (attempts {committed}), "
                       "expected exactly one")
            if not committed:
                continue
        w = committed[0]
        body = json.loads(store.get(keys.result(exp, rid, w)).data)
        if body.get("run_id") != rid or body.get("status") != "done" or body.get("attempt") != w:
            bad.append(f"{rid}: result-{w:04d} is not a done record of this run and attempt: {body}")
        results[rid] = body
        # -- 2. the winner held the live lease at its commit (from the store) ----------
        unsealed = [a for a in range(1, w) if outcomes.get(a) != 0]
        if unsealed:
            bad.append(f"{rid}: attempt {w} won, but earlier attempts {unsealed} were never "
                       "sealed: the lease moved on without fencing them")
        lease = Lease.from_bytes(store.get(keys.lease(exp, rid)).data, keys.lease(exp, rid))
        if lease.attempt != w:
            bad.append(f"{rid}: attempt {w} committed, but the lease is at attempt {lease.attempt}")
    rep.results = len(results)

    # -- 6. error records carry their traceback or reason ----------------------------
    for rid, names in sorted(by_run.items()):
        for name in sorted(names):
            if name.startswith("interrupt-"):
                rep.interrupt_records += 1
            if not name.startswith("error-"):
                continue
            raw = store.get(f"{prefix}{rid}/{name}").data
            try:
                body = json.loads(raw)
            except ValueError:
                bad.append(f"{rid}/{name}: not JSON: {raw[:200]!r}")
                continue
            text = body.get("error")
            reason = str(body.get("reason") or "")
            if not isinstance(text, str) or not text.strip():
                bad.append(f"{rid}/{name}: no traceback or reason text: {body}")
            rep.error_records[reason or "?"] += 1
            if reason == "lease expired":
                rep.takeovers += 1
            if body.get("run_id") != rid or f"error-{int(body.get('attempt', -1)):04d}.json" != name:
                bad.append(f"{rid}/{name}: names another run or attempt: {body.get('run_id')} "
                           f"{body.get('attempt')}")

    # -- 3. no two attempts of a run overlapped as lease holders -----------------------
    lines = read_ledgers(ledger_paths)
    rep.ledger_lines = len(lines)
    held: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    commits: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        if line["kind"] == "lease":
            held[line["run_id"]][int(line["attempt"])].append(line)
        elif line["kind"] == "result":
            commits[line["run_id"]].append(line)
        elif line["kind"] == "refused":
            rep.commits_refused += 1
    gaps: list[float] = []
    for rid, attempts in sorted(held.items()):
        rep.attempts_seen += len(attempts)
        rep.max_attempt = max(rep.max_attempt, max(attempts))
        spans: list[tuple[int, float, float]] = []
        for attempt, writes in sorted(attempts.items()):
            tokens = {w["token"] for w in writes}
            workers = {(w["worker"], w["pid"]) for w in writes}
            if len(tokens) != 1 or len(workers) != 1:
                bad.append(f"{rid} attempt {attempt}: one attempt number, several executions: "
                           f"tokens {sorted(tokens)}, workers {sorted(workers)}")
            spans.append((attempt, min(w["t"] for w in writes), max(w["t"] for w in writes)))
        for (a1, _, last1), (a2, first2, _) in zip(spans, spans[1:]):
            gaps.append(first2 - last1)
            if not last1 < first2:
                bad.append(f"{rid}: attempt {a1} held its lease until {last1:.6f}, after attempt "
                           f"{a2} took it at {first2:.6f} (overlap {last1 - first2:.3f}s)")
        if rid in results:
            win = (int(results[rid]["attempt"]), results[rid]["token"])
            tokens_of = {a: {w["token"] for w in ws} for a, ws in attempts.items()}
            if win[1] not in tokens_of.get(win[0], set()):
                bad.append(f"{rid}: the result's attempt {win[0]} (token {win[1]}) never held "
                           "the lease according to the ledgers")
            later = sorted(a for a in attempts if a > win[0])
            if later:
                bad.append(f"{rid}: attempt {win[0]} won, but the ledgers show later attempts "
                           f"{later} holding the lease")
    for rid, confirmed in sorted(commits.items()):
        winner = results.get(rid, {}).get("attempt")
        others = sorted({int(c["attempt"]) for c in confirmed} - {winner})
        if others:
            bad.append(f"{rid}: commits of attempts {others} were confirmed, but attempt "
                       f"{winner} won")
    missing = sorted(set(results) - set(held))
    if missing:
        bad.append(f"{len(missing)} completed runs have no lease write in any ledger: {missing[:5]}")
    rep.min_gap_s = round(min(gaps), 6) if gaps else None

    # -- 4. bodies of two attempts did not execute together beyond the bound ----------
    for rid, by_attempt in sorted(_bodies(lines, signals or []).items()):
        rep.bodies += len(by_attempt)
        ordered = sorted(by_attempt)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1:]:
                live = [(min(x for x, _ in by_attempt[b]), max(y for _, y in by_attempt[b]))]
                both = _measure(_intersect(by_attempt[a], live))
                rep.max_overlap_s = max(rep.max_overlap_s, both)
                if both > OVERLAP_BOUND_S:
                    bad.append(f"{rid}: attempt {a}'s body executed {both:.3f}s while attempt "
                               f"{b}'s was running (bound {OVERLAP_BOUND_S}s)")

    # -- 5. the compacted metrics hold exactly the winning attempts' rows -------------
    manifest = read_manifest(store, exp)
    winners = {rid: int(body["attempt"]) for rid, body in results.items()}
    if manifest.runs != winners:
        diff = {r for r in set(manifest.runs) | set(winners) if manifest.runs.get(r) != winners.get(r)}
        bad.append(f"the manifest's runs differ from the results for {len(diff)} runs: "
                   f"{sorted(diff)[:5]}")
    listed = {m.key for m in store.list(keys.table_prefix("metrics", exp))}
    in_manifest = {str(p["key"]) for p in manifest.parts if p["table"] == "metrics"}
    if listed != in_manifest:
        bad.append(f"metrics/ holds parts the manifest does not list, or lacks some: "
                   f"extra {sorted(listed - in_manifest)[:3]}, missing {sorted(in_manifest - listed)[:3]}")
    pending = [m.key for m in store.list(keys.pending_prefix(exp))]
    if pending:
        bad.append(f"{len(pending)} pending parts left after the final compaction: {pending[:3]}")
    tables = [_read_parquet(store.get(k).data) for k in sorted(listed)]
    rows = pa.concat_tables(tables, promote_options="permissive") if tables else None
    rep.metric_rows = rows.num_rows if rows is not None else 0
    if rep.metric_rows != len(expected) * steps:
        bad.append(f"{rep.metric_rows} compacted metric rows, expected N*M = "
                   f"{len(expected)} * {steps} = {len(expected) * steps}")
    if rows is not None:
        run_ids = rows.column("run_id").to_pylist()
        step_col = rows.column("step").to_pylist()
        names = rows.column("name").to_pylist()
        attempt_col = rows.column("attempt").to_pylist()
        seen = Counter(zip(run_ids, step_col, names, strict=True))
        dups = [k for k, n in seen.items() if n > 1]
        if dups:
            bad.append(f"{len(dups)} (run_id, step, name) appear more than once: {dups[:3]}")
        wrong = sorted({(r, a) for r, a in zip(run_ids, attempt_col, strict=True)
                        if winners.get(r) != a})
        if wrong:
            bad.append(f"{len(wrong)} (run, attempt) rows are not the winning attempt's: {wrong[:5]}")
        per_run: dict[str, set[int]] = defaultdict(set)
        for r, s in zip(run_ids, step_col, strict=True):
            per_run[r].add(s)
        short = [r for r in expected if per_run.get(r) != set(range(steps))]
        if short:
            bad.append(f"{len(short)} runs do not have exactly steps 0..{steps - 1}: {sorted(short)[:5]}")

    res_keys = sorted(m.key for m in store.list(keys.table_prefix("results", exp)))
    res_rows = pa.concat_tables([_read_parquet(store.get(k).data) for k in res_keys],
                                promote_options="permissive") if res_keys else None
    res_ids = res_rows.column("run_id").to_pylist() if res_rows is not None else []
    if sorted(res_ids) != sorted(expected):
        bad.append(f"the compacted results table has {len(res_ids)} rows for "
                   f"{len(set(res_ids))} runs, expected one row for each of {len(expected)}")
    return rep
