"""The cost meter: every worker and compactor records the store requests it made.

Each store counts its own requests by kind (``store.requests``; the S3 store counts every
HTTP request botocore sends, retries included).  A :class:`CostMeter` adds what its
store counted since its last write to one object per worker,

    costs/<exp>/<meter id>.json        {"requests": {"PUT": n, "GET": n, ...}, ...}

at most every ``interval`` seconds and when the worker exits, so it costs a handful of
requests per worker lifetime, not per run.  The write is never blind: the first is
create-only; after it, compare-and-swap on the ETag of the meter's own last write.  When
the condition fails (a worker started again under the same ``--worker-id``, or the
compactors, which share one id), the meter reads the object and adds its own counts to
what is there, so concurrent writers under one id add up instead of overwriting each
other.  The meter's writes (and the reads a failed condition costs) are counted too: each
write includes itself.

``s3exp status EXP --cost`` LISTs ``costs/<exp>/`` and GETs each object
(:func:`read_costs`), and prices the totals at S3 Standard request prices.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from s3exp.bucket import CostRecord, keys
from s3exp.core import (
    AlreadyExists,
    ConfigError,
    Conflict,
    DamagedObject,
    ObjectNotFound,
    StoreError,
    name_problem,
)
from s3exp.stores import Store

__all__ = [
    "COMPACTOR_ID",
    "KINDS",
    "OTHER_PRICE_PER_1000",
    "PRICE_PER_1000",
    "CostMeter",
    "CostReport",
    "check_meter_id",
    "dollars",
    "read_costs",
    "record_requests",
    "render_costs",
]

log = logging.getLogger(__name__)

KINDS = ("PUT", "GET", "HEAD", "LIST", "DELETE")

# S3 Standard request prices (us-east-1), dollars per 1,000 requests.  PUT, COPY, POST
# and LIST are the expensive tier; GET, HEAD and every other request the cheap one;
# DELETE is free.
PRICE_PER_1000: dict[str, float] = {
    "PUT": 0.005, "COPY": 0.005, "POST": 0.005, "LIST": 0.005,
    "GET": 0.0004, "HEAD": 0.0004,
    "DELETE": 0.0,
}
OTHER_PRICE_PER_1000 = 0.0004


# Every compactor (the CLI's ``compact``, the Lambda) adds to one record per experiment.
COMPACTOR_ID = "compactor"


def dollars(counts: Mapping[str, int]) -> float:
    """What ``counts`` (requests by kind) cost at S3 Standard request prices."""
    return sum(n * PRICE_PER_1000.get(kind, OTHER_PRICE_PER_1000) for kind, n in counts.items()) / 1000


def check_meter_id(meter_id: str, what: str = "worker id") -> str:
    """``meter_id`` if it can be a key segment; ConfigError (one line) otherwise."""
    problem = name_problem(meter_id)
    if problem is not None:
        raise ConfigError(f"invalid {what} {meter_id!r}: {problem}")
    return meter_id


def _delta(now: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    out = {k: n - before.get(k, 0) for k, n in now.items()}
    return {k: n for k, n in out.items() if n}


def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, n in b.items():
        out[k] = out.get(k, 0) + n
    return {k: n for k, n in out.items() if n}


class CostMeter:
    """Adds one store's request counts to ``costs/<experiment>/<meter_id>.json``.

    Counts made before ``baseline`` (default: before the meter was created) are not its
    own and are left out.  Thread
    safe; :meth:`maybe_flush` writes only when ``interval`` seconds have passed since the
    last write (or since the start), :meth:`flush` always.  ``served`` names every
    experiment a worker claimed from: a worker's requests are not split by experiment,
    so a worker serving several records them all under the first.
    """

    def __init__(self, store: Store, experiment: str, meter_id: str, *, role: str = "worker",
                 interval: float = 300.0, served: Sequence[str] = (),
                 baseline: Mapping[str, int] | None = None) -> None:
        check_meter_id(meter_id, f"{role} id")
        self.store = store
        self.experiment = experiment
        self.meter_id = meter_id
        self.role = role
        self.interval = interval
        self.served = list(served) or [experiment]
        self.key = keys.cost(experiment, meter_id)
        self._lock = threading.Lock()
        # What is accounted for, or not ours: the store's counts when the meter's owner
        # started (``baseline``), else now.
        self._recorded = dict(baseline) if baseline is not None else store.requests.snapshot()
        self._etag: str | None = None  # of our own last write
        self._stored: dict[str, int] = {}  # what that write holds
        self._last = time.monotonic()
        self.writes = 0

    def pending(self) -> dict[str, int]:
        """Requests counted since the last write, not recorded yet."""
        return _delta(self.store.requests.snapshot(), self._recorded)

    def maybe_flush(self) -> bool:
        """Flush if ``interval`` has passed since the last write; True if it wrote."""
        if time.monotonic() - self._last < self.interval:
            return False
        return self.flush()

    def flush(self) -> bool:
        """Add the pending counts to the stored object now; False if there were none."""
        with self._lock:
            self._last = time.monotonic()
            for _ in range(10):
                now = self.store.requests.snapshot()
                delta = _delta(now, self._recorded)
                if not delta and self._etag is not None:
                    return False
                delta = _add(delta, {"PUT": 1})  # the write below counts itself
                total = _add(self._stored, delta)
                body = self._body(total)
                try:
                    if self._etag is None:
                        meta = self.store.put_if_absent(self.key, body)
                    else:
                        meta = self.store.put_if_match(self.key, body, self._etag)
                except (AlreadyExists, Conflict):
                    self.reload()  # another writer under this id: add to what it wrote
                    continue
                self._etag, self._stored = meta.etag, total
                self._recorded = _add(now, {"PUT": 1})
                self.writes += 1
                return True
            raise StoreError(f"could not record the request counts in {self.key!r}: "
                             "it kept changing under us", self.key)

    def reload(self) -> None:
        """Read the stored record (what a write must add to), or nothing if none exists."""
        try:
            blob = self.store.get(self.key)
        except ObjectNotFound:
            self._etag, self._stored = None, {}
            return
        # A damaged record raises DamagedObject: it is not overwritten.
        self._etag, self._stored = blob.etag, CostRecord.from_bytes(blob.data, self.key).requests

    def _body(self, total: Mapping[str, int]) -> bytes:
        return CostRecord(self.meter_id, self.role, self.experiment, dict(total), self.served,
                          socket.gethostname(), datetime.now(UTC).isoformat()).to_bytes()


def record_requests(store: Store, experiment: str, baseline: Mapping[str, int], *,
                    meter_id: str = COMPACTOR_ID, role: str = "compactor") -> None:
    """Add the requests ``store`` made since ``baseline`` (a ``requests.snapshot()``) to
    the record ``meter_id`` of ``experiment``, once: what a compaction costs.  The record
    usually exists, so it is read first (GET) and swapped (PUT), two requests."""
    meter = CostMeter(store, experiment, meter_id, role=role, baseline=baseline)
    meter.reload()
    meter.flush()


@dataclass(slots=True)
class CostReport:
    """What ``status --cost`` shows: requests and dollars so far, total and per run."""

    experiment: str
    requests: dict[str, int]
    dollars: float
    finished_runs: int
    requests_per_run: dict[str, float] | None
    dollars_per_run: float | None
    meters: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_costs(store: Store, exp: str, finished_runs: int) -> CostReport:
    """Sum the cost records of ``exp``: one LIST of ``costs/<exp>/`` and one GET each."""
    total: dict[str, int] = {}
    meters: list[dict[str, Any]] = []
    for meta in store.list(keys.costs_prefix(exp)):
        try:
            record = CostRecord.from_bytes(store.get(meta.key).data, meta.key)
        except ObjectNotFound:
            continue
        except DamagedObject as e:
            log.warning("skipped %s", e)  # a damaged record costs its own line, not the total
            continue
        total = _add(total, record.requests)
        meters.append({"id": record.id, "role": record.role, "requests": record.requests,
                       "dollars": dollars(record.requests), "updated_at": record.updated_at})
    ordered = {k: total.get(k, 0) for k in KINDS}
    ordered.update({k: n for k, n in sorted(total.items()) if k not in ordered})
    per_run = ({k: round(n / finished_runs, 4) for k, n in ordered.items()}
               if finished_runs else None)
    cost = dollars(ordered)
    return CostReport(exp, ordered, cost, finished_runs, per_run,
                      cost / finished_runs if finished_runs else None, meters)


def render_costs(report: CostReport) -> str:
    """The human-readable cost table of ``status --cost``."""
    lines = [f"\n  S3 requests so far ({len(report.meters)} cost records), at S3 Standard prices:",
             f"    {'request':<8} {'total':>10} {'per run':>9} {'dollars':>10}"]
    for kind, n in report.requests.items():
        per = f"{report.requests_per_run[kind]:.2f}" if report.requests_per_run else "-"
        price = n * PRICE_PER_1000.get(kind, OTHER_PRICE_PER_1000) / 1000
        lines.append(f"    {kind:<8} {n:>10} {per:>9} {price:>10.4f}")
    n_all = sum(report.requests.values())
    per_all = f"{n_all / report.finished_runs:.2f}" if report.finished_runs else "-"
    lines.append(f"    {'all':<8} {n_all:>10} {per_all:>9} {report.dollars:>10.4f}")
    if report.finished_runs:
        lines.append(f"  ${report.dollars:.4f} so far; ${report.dollars / report.finished_runs * 1000:.4f} "
                     f"per 1,000 finished runs ({report.finished_runs} finished)")
    else:
        lines.append(f"  ${report.dollars:.4f} so far; no finished runs yet")
    return "\n".join(lines)
