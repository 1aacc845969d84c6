"""What one LIST of ``runs/<exp>/`` shows, grouped by run, without reading any body.

``list_runs`` is the one place that lists an experiment's runs; claimers, status,
compaction, the readers and reset all work from its :class:`RunListing`.  A run is done
when one of its ``result-<NNNN>.json`` keys is non-empty (sizes are in the listing); an
empty one is a seal (see :mod:`s3exp.bucket._leases`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from s3exp.bucket import keys
from s3exp.stores import ObjectMeta, Store

__all__ = ["RunListing", "RunObjects", "list_runs", "parse_listing"]


@dataclass(slots=True)
class RunObjects:
    """One run's objects as a LIST shows them."""

    lease: ObjectMeta | None = None
    result: ObjectMeta | None = None
    """The run's committed (non-empty) result, if any; its attempt is ``winner``."""
    winner: int | None = None
    sealed: list[int] = field(default_factory=list)
    """Attempts fenced out by an empty result key."""
    errors: list[int] = field(default_factory=list)
    interrupts: list[int] = field(default_factory=list)
    error_records: list[ObjectMeta] = field(default_factory=list)
    extra_results: list[ObjectMeta] = field(default_factory=list)
    """Further non-empty results, which the protocol never makes (damaged data)."""

    @property
    def has_history(self) -> bool:
        """Errors, interruptions or a sealed attempt: the lease may be released,
        interrupted or failed, which only its body tells."""
        return bool(self.errors or self.interrupts or self.sealed)


@dataclass(slots=True)
class RunListing:
    """One LIST of ``runs/<exp>/``, grouped by run, and the server's time of it."""

    runs: dict[str, RunObjects]
    server_now: datetime

    def get(self, run_id: str) -> RunObjects:
        return self.runs.get(run_id) or RunObjects()


def parse_listing(exp: str, metas: list[ObjectMeta], server_now: datetime) -> RunListing:
    prefix = keys.runs_prefix(exp)
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
            else:
                objs.extra_results.append(m)
        elif kind in ("error", "interrupt"):
            (objs.errors if kind == "error" else objs.interrupts).append(int(num))
            if kind == "error":
                objs.error_records.append(m)
    return RunListing(runs, server_now)


def list_runs(store: Store, exp: str) -> RunListing:
    """LIST every object of ``exp``'s runs (one request per 1,000 keys) and group them."""
    return parse_listing(exp, list(store.list(keys.runs_prefix(exp))), store.server_time())
