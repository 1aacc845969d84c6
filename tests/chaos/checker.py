"""The chaos scenario's independent checker.

It trusts no worker's report.  It reads the store directly (not through the fault proxy)
and the per-process ledgers, and proves:

1. every run completed exactly once: each of the spec's N runs has its ``result.json``
   (S3 keys are unique, so one each), and no other run id has one;
2. no two attempts of one run overlapped in time as lease holders: an attempt's interval
   is [first, last] of its confirmed lease writes, each stamped with the wall time taken
   before the request was sent; attempt k's last precedes attempt k+1's first.  Each
   attempt number belongs to one token (one execution), and the winning result's
   (attempt, token) is one that held the lease;
3. the compacted metrics (after a final clean compaction) hold exactly the winning
   attempts' rows: N·M rows, no (run_id, step, name) twice, every row's attempt the one
   in result.json; what a lister of ``metrics/`` sees is exactly what the manifest lists,
   and no pending part is left;
4. every error record has its traceback or reason text.

Violations are collected, not raised one by one, so a failure shows all of them.
"""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from s3exp import _keys
from s3exp._compaction import read_manifest
from s3exp._expansion import expand
from s3exp._specs import ExperimentSpec
from s3exp.stores import Store

__all__ = ["CheckReport", "check", "read_ledgers"]


@dataclass
class CheckReport:
    runs: int = 0
    results: int = 0
    attempts_seen: int = 0
    takeovers: int = 0
    """Attempts that began by taking over an expired lease ("lease expired" records)."""
    max_attempt: int = 0
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


def check(store: Store, spec: ExperimentSpec, ledger_paths: list[Path], steps: int) -> CheckReport:
    exp = spec.name
    rep = CheckReport()
    bad = rep.violations
    expected = {s.run_id for s in expand(spec)}
    rep.runs = len(expected)

    # -- 1. every run completed exactly once ----------------------------------------
    by_run: dict[str, set[str]] = defaultdict(set)
    prefix = _keys.runs_prefix(exp)
    for m in store.list(prefix):
        run_id, _, name = m.key[len(prefix):].partition("/")
        by_run[run_id].add(name)
    unknown = set(by_run) - expected
    if unknown:
        bad.append(f"objects for run ids the spec does not have: {sorted(unknown)[:5]}")
    results: dict[str, dict[str, Any]] = {}
    for rid in sorted(expected):
        if "result.json" not in by_run.get(rid, set()):
            bad.append(f"{rid}: no result.json")
            continue
        body = json.loads(store.get(_keys.result(exp, rid)).data)
        if body.get("run_id") != rid or body.get("status") != "done":
            bad.append(f"{rid}: result.json is not a done record of this run: {body}")
        results[rid] = body
    rep.results = len(results)

    # -- 4. error records carry their traceback or reason ----------------------------
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

    # -- 2. no two attempts of a run overlapped as lease holders -----------------------
    lines = read_ledgers(ledger_paths)
    rep.ledger_lines = len(lines)
    held: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for line in lines:
        if line["kind"] == "lease":
            held[line["run_id"]][int(line["attempt"])].append(line)
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
    missing = sorted(set(results) - set(held))
    if missing:
        bad.append(f"{len(missing)} completed runs have no lease write in any ledger: {missing[:5]}")
    rep.min_gap_s = round(min(gaps), 6) if gaps else None

    # -- 3. the compacted metrics hold exactly the winning attempts' rows -------------
    manifest = read_manifest(store, exp)
    winners = {rid: int(body["attempt"]) for rid, body in results.items()}
    if manifest.runs != winners:
        diff = {r for r in set(manifest.runs) | set(winners) if manifest.runs.get(r) != winners.get(r)}
        bad.append(f"the manifest's runs differ from the results for {len(diff)} runs: "
                   f"{sorted(diff)[:5]}")
    listed = {m.key for m in store.list(_keys.table_prefix("metrics", exp))}
    in_manifest = {str(p["key"]) for p in manifest.parts if p["table"] == "metrics"}
    if listed != in_manifest:
        bad.append(f"metrics/ holds parts the manifest does not list, or lacks some: "
                   f"extra {sorted(listed - in_manifest)[:3]}, missing {sorted(in_manifest - listed)[:3]}")
    pending = [m.key for m in store.list(_keys.pending_prefix(exp))]
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
        keys = Counter(zip(run_ids, step_col, names, strict=True))
        dups = [k for k, n in keys.items() if n > 1]
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

    res_keys = sorted(m.key for m in store.list(_keys.table_prefix("results", exp)))
    res_rows = pa.concat_tables([_read_parquet(store.get(k).data) for k in res_keys],
                                promote_options="permissive") if res_keys else None
    res_ids = res_rows.column("run_id").to_pylist() if res_rows is not None else []
    if sorted(res_ids) != sorted(expected):
        bad.append(f"the compacted results table has {len(res_ids)} rows for "
                   f"{len(set(res_ids))} runs, expected one row for each of {len(expected)}")
    return rep
