"""The records that end an attempt: the commit of its result, or an error or interrupt
record and the lease's move to ``released``, ``failed`` or ``interrupted``.

The commit is the fence (see :mod:`s3exp.bucket._leases`): the create-only write of this
attempt's ``result-<NNNN>.json``, refused once a taker has sealed the attempt.  The lease
moves are CAS writes on the holder's ETag (:class:`~s3exp.runs._lease_keeper.LeaseKeeper`),
refused once the lease was taken over.  Called with the keeper's lock held.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from s3exp.bucket import AttemptRecord, ResultRecord, keys
from s3exp.core import AlreadyExists, LeaseLost, RunAlreadyCompleted, StoreError
from s3exp.runs._lease_keeper import LeaseKeeper
from s3exp.stores import Store

__all__ = ["commit", "record_failure", "record_interrupt"]


def commit(store: Store, keeper: LeaseKeeper, record: ResultRecord) -> None:
    """Create this attempt's result.  LeaseLost if the attempt was sealed (nothing
    counts); RunAlreadyCompleted for another writer's result under this attempt's key,
    which the protocol never produces."""
    key = keys.result(record.experiment, record.run_id, record.attempt)
    try:
        store.put_if_absent(key, record.to_bytes())
    except AlreadyExists:
        _refused(store, keeper, key)


def _refused(store: Store, keeper: LeaseKeeper, key: str) -> None:
    lease = keeper.lease
    blob = store.get(key)
    if blob.data:
        winner = ResultRecord.from_bytes(blob.data, key)
        raise RunAlreadyCompleted(lease.experiment, lease.run_id, winner.to_dict())
    keeper.lost.set()
    # Sealed, but maybe still ours: the taker may not have moved the lease yet (or lost
    # its CAS).  Then give the run back now instead of leaving it to expire.
    with contextlib.suppress(StoreError, LeaseLost):
        keeper.write(lease.with_state("released", note="fenced"))
    raise LeaseLost(lease.experiment, lease.run_id, lease.attempt)


def record_failure(store: Store, keeper: LeaseKeeper, error: str, kind: str, now: datetime) -> None:
    """The attempt failed: its error record, then the lease ``released`` for a retry, or
    ``failed`` once the budget is spent.  A lost lease is left alone."""
    lease = keeper.lease
    with contextlib.suppress(AlreadyExists):  # a retried upload, or the taker's record
        store.put_if_absent(keys.error(lease.experiment, lease.run_id, lease.attempt),
                            AttemptRecord.of("error", lease, now, reason=kind, error=error).to_bytes())
    spent = lease.failures + 1 >= lease.budget
    with contextlib.suppress(LeaseLost):
        keeper.write(lease.with_state("failed" if spent else "released", failed=True, note=kind))


def record_interrupt(store: Store, keeper: LeaseKeeper, reason: str, now: datetime) -> None:
    """The attempt was interrupted (not a failure): its record, then the lease
    ``interrupted``, so that another worker takes the run up at once."""
    lease = keeper.lease
    with contextlib.suppress(AlreadyExists):
        store.put_if_absent(keys.interrupt(lease.experiment, lease.run_id, lease.attempt),
                            AttemptRecord.of("interrupt", lease, now, reason=reason).to_bytes())
    with contextlib.suppress(LeaseLost):
        keeper.write(lease.with_state("interrupted", note=reason))
