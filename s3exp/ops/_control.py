"""An experiment's control object: pause, resume and cancel, set by operators.

``control/<exp>.json`` (:class:`~s3exp.bucket._records.ControlRecord`) is absent while
an experiment is active.  Workers read it at most every few seconds; operators change it
with a compare-and-swap loop, so two operators racing never clobber each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from s3exp.bucket import ControlRecord, ControlState, keys
from s3exp.core import AlreadyExists, Conflict, ObjectNotFound
from s3exp.specs import load_experiment
from s3exp.stores import Store

__all__ = ["Control", "ControlState", "read_control", "set_control"]


@dataclass(frozen=True, slots=True)
class Control:
    """The control state and the ETag of the control object (None when there is none)."""

    state: ControlState
    etag: str | None


def read_control(store: Store, exp: str) -> Control:
    """One GET; ``active`` when the object does not exist.  A damaged control object
    raises DamagedObject."""
    key = keys.control(exp)
    try:
        blob = store.get(key)
    except ObjectNotFound:
        return Control("active", None)
    return Control(ControlRecord.from_bytes(blob.data, key).state, blob.etag)


def set_control(store: Store, exp: str, state: ControlState) -> str:
    """Set the experiment's control state; returns the previous one."""
    load_experiment(store, exp)  # NotFoundError for unknown experiments
    body = ControlRecord(state).to_bytes()
    while True:
        current = read_control(store, exp)
        try:
            if current.etag is None:
                store.put_if_absent(keys.control(exp), body)
            else:
                store.put_if_match(keys.control(exp), body, current.etag)
            return current.state
        except (AlreadyExists, Conflict):
            continue  # another operator moved first; read again
