"""Reset: make runs claimable again, keeping their history.

Every change is a conditional write, so an operator racing a worker never clobbers it:
a reset of a run whose lease a worker just moved simply fails for that run and says so.
A stale running lease is sealed first (see :mod:`s3exp.bucket._leases`), so its holder,
should it wake up, cannot commit.
"""

from __future__ import annotations

from typing import Any

from s3exp.bucket import Lease, is_stale, keys, list_runs, seal
from s3exp.core import Conflict, NotFoundError, ObjectNotFound
from s3exp.specs import expand, load_experiment
from s3exp.stores import Store

__all__ = ["reset_runs"]


def reset_runs(store: Store, exp: str, *, failed: bool = False, interrupted: bool = False,
               run_ids: tuple[str, ...] = ()) -> dict[str, Any]:
    """Make runs claimable again, keeping their error history.

    ``failed``: every failed run gets a fresh budget of ``max_attempts``.
    ``interrupted``: interrupted runs, and running runs whose lease is stale, are released
    now instead of after the TTL.  ``run_ids``: these runs, whatever their state, unless
    done (a result is final).
    """
    spec = load_experiment(store, exp)
    known = {s.run_id for s in expand(spec)}
    for rid in run_ids:
        if rid not in known:
            raise NotFoundError(f"experiment {exp!r} has no run {rid!r}")
    listing = list_runs(store, exp)
    done: list[str] = []
    skipped: dict[str, str] = {}
    targets = set(run_ids)
    for rid, objs in listing.runs.items():
        if rid not in known or objs.lease is None:
            continue
        if objs.result is not None:
            if rid in targets:
                skipped[rid] = "done (results are final)"
            continue
        explicit = rid in targets
        if not (explicit or failed or interrupted):
            continue
        try:
            blob = store.get(keys.lease(exp, rid))
        except ObjectNotFound:
            continue
        lease = Lease.from_bytes(blob.data, blob.meta.key)
        stale = lease.state == "running" and is_stale(blob.meta.last_modified, lease.ttl, listing.server_now)
        wanted = (explicit or (failed and lease.state == "failed")
                  or (interrupted and (lease.state == "interrupted" or stale)))
        if not wanted:
            continue
        if lease.state == "running" and not stale:
            skipped[rid] = f"running on {lease.worker.id}; cancel or wait"
            continue
        if lease.state == "running" and not seal(store, exp, rid, lease.attempt):
            skipped[rid] = "done (results are final)"  # its holder committed just now
            continue
        new = lease.reset(spec.max_attempts)
        try:
            store.put_if_match(keys.lease(exp, rid), new.to_bytes(), blob.etag)
            done.append(rid)
        except Conflict:
            skipped[rid] = "changed while resetting; try again"
    for rid in targets - set(done) - set(skipped):
        skipped[rid] = "not started, nothing to reset"
    return {"reset": sorted(done), "skipped": skipped}
