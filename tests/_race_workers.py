"""Child-process bodies for test_races.py.

They run under the multiprocessing "spawn" start method, so they live in an importable
module and take only plain strings and numbers: each child builds its own store.
"""

from __future__ import annotations

import traceback
from typing import Any

from s3exp import AlreadyExists, Conflict
from s3exp.stores import FileStore, S3Store, Store

BARRIER_TIMEOUT = 120.0


def open_child_store(where: dict[str, str]) -> Store:
    """``where`` is {"kind": "file", "root": ...} or {"kind": "s3", "endpoint", ...}."""
    if where["kind"] == "file":
        return FileStore(where["root"])
    return S3Store(where["bucket"], where["prefix"], endpoint_url=where["endpoint"],
                   path_style=True, credentials=(where["access_key"], where["secret_key"]))


def create_race(worker: int, where: dict[str, str], rounds: int, barrier: Any, results: Any) -> None:
    """Each round: wait for everyone, then try to create ``race/<round>`` with a body
    naming this worker.  Reports [(round, "won" | "lost" | "error: ...")]."""
    outcomes: list[tuple[int, str]] = []
    try:
        store = open_child_store(where)
        for r in range(rounds):
            barrier.wait(BARRIER_TIMEOUT)
            body = f"worker {worker} round {r}".encode()
            try:
                store.put_if_absent(f"race/{r:04d}.json", body)
                outcomes.append((r, "won"))
            except AlreadyExists:
                outcomes.append((r, "lost"))
    except BaseException:  # noqa: BLE001 - report everything to the parent
        outcomes.append((-1, "error: " + traceback.format_exc()))
        barrier.abort()
    results.put((worker, outcomes))


def cas_counter(worker: int, where: dict[str, str], increments: int, barrier: Any,
                results: Any) -> None:
    """Increment the counter at ``counter.json`` ``increments`` times by get + put_if_match,
    retrying on Conflict.  Reports the values this worker wrote and its conflicts.

    The body carries the writer and its sequence number as well as the value, so that two
    writers never write identical bytes (S3 ETags are content hashes)."""
    written: list[int] = []
    conflicts = 0
    error = ""
    try:
        store = open_child_store(where)
        barrier.wait(BARRIER_TIMEOUT)
        for k in range(increments):
            while True:
                blob = store.get("counter.json")
                value = int(blob.data.split()[0])
                try:
                    store.put_if_match("counter.json", f"{value + 1} w{worker} k{k}".encode(),
                                       blob.etag)
                except Conflict:
                    conflicts += 1
                    continue
                written.append(value + 1)
                break
    except BaseException:  # noqa: BLE001 - report everything to the parent
        error = traceback.format_exc()
        barrier.abort()
    results.put((worker, written, conflicts, error))
