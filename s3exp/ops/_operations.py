"""Operator actions: reset runs, pause / resume / cancel an experiment, read results.

Every change is a conditional write, so an operator racing a worker never clobbers it:
a reset of a run whose lease a worker just moved simply fails for that run and says so.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Literal

from s3exp.bucket import _keys
from s3exp.bucket._leases import Lease, is_stale, parse_listing, seal
from s3exp.core._errors import AlreadyExists, Conflict, NotFoundError, ObjectNotFound
from s3exp.runs._claims import read_control
from s3exp.specs._expansion import expand
from s3exp.specs._experiments import load_experiment
from s3exp.stores import Store

__all__ = ["read_results", "reset_runs", "set_control"]

Control = Literal["active", "paused", "cancelled"]


def set_control(store: Store, exp: str, state: Control) -> str:
    """Set the experiment's control state; returns the previous one."""
    load_experiment(store, exp)  # NotFoundError for unknown experiments
    body = json.dumps({"state": state}).encode()
    while True:
        previous, etag = read_control(store, exp)
        try:
            if etag is None:
                store.put_if_absent(_keys.control(exp), body)
            else:
                store.put_if_match(_keys.control(exp), body, etag)
            return previous
        except (AlreadyExists, Conflict):
            continue  # another operator moved first; read again


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
    listing = parse_listing(exp, list(store.list(_keys.runs_prefix(exp))), store.server_time())
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
            blob = store.get(_keys.lease(exp, rid))
        except ObjectNotFound:
            continue
        lease = Lease.from_bytes(blob.data)
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
        new = replace(lease, state="released", budget=lease.failures + spec.max_attempts,
                      renewals=lease.renewals + 1, note="reset")
        try:
            store.put_if_match(_keys.lease(exp, rid), new.to_bytes(), blob.etag)
            done.append(rid)
        except Conflict:
            skipped[rid] = "changed while resetting; try again"
    for rid in targets - set(done) - set(skipped):
        skipped[rid] = "not started, nothing to reset"
    return {"reset": sorted(done), "skipped": skipped}


def read_results(store: Store, exp: str) -> list[dict[str, Any]]:
    """One record per finished run (its committed result body), in run-slot order."""
    spec = load_experiment(store, exp)
    listing = parse_listing(exp, list(store.list(_keys.runs_prefix(exp))), store.server_time())
    rows = []
    for slot in expand(spec):
        objs = listing.get(slot.run_id)
        if objs.result is None:
            continue
        try:
            rows.append(json.loads(store.get(objs.result.key).data))
        except ObjectNotFound:
            continue
    return rows
