"""The lease protocol: the one object per run that says who is executing it.

A lease (``runs/<exp>/<run_id>/lease.json``, the record :class:`~s3exp.bucket._records.Lease`)
moves through these states, every move a conditional write on the lease key::

    (absent) --claim: create-only--> running(attempt 1)
    running  --renew: If-Match, renewals+1--> running
    running  --error: If-Match--> released          (failures+1; error record written first)
    running  --error, budget spent: If-Match--> failed
    running  --SIGTERM/SIGINT/cancel: If-Match--> interrupted   (not a failure)
    running, stale on the server's clock --takeover: If-Match on the stale ETag--> running(attempt+1)
    released | interrupted --claim: If-Match--> running(attempt+1)
    failed | released | interrupted --reset: If-Match--> released with a fresh budget

``attempt`` goes up with every execution, so it is unique per execution and fences metric
shards and results.  ``failures`` counts what ``max_attempts`` limits: errors and expired
leases, not interruptions.  Each renewal changes the body (``renewals``), so the ETag
changes too: S3 ETags are content hashes, and an unchanged body would let a stale ETag
match a renewed lease.

Fencing: the commit is the fence
--------------------------------

Attempt ``k``'s outcome is committed by creating ``result-<k>.json`` (create-only).  The
rule that makes a zombie's commit fail whatever its clocks say: **nobody moves a lease
from attempt k (takeover, reclaim of a released run, expiry to failed, operator reset of
a stale lease) before attempt k is sealed**, that is before ``result-<k>.json`` exists
empty (:func:`seal`).  Create-only means that key gets exactly one body, ever:

* if attempt k's result was created first, the seal fails, the mover sees a result and
  leaves the run alone (it is done, by the only attempt that ever held it);
* if the seal was created first, attempt k's commit fails (``AlreadyExists`` on an empty
  object): it learns it was fenced and writes nothing that counts.

So at most one non-empty result exists per run, and its attempt still held the lease when
it was created: no later attempt had been (or will ever be) granted.  Result keys are
never deleted.  Errors, interrupts and the failure count are lease CAS writes on the
holder's ETag, which a takeover changes, so a zombie's cannot land either; its error or
interrupt record may (they are history, and the taker writes its own for that attempt).

Timing rules (every one of them, in one place)
----------------------------------------------

Timing decides only *liveness* (how soon a dead worker's run moves on, when a holder
stops its body); no outcome depends on it.

* **Stale, on the server's clock**: a lease is stale when ``server_now - last_modified >
  ttl + STALE_MARGIN``.  ``Last-Modified`` and ``Date`` have whole-second resolution, so
  the estimate can exceed the truth by up to 1 s: ``STALE_MARGIN`` = 2 s leaves 1 s of
  real margin.
* **Freshness, on the holder's clock**: every lease write (claim, takeover, reclaim,
  renewal, release) is timed from *before its request is first sent*, retries included;
  the server applied it later than that, so nobody can judge it stale until at least
  ``ttl + 1 s`` after that instant.  The holder's clock counts suspend
  (:func:`s3exp.core._clock.elapsed`).
* **Heartbeat**: every ``ttl / 3`` after the last successful write's send.
* **Deadline**: ``ttl`` after the last successful write's send, the holder stops the
  body (LeaseLost in Python, SIGTERM then SIGKILL for a command's child), whether or not a
  renewal is still in flight: a renewal whose reply comes back late proves nothing.
* **Late claims**: a claim (or takeover) whose reply arrived after one heartbeat
  interval is renewed before its body starts; if that fails, the claim was lost.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from s3exp.bucket import keys
from s3exp.core import AlreadyExists
from s3exp.stores import Store

STALE_MARGIN = 2.0
"""Seconds added to the TTL before a lease counts as stale (see "Timing rules")."""

__all__ = ["STALE_MARGIN", "heartbeat_interval", "is_stale", "seal"]


def is_stale(last_modified: datetime, ttl: float, server_now: datetime) -> bool:
    """True if a lease last written at ``last_modified`` has expired on the server's clock.

    Both times come from the server, so no worker's clock is involved; ``STALE_MARGIN``
    covers the whole-second resolution of HTTP dates with a second to spare.
    """
    return server_now - last_modified > timedelta(seconds=ttl + STALE_MARGIN)


def heartbeat_interval(ttl: float) -> float:
    """How often a holder renews its lease (see "Timing rules")."""
    return max(0.05, ttl / 3)


def seal(store: Store, exp: str, run_id: str, attempt: int) -> bool:
    """Fence attempt ``attempt`` out before its lease is moved on (see "Fencing").

    True when the attempt is sealed (by this call or an earlier one); False when the
    attempt committed a result first, so the run is done and its lease must be left alone.
    Raises the store's errors (Unavailable: unknown, so move nothing).
    """
    key = keys.result(exp, run_id, attempt)
    try:
        store.put_if_absent(key, b"")
        return True
    except AlreadyExists:
        return store.head(key).size == 0
