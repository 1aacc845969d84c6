"""Experiment status, computed from one LIST of the runs prefix.

Bodies are read only where a LIST cannot tell: the leases of running runs (who runs
them), the leases of runs with history (released, interrupted or failed), and the few
newest error records shown.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from s3exp.bucket import _keys
from s3exp.bucket._leases import Lease, RunListing, is_stale, parse_listing
from s3exp.core._errors import AlreadyExists, Conflict, NotFoundError, ObjectNotFound
from s3exp.runs._claims import read_control
from s3exp.specs._expansion import RunSlot, expand
from s3exp.specs._experiments import load_experiment
from s3exp.specs._models import ExperimentSpec
from s3exp.stores import Store

__all__ = [
    "STATES",
    "ExperimentStatus",
    "experiment_status",
    "read_status_rollup",
    "render_status",
    "run_states",
    "write_status_rollup",
]

STATES = ("pending", "running", "done", "failed", "interrupted")


@dataclass(slots=True)
class PairStatus:
    dataset: str | None
    model_group: str | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))


@dataclass(slots=True)
class ExperimentStatus:
    """Everything ``s3exp status`` shows, as plain data (``to_dict`` for JSON)."""

    experiment: str
    control: str
    total: int
    counts: dict[str, int]
    pairs: list[PairStatus]
    workers: list[dict[str, Any]]
    stale: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    runs_per_minute: float | None
    eta_seconds: float | None
    server_time: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_states(store: Store, spec: ExperimentSpec, listing: RunListing | None = None,
               slots: list[RunSlot] | None = None,
               ) -> tuple[dict[str, str], dict[str, Lease], RunListing]:
    """Every run's state, the lease bodies that were read, and the listing (``listing``
    and ``slots``, when the caller has them: a fresh LIST of the runs, and the expansion)."""
    exp = spec.name
    if listing is None:
        listing = parse_listing(exp, list(store.list(_keys.runs_prefix(exp))), store.server_time())
    states: dict[str, str] = {}
    leases: dict[str, Lease] = {}
    for slot in slots if slots is not None else expand(spec, params=False):
        objs = listing.get(slot.run_id)
        if objs.result is not None:
            states[slot.run_id] = "done"
        elif objs.lease is None:
            states[slot.run_id] = "pending"
        else:
            try:
                lease = Lease.from_bytes(store.get(_keys.lease(exp, slot.run_id)).data)
            except ObjectNotFound:
                states[slot.run_id] = "pending"
                continue
            leases[slot.run_id] = lease
            states[slot.run_id] = {"released": "pending"}.get(lease.state, lease.state)
    return states, leases, listing


def experiment_status(store: Store, exp: str, *, last_errors: int = 5) -> ExperimentStatus:
    return _status(store, load_experiment(store, exp), None, last_errors)


def _status(store: Store, spec: ExperimentSpec, fresh: RunListing | None,
            last_errors: int = 5) -> ExperimentStatus:
    exp = spec.name
    control, _ = read_control(store, exp)
    slots = expand(spec, params=False)
    states, leases, listing = run_states(store, spec, fresh, slots)
    now: datetime = listing.server_now
    pairs: dict[tuple[str | None, str | None], PairStatus] = {}
    counts = dict.fromkeys(STATES, 0)
    workers: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    for slot in slots:
        state = states[slot.run_id]
        pair = pairs.setdefault((slot.dataset, slot.model_group), PairStatus(slot.dataset, slot.model_group))
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
            body = json.loads(store.get(m.key).data)
        except ObjectNotFound:
            continue
        text = str(body.get("error", ""))
        errors.append({"run_id": body.get("run_id"), "attempt": body.get("attempt"),
                       "at": body.get("at"), "reason": body.get("reason"),
                       "error": text.strip().splitlines()[-1][:200] if text.strip() else ""})
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


def write_status_rollup(store: Store, exp: str, *, spec: ExperimentSpec | None = None,
                        listing: RunListing | None = None) -> ExperimentStatus:
    """Store the current status as ``status/<exp>.json`` (CAS), so that a status read for a
    large experiment is one GET.  Written by compaction, which passes the spec and the
    listing of the runs it has just read (saving a GET and a LIST of every run)."""
    st = _status(store, spec or load_experiment(store, exp), listing)
    body = json.dumps(st.to_dict(), separators=(",", ":")).encode()
    key = _keys.status_rollup(exp)
    for _ in range(3):
        try:
            try:
                current = store.head(key)
            except ObjectNotFound:
                store.put_if_absent(key, body)
            else:
                store.put_if_match(key, body, current.etag)
            break
        except (AlreadyExists, Conflict):
            continue  # a concurrent compactor wrote a rollup just now; either is fresh
    return st


def read_status_rollup(store: Store, exp: str) -> ExperimentStatus:
    """The status as of the last compaction (one GET); NotFoundError if none was written."""
    try:
        raw = json.loads(store.get(_keys.status_rollup(exp)).data)
    except ObjectNotFound:
        raise NotFoundError(f"no status rollup for {exp!r} yet (run s3exp compact {exp})") from None
    raw["pairs"] = [PairStatus(**p) for p in raw["pairs"]]
    return ExperimentStatus(**raw)
