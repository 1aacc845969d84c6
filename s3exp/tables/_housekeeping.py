"""What compaction cleans up, for storage, never for correctness: orphaned pending parts
and staged shards past their retention."""

from __future__ import annotations

import time
from datetime import timedelta

from s3exp.bucket import keys
from s3exp.core import Conflict
from s3exp.stores import ObjectMeta, Store
from s3exp.tables._manifest import Manifest, read_manifest

__all__ = ["ORPHAN_AGE", "collect_orphans", "expire_staging"]

ORPHAN_AGE = timedelta(hours=1)


def collect_orphans(store: Store, exp: str, orphan_age: timedelta = ORPHAN_AGE,
                    known: Manifest | None = None) -> int:
    """Delete pending parts that no manifest lists and that are older than ``orphan_age``
    on the store's clock (left by compactors that died before committing).  Returns how
    many were deleted.  ``orphan_age=0`` deletes every unlisted pending part: use it only
    when no compactor is running.  ``known``, a manifest already read, saves a GET when
    no part is pending outside it (the usual case: one LIST)."""
    pending = list(store.list(keys.pending_prefix(exp)))
    if known is not None:
        listed = {str(p["pending"]) for p in known.parts}
        pending = [m for m in pending if m.key not in listed]
    if not pending:
        return 0
    # Candidates: judge them against a manifest read now, so that a part committed a
    # moment ago is recognised (its compactor committed it young: see compact()).
    read_at = time.monotonic()
    listed = {str(p["pending"]) for p in read_manifest(store, exp).parts}
    cutoff = store.server_time() - orphan_age
    if orphan_age and time.monotonic() - read_at > orphan_age.total_seconds() / 2:
        return 0  # our manifest is too old to tell an orphan from a fresh commit
    deleted = 0
    for meta in pending:
        if meta.key in listed or meta.last_modified >= cutoff:
            continue
        try:
            store.delete_if_match(meta.key, meta.etag)
            deleted += 1
        except Conflict:
            pass
    return deleted


def expire_staging(store: Store, exp: str, compacted: set[str],
                   staged: dict[str, dict[int, list[ObjectMeta]]], retention: timedelta) -> int:
    """Delete shards of runs compacted before this call (winning and superseded attempts)
    that are older than ``retention``: the winning rows live in parts, the rest was kept
    for audit.  Only runs that were already in the manifest when this call began are
    touched, so a reader holding the previous manifest still finds the shards of runs
    compacted just now (and a reader that loses that race reads the view again).
    Returns how many were deleted."""
    deleted = 0
    if not compacted:
        return deleted
    cutoff = store.server_time() - retention
    for run_id, attempts in staged.items():
        if run_id not in compacted:
            continue
        for shards in attempts.values():
            for meta in shards:
                if meta.last_modified >= cutoff:
                    continue
                try:
                    store.delete_if_match(meta.key, meta.etag)
                    deleted += 1
                except Conflict:
                    pass
    return deleted
