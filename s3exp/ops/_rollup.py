"""The status rollup: ``status/<exp>.json``, one GET for the status of a large experiment.

Written by every compaction (``s3exp.ops.compact_and_record``) from the listing the
compaction has just read; read by whoever wants the status without listing the runs.
"""

from __future__ import annotations

from s3exp.bucket import ExperimentStatus, RunListing, keys
from s3exp.core import AlreadyExists, Conflict, NotFoundError, ObjectNotFound
from s3exp.ops._status import compute_status
from s3exp.specs import ExperimentSpec, load_experiment
from s3exp.stores import Store

__all__ = ["read_status_rollup", "write_status_rollup"]


def write_status_rollup(store: Store, exp: str, *, spec: ExperimentSpec | None = None,
                        listing: RunListing | None = None) -> ExperimentStatus:
    """Store the current status as ``status/<exp>.json`` (CAS), so that a status read for a
    large experiment is one GET.  Written by compaction, which passes the spec and the
    listing of the runs it has just read (saving a GET and a LIST of every run)."""
    st = compute_status(store, spec or load_experiment(store, exp), listing)
    body = st.to_bytes()
    key = keys.status_rollup(exp)
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
    key = keys.status_rollup(exp)
    try:
        blob = store.get(key)
    except ObjectNotFound:
        raise NotFoundError(f"no status rollup for {exp!r} yet (run s3exp compact {exp})") from None
    return ExperimentStatus.from_bytes(blob.data, key)
