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

Fencing: the commit is the fence
--------------------------------

Attempt ``k``'s outcome is committed by creating ``result-<k>.json`` (create-only).  The
rule that makes a zombie's commit fail whatever its clocks say: **nobody moves a lease
from attempt k (takeover, reclaim of a released run, expiry to failed, operator reset of
a stale lease) before attempt k is sealed**, that is before ``result-<k>.json`` exists
empty (:func:`seal`).  Create-only means that key gets exactly one body, ever:

* if attempt k's result was created first, the seal fails, the mover sees a result and
  leaves the run alone (it is done, by the only attempt that ever held it);
* if the seal was created first, attempt k's commit fails (``AlreadyExists`` on an empty
  object): it learns it was fenced and writes nothing that counts.

So at most one non-empty result exists per run, and its attempt still held the lease when
it was created: no later attempt had been (or will ever be) granted.  Result keys are
never deleted.  Errors, interrupts and the failure count are lease CAS writes on the
holder's ETag, which a takeover changes, so a zombie's cannot land either; its error or
interrupt record may (they are history, and the taker writes its own for that attempt).

Timing rules (every one of them, in one place)
----------------------------------------------

Timing decides only *liveness* (how soon a dead worker's run moves on, when a holder
stops its body); no outcome depends on it.

* **Stale, on the server's clock**: a lease is stale when ``server_now - last_modified >
  ttl + STALE_MARGIN``.  ``Last-Modified`` and ``Date`` have whole-second resolution, so
  the estimate can exceed the truth by up to 1 s: ``STALE_MARGIN`` = 2 s leaves 1 s of
  real margin.
* **Freshness, on the holder's clock**: every lease write (claim, takeover, reclaim,
  renewal, release) is timed from *before its request is first sent*, retries included;
  the server applied it later than that, so nobody can judge it stale until at least
  ``ttl + 1 s`` after that instant.  The holder's clock counts suspend
  (:func:`s3exp.core._clock.elapsed`).
* **Heartbeat**: every ``ttl / 3`` after the last successful write's send.
* **Deadline**: ``ttl`` after the last successful write's send, the holder stops the
  body (LeaseLost in Python, SIGTERM then SIGKILL for a command's child), whether or not a
  renewal is still in flight: a renewal whose reply comes back late proves nothing.
* **Late claims**: a claim (or takeover) whose reply arrived after one heartbeat
  interval is renewed before its body starts; if that fails, the claim was lost.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from s3exp.bucket import _keys
from s3exp.core._errors import AlreadyExists
from s3exp.core._names import safe_name
from s3exp.stores import ObjectMeta, Store

STALE_MARGIN = 2.0
"""Seconds added to the TTL before a lease counts as stale (see "Timing rules")."""

__all__ = ["STALE_MARGIN", "Lease", "LeaseState", "RunListing", "WorkerIdentity", "heartbeat_interval",
           "is_stale", "parse_listing", "seal"]

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

    Both times come from the server, so no worker's clock is involved; ``STALE_MARGIN``
    covers the whole-second resolution of HTTP dates with a second to spare.
    """
    return server_now - last_modified > timedelta(seconds=ttl + STALE_MARGIN)


def heartbeat_interval(ttl: float) -> float:
    """How often a holder renews its lease (see "Timing rules")."""
    return max(0.05, ttl / 3)


def seal(store: Store, exp: str, run_id: str, attempt: int) -> bool:
    """Fence attempt ``attempt`` out before its lease is moved on (see "Fencing").

    True when the attempt is sealed (by this call or an earlier one); False when the
    attempt committed a result first, so the run is done and its lease must be left alone.
    Raises the store's errors (Unavailable: unknown, so move nothing).
    """
    key = _keys.result(exp, run_id, attempt)
    try:
        store.put_if_absent(key, b"")
        return True
    except AlreadyExists:
        return store.head(key).size == 0


@dataclass(slots=True)
class RunObjects:
    """What a LIST of one run's prefix shows, without reading any body."""

    lease: ObjectMeta | None = None
    result: ObjectMeta | None = None
    """The run's committed (non-empty) result, if any; its attempt is ``winner``."""
    winner: int | None = None
    sealed: list[int] = field(default_factory=list)
    """Attempts fenced out by an empty result key."""
    errors: list[int] = field(default_factory=list)
    interrupts: list[int] = field(default_factory=list)
    error_records: list[ObjectMeta] = field(default_factory=list)

    @property
    def has_history(self) -> bool:
        """Errors, interruptions or a sealed attempt: the lease may be released,
        interrupted or failed, which only its body tells."""
        return bool(self.errors or self.interrupts or self.sealed)


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
            continue
        kind, _, num = name[:-5].partition("-") if name.endswith(".json") else ("", "", "")
        if not num.isdigit():
            continue
        if kind == "result":
            if m.size == 0:
                objs.sealed.append(int(num))
            elif objs.result is None:  # there is at most one (see "Fencing")
                objs.result, objs.winner = m, int(num)
        elif kind in ("error", "interrupt"):
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
