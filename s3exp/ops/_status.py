"""Experiment status, computed from one LIST of the runs prefix.

Bodies are read only where a LIST cannot tell: the leases of running runs (who runs
them), the leases of runs with history (released, interrupted or failed), and the few
newest error records shown.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from s3exp.bucket import (
    AttemptRecord,
    ExperimentStatus,
    Lease,
    PairStatus,
    RunListing,
    is_stale,
    keys,
    list_runs,
)
from s3exp.core import ObjectNotFound
from s3exp.ops._control import read_control
from s3exp.specs import ExperimentSpec, RunSlot, expand, load_experiment
from s3exp.stores import Store

__all__ = ["STATES", "ExperimentStatus", "compute_status", "experiment_status", "render_status",
           "run_states"]

STATES = ("pending", "running", "done", "failed", "interrupted")


def run_states(store: Store, spec: ExperimentSpec, listing: RunListing | None = None,
               slots: list[RunSlot] | None = None,
               ) -> tuple[dict[str, str], dict[str, Lease], RunListing]:
    """Every run's state, the lease bodies that were read, and the listing (``listing``
    and ``slots``, when the caller has them: a fresh LIST of the runs, and the expansion)."""
    exp = spec.name
    if listing is None:
        listing = list_runs(store, exp)
    states: dict[str, str] = {}
    leases: dict[str, Lease] = {}
    for slot in slots if slots is not None else expand(spec, params=False):
        objs = listing.get(slot.run_id)
        if objs.result is not None:
            states[slot.run_id] = "done"
        elif objs.lease is None:
            states[slot.run_id] = "pending"
        else:
            key = keys.lease(exp, slot.run_id)
            try:
                lease = Lease.from_bytes(store.get(key).data, key)
            except ObjectNotFound:
                states[slot.run_id] = "pending"
                continue
            leases[slot.run_id] = lease
            states[slot.run_id] = {"released": "pending"}.get(lease.state, lease.state)
    return states, leases, listing


def experiment_status(store: Store, exp: str, *, last_errors: int = 5) -> ExperimentStatus:
    """The status of ``exp`` now: one LIST of its runs, and the bodies a LIST cannot tell."""
    return compute_status(store, load_experiment(store, exp), None, last_errors)


def compute_status(store: Store, spec: ExperimentSpec, fresh: RunListing | None,
                   last_errors: int = 5) -> ExperimentStatus:
    """The status of ``spec``'s experiment from ``fresh`` (a listing the caller just made),
    or from a new LIST."""
    exp = spec.name
    control = read_control(store, exp).state
    slots = expand(spec, params=False)
    states, leases, listing = run_states(store, spec, fresh, slots)
    now: datetime = listing.server_now
    pairs: dict[tuple[str | None, str | None], PairStatus] = {}
    counts = dict.fromkeys(STATES, 0)
    workers: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    for slot in slots:
        state = states[slot.run_id]
        pair = pairs.setdefault((slot.dataset, slot.model_group),
                                PairStatus(slot.dataset, slot.model_group, dict.fromkeys(STATES, 0)))
        pair.counts[state] += 1
        counts[state] += 1
        if state == "running":
            lease = leases[slot.run_id]
            meta = listing.get(slot.run_id).lease
            assert meta is not None
            age = (now - meta.last_modified).total_seconds()
            entry = {"run_id": slot.run_id, "attempt": lease.attempt, "worker": lease.worker.id,
                     "host": lease.worker.host, "pid": lease.worker.pid,
                     "last_renewed_s": round(age, 1)}
            (stale if is_stale(meta.last_modified, lease.ttl, now) else workers).append(entry)
    errors = []
    metas = sorted((m for o in listing.runs.values() for m in o.error_records),
                   key=lambda m: m.last_modified, reverse=True)[:last_errors]
    for m in metas:
        try:
            record = AttemptRecord.from_bytes(store.get(m.key).data, m.key)
        except ObjectNotFound:
            continue
        text = record.error.strip()
        errors.append({"run_id": record.run_id, "attempt": record.attempt, "at": record.at,
                       "reason": record.reason,
                       "error": text.splitlines()[-1][:200] if text else ""})
    rate, eta = _throughput(listing, now, counts)
    return ExperimentStatus(exp, control, sum(counts.values()), counts, list(pairs.values()),
                            workers, stale, errors, rate, eta, now.isoformat())


def _throughput(listing: RunListing, now: datetime, counts: dict[str, int]) -> tuple[float | None, float | None]:
    """Completions per minute over the last 15 minutes (or since the first), and the ETA."""
    done = sorted(o.result.last_modified for o in listing.runs.values() if o.result is not None)
    if len(done) < 2:
        return None, None
    window_start = max(done[0], now - timedelta(minutes=15))
    recent = [t for t in done if t >= window_start]
    minutes = max((now - window_start).total_seconds() / 60, 1 / 60)
    rate = len(recent) / minutes
    remaining = counts["pending"] + counts["running"] + counts["interrupted"]
    eta = remaining / rate * 60 if rate > 0 else None
    return round(rate, 2), (round(eta) if eta is not None else None)


def _bar(fraction: float, width: int = 30) -> str:
    filled = int(round(fraction * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def render_status(st: ExperimentStatus) -> str:
    """The human-readable status table."""
    lines = [f"experiment {st.experiment}" + ("" if st.control == "active" else f"  [{st.control.upper()}]")]
    w = max([len(f"{p.dataset or '-'} / {p.model_group or '-'}") for p in st.pairs] + [10])
    head = f"  {'pair':<{w}}  " + " ".join(f"{s:>11}" for s in STATES)
    lines += [head, "  " + "-" * (len(head) - 2)]
    for p in st.pairs:
        name = f"{p.dataset or '-'} / {p.model_group or '-'}"
        lines.append(f"  {name:<{w}}  " + " ".join(f"{p.counts[s]:>11}" for s in STATES))
    lines.append(f"  {'total':<{w}}  " + " ".join(f"{st.counts[s]:>11}" for s in STATES))
    finished = st.counts["done"] + st.counts["failed"]
    frac = finished / st.total if st.total else 1.0
    lines.append(f"\n  {_bar(frac)} {finished}/{st.total} finished ({frac:.0%})")
    if st.runs_per_minute is not None:
        eta = f", ETA {_duration(st.eta_seconds)}" if st.eta_seconds else ""
        lines.append(f"  throughput {st.runs_per_minute:.1f} runs/min{eta}")
    if st.workers:
        lines.append(f"\n  live workers ({len({w['worker'] for w in st.workers})}):")
        for wk in st.workers:
            lines.append(f"    {wk['worker']:<28} {wk['run_id']} (attempt {wk['attempt']}, "
                         f"renewed {wk['last_renewed_s']:.0f}s ago)")
    if st.stale:
        lines.append(f"\n  stale leases ({len(st.stale)}), to be taken over:")
        for wk in st.stale:
            lines.append(f"    {wk['run_id']} held by {wk['worker']} (silent {wk['last_renewed_s']:.0f}s)")
    if st.errors:
        lines.append("\n  last errors:")
        for e in st.errors:
            lines.append(f"    {e['run_id']} attempt {e['attempt']}: {e['error']}")
    return "\n".join(lines)
