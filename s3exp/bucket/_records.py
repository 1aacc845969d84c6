"""Every body s3exp stores as JSON, defined once.

Each record is a dataclass with a format tag, ``to_bytes()`` and ``from_bytes(data,
key)``; no other module builds or parses these bodies.  A body that is not JSON, is not
an object, lacks a field, has a field of the wrong type, or carries a format tag this
version does not know raises :class:`~s3exp.DamagedObject` naming the key (bodies
written before the tags existed have none, and are read as version 1)::

    record          key (s3exp.bucket.keys)                   format tag
    SpecRecord      experiments/<exp>.json                     s3exp.spec/1
    Lease           runs/<exp>/<run>/lease.json                s3exp.lease/1
    ResultRecord    runs/<exp>/<run>/result-<NNNN>.json        s3exp.result/1  (empty: a seal)
    AttemptRecord   runs/<exp>/<run>/error-<NNNN>.json,        s3exp.attempt/1
                    runs/<exp>/<run>/interrupt-<NNNN>.json
    ControlRecord   control/<exp>.json                         s3exp.control/1
    Manifest        compaction/<exp>/manifest.json             s3exp.compaction/1
    CostRecord      costs/<exp>/<id>.json                      s3exp.cost/1
    ExperimentStatus status/<exp>.json                         s3exp.status/1
    JournalEntry    optuna/log/<NNNNNNNNNNNN>.json             s3exp.optuna-log/1
    TrialHeartbeat  optuna/heartbeats/<NNNNNNNNNNNN>.json      s3exp.optuna-heartbeat/1

Metric shards and table parts are Parquet; their schemas are in
:mod:`s3exp.tables._schema`.  To add a field to a record: add it to the dataclass (with
a default, so that bodies written before it still read), to its ``to_dict`` and
``from_dict``, and fill it where the record is made.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, ClassVar, Literal

from s3exp.bucket._record_format import Body, encode, parse
from s3exp.core import DamagedObject, safe_name

__all__ = [
    "AttemptRecord",
    "ControlRecord",
    "ControlState",
    "CostRecord",
    "ExperimentStatus",
    "JournalEntry",
    "Lease",
    "LeaseState",
    "Manifest",
    "PairStatus",
    "ResultRecord",
    "SpecRecord",
    "TrialHeartbeat",
    "WorkerIdentity",
]

LeaseState = Literal["running", "released", "interrupted", "failed"]
ControlState = Literal["active", "paused", "cancelled"]
_LEASE_STATES = ("running", "released", "interrupted", "failed")
_CONTROL_STATES = ("active", "paused", "cancelled")

# -- the spec ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpecRecord:
    """An experiment as submitted: the normalised spec and what identifies it."""

    FORMAT: ClassVar[str] = "s3exp.spec/1"
    spec: dict[str, Any]
    spec_hash: str
    space_hash: str
    runs: int
    s3exp_version: str
    submitted_at: str

    def to_bytes(self) -> bytes:
        return encode(self.FORMAT, {f.name: getattr(self, f.name) for f in fields(self)}, indent=1)

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> SpecRecord:
        return parse(cls, data, key, cls.FORMAT, lambda b: cls(
            b.get("spec", dict), b.get("spec_hash", str), b.get("space_hash", str, ""),
            b.get("runs", int, 0), b.get("s3exp_version", str, ""), b.get("submitted_at", str, "")))


# -- runs: lease, result, error and interrupt records --------------------------------


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    """Who holds a lease."""

    id: str
    host: str
    pid: int

    @classmethod
    def current(cls, worker_id: str | None = None) -> WorkerIdentity:
        host = socket.gethostname()
        pid = os.getpid()
        # The default id becomes a key segment (the cost record), so the host name is
        # made safe; an id given explicitly is checked by the Worker instead.
        return cls(worker_id or safe_name(f"{host}-{pid}-{uuid.uuid4().hex[:6]}"), host, pid)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "host": self.host, "pid": self.pid}

    @classmethod
    def from_body(cls, b: Body, name: str = "worker") -> WorkerIdentity:
        w = Body(b.get(name, dict), b.key)
        return cls(w.get("id", str), w.get("host", str, ""), w.get("pid", int, 0))


@dataclass(frozen=True, slots=True)
class Lease:
    """The body of ``lease.json``: who executes the run, which attempt, and its budget.

    Its state machine is in :mod:`s3exp.bucket._leases`; these methods make the next
    body, and the caller writes it with a conditional write.
    """

    FORMAT: ClassVar[str] = "s3exp.lease/1"
    experiment: str
    run_id: str
    state: LeaseState
    attempt: int
    failures: int
    budget: int
    """How many failures the run may have before it is failed (max_attempts, raised by reset)."""
    token: str
    worker: WorkerIdentity
    ttl: float
    renewals: int = 0
    claimed_at: str = ""
    """The claiming worker's own clock; informational only, never used for expiry."""
    note: str = ""

    def to_bytes(self) -> bytes:
        return encode(self.FORMAT, {
            "experiment": self.experiment, "run_id": self.run_id, "state": self.state,
            "attempt": self.attempt, "failures": self.failures, "budget": self.budget,
            "token": self.token, "worker": self.worker.to_dict(), "ttl": self.ttl,
            "renewals": self.renewals, "claimed_at": self.claimed_at, "note": self.note})

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> Lease:
        def build(b: Body) -> Lease:
            state = b.get("state", str)
            if state not in _LEASE_STATES:
                raise DamagedObject(key, f"unknown lease state {state!r}")
            return cls(b.get("experiment", str), b.get("run_id", str), state,
                       b.get("attempt", int), b.get("failures", int), b.get("budget", int),
                       b.get("token", str), WorkerIdentity.from_body(b), b.number("ttl"),
                       b.get("renewals", int, 0), b.get("claimed_at", str, ""),
                       b.get("note", str, ""))
        return parse(cls, data, key, cls.FORMAT, build)

    @classmethod
    def first(cls, experiment: str, run_id: str, worker: WorkerIdentity, ttl: float,
              budget: int, now: datetime) -> Lease:
        return cls(experiment, run_id, "running", 1, 0, budget, uuid.uuid4().hex, worker, ttl,
                   claimed_at=now.isoformat())

    def next_attempt(self, worker: WorkerIdentity, ttl: float, now: datetime, *,
                     failed_previous: bool) -> Lease:
        """The lease for the next execution, taken over from this one."""
        return replace(self, state="running", attempt=self.attempt + 1,
                       failures=self.failures + (1 if failed_previous else 0),
                       token=uuid.uuid4().hex, worker=worker, ttl=ttl, renewals=0,
                       claimed_at=now.isoformat(), note="")

    def renewed(self) -> Lease:
        return replace(self, renewals=self.renewals + 1)

    def with_state(self, state: LeaseState, *, failed: bool = False, note: str = "") -> Lease:
        return replace(self, state=state, failures=self.failures + (1 if failed else 0),
                       renewals=self.renewals + 1, note=note)

    def reset(self, max_attempts: int) -> Lease:
        """Released with a fresh budget of ``max_attempts`` failures (history kept)."""
        return replace(self, state="released", budget=self.failures + max_attempts,
                       renewals=self.renewals + 1, note="reset")

    @property
    def budget_spent(self) -> bool:
        return self.failures >= self.budget


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """A committed run: what ``result-<attempt>.json`` holds (an empty body is a seal)."""

    FORMAT: ClassVar[str] = "s3exp.result/1"
    experiment: str
    run_id: str
    attempt: int
    token: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    worker: str
    dataset: str | None = None
    model: str | None = None
    model_group: str | None = None
    replicate: int = 0
    status: str = "done"
    provenance: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    ended_at: str = ""
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "run_id": self.run_id, "status": self.status,
                "attempt": self.attempt, "token": self.token, "dataset": self.dataset,
                "model": self.model, "model_group": self.model_group,
                "replicate": self.replicate, "params": self.params, "metrics": self.metrics,
                "worker": self.worker, "provenance": self.provenance,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "duration_s": self.duration_s}

    def to_bytes(self) -> bytes:
        return encode(self.FORMAT, self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> ResultRecord:
        return parse(cls, data, key, cls.FORMAT, lambda b: cls(
            b.get("experiment", str), b.get("run_id", str), b.get("attempt", int),
            b.get("token", str), b.get("params", dict), b.get("metrics", dict),
            b.get("worker", str, ""), b.get("dataset", str, None), b.get("model", str, None),
            b.get("model_group", str, None), b.get("replicate", int, 0),
            b.get("status", str, "done"), b.get("provenance", dict, {}),
            b.get("started_at", str, ""), b.get("ended_at", str, ""),
            b.number("duration_s", 0.0)))


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What became of one attempt that did not complete: ``kind`` is ``error`` (a failure,
    with its traceback or stderr tail, or a taker's "lease expired") or ``interrupt``."""

    FORMAT: ClassVar[str] = "s3exp.attempt/1"
    kind: Literal["error", "interrupt"]
    experiment: str
    run_id: str
    attempt: int
    token: str
    worker: WorkerIdentity
    at: str
    reason: str = ""
    error: str = ""

    @classmethod
    def of(cls, kind: Literal["error", "interrupt"], lease: Lease, now: datetime, *,
           reason: str, error: str = "") -> AttemptRecord:
        return cls(kind, lease.experiment, lease.run_id, lease.attempt, lease.token,
                   lease.worker, now.isoformat(), reason, error)

    def to_bytes(self) -> bytes:
        return encode(self.FORMAT, {
            "kind": self.kind, "experiment": self.experiment, "run_id": self.run_id,
            "attempt": self.attempt, "token": self.token, "worker": self.worker.to_dict(),
            "at": self.at, "reason": self.reason, "error": self.error}, indent=1)

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> AttemptRecord:
        def build(b: Body) -> AttemptRecord:
            kind = b.get("kind", str)
            if kind not in ("error", "interrupt"):
                raise DamagedObject(key, f"unknown attempt record kind {kind!r}")
            return cls(kind, b.get("experiment", str), b.get("run_id", str),
                       b.get("attempt", int), b.get("token", str), WorkerIdentity.from_body(b),
                       b.get("at", str, ""), b.get("reason", str, ""), b.get("error", str, ""))
        return parse(cls, data, key, cls.FORMAT, build)


# -- the experiment's control, compaction manifest, costs, status --------------------


@dataclass(frozen=True, slots=True)
class ControlRecord:
    """Pause / cancel of one experiment, set by operators (CAS)."""

    FORMAT: ClassVar[str] = "s3exp.control/1"
    state: ControlState = "active"

    def to_bytes(self) -> bytes:
        return encode(self.FORMAT, {"state": self.state})

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> ControlRecord:
        def build(b: Body) -> ControlRecord:
            state = b.get("state", str, "active")
            if state not in _CONTROL_STATES:
                raise DamagedObject(key, f"unknown control state {state!r}")
            return cls(state)
        return parse(cls, data, key, cls.FORMAT, build)


@dataclass(slots=True)
class Manifest:
    """What is compacted: the runs (and their winning attempt) and the parts holding them.

    ``etag`` is not part of the body: it is the ETag the manifest was read with (None if
    there was none yet), which the next commit swaps on."""

    FORMAT: ClassVar[str] = "s3exp.compaction/1"
    experiment: str
    generation: int = 0
    runs: dict[str, int] = field(default_factory=dict)
    parts: list[dict[str, Any]] = field(default_factory=list)
    etag: str | None = None

    @property
    def metric_rows(self) -> int:
        return sum(int(p["rows"]) for p in self.parts if p["table"] == "metrics")

    def to_bytes(self, now: datetime) -> bytes:
        return encode(self.FORMAT, {
            "experiment": self.experiment, "generation": self.generation, "runs": self.runs,
            "parts": self.parts, "metric_rows": self.metric_rows, "updated_at": now.isoformat()})

    @classmethod
    def from_bytes(cls, data: bytes, key: str, etag: str | None = None) -> Manifest:
        def build(b: Body) -> Manifest:
            runs = {str(r): int(a) for r, a in b.get("runs", dict).items()}
            parts = list(b.get("parts", list))
            for p in parts:
                if not isinstance(p, dict) or not {"table", "key", "rows"} <= set(p):
                    raise DamagedObject(key, f"a part entry lacks table, key or rows: {p!r:.200}")
            return cls(b.get("experiment", str), b.get("generation", int), runs, parts, etag)
        return parse(cls, data, key, cls.FORMAT, build)


@dataclass(frozen=True, slots=True)
class CostRecord:
    """The request counts of one worker (or of the compactors) for one experiment."""

    FORMAT: ClassVar[str] = "s3exp.cost/1"
    id: str
    role: str
    experiment: str
    requests: dict[str, int]
    served: list[str] = field(default_factory=list)
    host: str = ""
    updated_at: str = ""

    def to_bytes(self) -> bytes:
        return encode(self.FORMAT, {
            "id": self.id, "role": self.role, "experiment": self.experiment,
            "served": self.served, "requests": dict(sorted(self.requests.items())),
            "host": self.host, "updated_at": self.updated_at})

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> CostRecord:
        def build(b: Body) -> CostRecord:
            requests = b.get("requests", dict)
            counts = {str(k): v for k, v in requests.items()}
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
                raise DamagedObject(key, "request counts are not integers")
            return cls(b.get("id", str, key.rsplit("/", 1)[-1].removesuffix(".json")),
                       b.get("role", str, ""), b.get("experiment", str, ""), counts,
                       list(b.get("served", list, [])), b.get("host", str, ""),
                       b.get("updated_at", str, ""))
        return parse(cls, data, key, cls.FORMAT, build)


@dataclass(slots=True)
class PairStatus:
    dataset: str | None
    model_group: str | None
    counts: dict[str, int]


@dataclass(slots=True)
class ExperimentStatus:
    """An experiment's status as plain data: what ``s3exp status`` shows, and the body of
    ``status/<exp>.json`` that compaction writes."""

    FORMAT: ClassVar[str] = "s3exp.status/1"
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
        return {"experiment": self.experiment, "control": self.control, "total": self.total,
                "counts": self.counts,
                "pairs": [{"dataset": p.dataset, "model_group": p.model_group,
                           "counts": p.counts} for p in self.pairs],
                "workers": self.workers, "stale": self.stale, "errors": self.errors,
                "runs_per_minute": self.runs_per_minute, "eta_seconds": self.eta_seconds,
                "server_time": self.server_time}

    def to_bytes(self) -> bytes:
        return encode(self.FORMAT, self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> ExperimentStatus:
        def build(b: Body) -> ExperimentStatus:
            pairs = [PairStatus(p.get("dataset"), p.get("model_group"), dict(p["counts"]))
                     for p in b.get("pairs", list)]
            rate = b.get("runs_per_minute", (int, float), None)
            eta = b.get("eta_seconds", (int, float), None)
            return cls(b.get("experiment", str), b.get("control", str), b.get("total", int),
                       dict(b.get("counts", dict)), pairs, list(b.get("workers", list)),
                       list(b.get("stale", list)), list(b.get("errors", list)),
                       None if rate is None else float(rate), None if eta is None else float(eta),
                       b.get("server_time", str))
        return parse(cls, data, key, cls.FORMAT, build)


# -- Optuna's journal (s3exp.optuna) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One entry of Optuna's journal: the operation dict that ``JournalStorage`` wrote
    (opaque here: Optuna reads it)."""

    FORMAT: ClassVar[str] = "s3exp.optuna-log/1"
    log: dict[str, Any]

    def to_bytes(self) -> bytes:
        return encode(self.FORMAT, {"log": self.log})

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> JournalEntry:
        return parse(cls, data, key, cls.FORMAT, lambda b: cls(b.get("log", dict)))


@dataclass(frozen=True, slots=True)
class TrialHeartbeat:
    """A running trial's heartbeat: rewritten (If-Match) every interval, so that its
    Last-Modified, on the server's clock, says when its process was last alive."""

    FORMAT: ClassVar[str] = "s3exp.optuna-heartbeat/1"
    trial_id: int
    beats: int
    worker: str

    def to_bytes(self) -> bytes:
        return encode(self.FORMAT, {"trial_id": self.trial_id, "beats": self.beats,
                                     "worker": self.worker})

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> TrialHeartbeat:
        return parse(cls, data, key, cls.FORMAT, lambda b: cls(
            b.get("trial_id", int), b.get("beats", int), b.get("worker", str, "")))
