"""Run leases: the one object per run that says who is executing it.

A lease (``runs/<exp>/<run_id>/lease.json``) moves through these states, every move a
conditional write on the lease key::

    (absent) --claim: create-only--> running(attempt 1)
    running  --renew: If-Match, renewals+1--> running
    running  --error: If-Match--> released          (failures+1; error record written first)
    running  --error, budget spent: If-Match--> failed
    running  --SIGTERM/SIGINT/cancel: If-Match--> interrupted   (not a failure)
    running, stale on the server's clock --takeover: If-Match on the stale ETag--> running(attempt+1)
    released | interrupted --claim: If-Match--> running(attempt+1)
    failed | released | interrupted --reset: If-Match--> released with a fresh budget

``attempt`` goes up with every execution, so it is unique per execution and fences metric
shards and results.  ``failures`` counts what ``max_attempts`` limits: errors and expired
leases, not interruptions.  Each renewal changes the body (``renewals``), so the ETag
changes too: S3 ETags are content hashes, and an unchanged body would let a stale ETag
match a renewed lease.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from s3exp import _keys
from s3exp._names import safe_name
from s3exp.stores import ObjectMeta

__all__ = ["Lease", "LeaseState", "RunListing", "WorkerIdentity", "is_stale", "parse_listing"]

LeaseState = Literal["running", "released", "interrupted", "failed"]


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


@dataclass(frozen=True, slots=True)
class Lease:
    """The body of ``lease.json``."""

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
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Lease:
        raw = json.loads(data)
        raw["worker"] = WorkerIdentity(**raw["worker"])
        return cls(**raw)

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

    @property
    def budget_spent(self) -> bool:
        return self.failures >= self.budget


def is_stale(last_modified: datetime, ttl: float, server_now: datetime) -> bool:
    """True if a lease last written at ``last_modified`` has expired on the server's clock.

    Both times come from the server, so no worker's clock is involved.  One second is
    added for the one-second resolution of HTTP dates.
    """
    return server_now - last_modified > timedelta(seconds=ttl + 1)


@dataclass(slots=True)
class RunObjects:
    """What a LIST of one run's prefix shows, without reading any body."""

    lease: ObjectMeta | None = None
    result: ObjectMeta | None = None
    errors: list[int] = field(default_factory=list)
    interrupts: list[int] = field(default_factory=list)
    error_records: list[ObjectMeta] = field(default_factory=list)

    @property
    def has_history(self) -> bool:
        """Errors or interruptions: the lease may be released, interrupted or failed, which
        only its body tells."""
        return bool(self.errors or self.interrupts)


@dataclass(slots=True)
class RunListing:
    """One LIST of ``runs/<exp>/``, grouped by run."""

    runs: dict[str, RunObjects]
    server_now: datetime

    def get(self, run_id: str) -> RunObjects:
        return self.runs.get(run_id) or RunObjects()


def parse_listing(exp: str, metas: list[ObjectMeta], server_now: datetime) -> RunListing:
    prefix = _keys.runs_prefix(exp)
    runs: dict[str, RunObjects] = {}
    for m in metas:
        rest = m.key[len(prefix):]
        run_id, _, name = rest.partition("/")
        objs = runs.setdefault(run_id, RunObjects())
        if name == "lease.json":
            objs.lease = m
        elif name == "result.json":
            objs.result = m
        elif name.startswith(("error-", "interrupt-")) and name.endswith(".json"):
            kind, _, num = name[:-5].partition("-")
            if num.isdigit():
                (objs.errors if kind == "error" else objs.interrupts).append(int(num))
                if kind == "error":
                    objs.error_records.append(m)
    return RunListing(runs, server_now)


def record(kind: str, lease: Lease, now: datetime, **extra: Any) -> bytes:
    """The body of an error or interrupt record of ``lease``'s attempt."""
    body = {"kind": kind, "experiment": lease.experiment, "run_id": lease.run_id,
            "attempt": lease.attempt, "token": lease.token, "worker": asdict(lease.worker),
            "at": now.isoformat(), **extra}
    return (json.dumps(body, indent=1, default=str) + "\n").encode()
