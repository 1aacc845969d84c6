"""The compaction manifest: what is compacted, and where its parts are.

``compaction/<exp>/manifest.json`` (:class:`~s3exp.bucket._records.Manifest`) lists the
compacted runs (with their winning attempt) and the parts that hold them; it is committed
by compare-and-swap (:mod:`s3exp.tables._compaction`).  A committed part is written first
under ``compaction/<exp>/pending/`` and then published (copied) to ``metrics/`` or
``results/``; the exact readers read each part wherever it is now, and the next compactor
rolls an unpublished generation forward.  Both sides use this module, so the readers never
import the compactor.
"""

from __future__ import annotations

from typing import Any

from s3exp.bucket import Manifest, keys
from s3exp.core import (
    AlreadyExists,
    Conflict,
    DamagedObject,
    ObjectNotFound,
    SystemClock,
)
from s3exp.stores import ObjectMeta, Store

__all__ = ["Manifest", "commit_manifest", "part_keys", "publish", "read_manifest"]


def read_manifest(store: Store, exp: str) -> Manifest:
    """The committed manifest (empty, with no ETag, before the first commit)."""
    key = keys.manifest(exp)
    try:
        blob = store.get(key)
    except ObjectNotFound:
        return Manifest(exp)
    return Manifest.from_bytes(blob.data, key, blob.etag)


def commit_manifest(store: Store, old: Manifest, new: Manifest) -> ObjectMeta:
    """Compare-and-swap ``new`` over ``old`` (create-only for the first generation).
    Raises AlreadyExists or Conflict if another compactor committed first."""
    body = new.to_bytes(SystemClock().now())
    key = keys.manifest(new.experiment)
    if old.etag is None:
        return store.put_if_absent(key, body)
    return store.put_if_match(key, body, old.etag)


def part_keys(store: Store, manifest: Manifest, table: str) -> list[str]:
    """Where to read each committed part of ``table`` now: its published key once
    published, else its pending key (one LIST of the table's prefix)."""
    wanted = [p for p in manifest.parts if p["table"] == table]
    if not wanted:
        return []
    published = {m.key for m in store.list(keys.table_prefix(table, manifest.experiment))}
    return [str(p["key"]) if p["key"] in published else str(p["pending"]) for p in wanted]


def publish(store: Store, manifest: Manifest) -> int:
    """Copy committed parts that are not yet at their published key (roll forward);
    returns how many this call published.

    Only the newest generation can be unpublished: whoever commits generation G+1 has
    first rolled generation G forward (on the very manifest its CAS replaces).  So one
    HEAD per part of that generation, not a LIST of the tables, tells what to do.
    """
    published = 0
    for part in manifest.parts:
        if int(part["generation"]) != manifest.generation:
            continue
        try:
            store.head(part["key"])
            continue
        except ObjectNotFound:
            pass
        try:
            blob = store.get(part["pending"])
        except ObjectNotFound:
            # Published, and its pending copy removed, by a racing compactor since our
            # HEAD.  Anything else would be a lost part: say so loudly.
            _require_published(store, manifest, part)
            continue
        try:
            store.put_if_absent(part["key"], blob.data)
            published += 1
        except AlreadyExists:
            pass
        try:
            store.delete_if_match(part["pending"], blob.etag)
        except Conflict:
            pass
    return published


def _require_published(store: Store, manifest: Manifest, part: dict[str, Any]) -> None:
    try:
        store.head(part["key"])
    except ObjectNotFound:
        raise DamagedObject(keys.manifest(manifest.experiment),
                            f"committed part {part['key']} of generation {manifest.generation} "
                            f"is neither published nor pending ({part['pending']})") from None
