"""Keeping one lease: renewals, the deadline, and every write of the lease after its claim.

A :class:`LeaseKeeper` holds the lease of one claimed run and its current ETag, and is the
only writer of it.  It follows the timing rules of :mod:`s3exp.bucket._leases`: freshness
is timed from before each write is first sent; a heartbeat thread renews every ``ttl/3``
once the run has lived that long (started by the process's timer thread, so a short run
starts no thread); and a deadline timer, re-armed by every successful write, declares the
lease lost ``ttl`` after the last success's send even while a renewal is in flight.

Concurrency: ``lock`` serialises lease writes (the heartbeat's renewals and the owner's
final writes).  ``on_lost`` and ``on_beat`` are called on the heartbeat or timer thread and
must not block on ``lock``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from s3exp.bucket import Lease, heartbeat_interval, keys
from s3exp.core import Clock, Conflict, LeaseLost, StoreError, Timer, call_later
from s3exp.runs._claims import Claim
from s3exp.stores import ObjectMeta, Store

__all__ = ["LeaseKeeper"]


class LeaseKeeper:
    """The lease of one claimed run.  ``on_lost`` is called once the lease is taken over or
    its deadline passes; ``on_beat`` after each successful renewal (False: stop beating)."""

    def __init__(self, store: Store, claim: Claim, clock: Clock, *,
                 on_lost: Callable[[], None], on_beat: Callable[[], bool]) -> None:
        self.store = store
        self.clock = clock
        self.lease: Lease = claim.lease
        self.meta: ObjectMeta = claim.meta
        self.key = keys.lease(claim.lease.experiment, claim.lease.run_id)
        self.lock = threading.RLock()
        self.lost = threading.Event()
        self.ended = False
        """Set by the owner once the run's outcome is written: no renewal after it."""
        self._on_lost = on_lost
        self._on_beat = on_beat
        # Freshness is timed from the claim's first send (see "Timing rules").
        self._renewed_at = claim.sent
        self._heartbeat: _Heartbeat | None = None
        self._hb_lock = threading.Lock()
        self._stopped = False
        self._deadline: Timer | None = None
        first_beat = heartbeat_interval(self.lease.ttl) - self.seconds_since_renewal()
        self._hb_timer = call_later(first_beat, self._start_heartbeat)

    def seconds_since_renewal(self) -> float:
        """Since the send of the last successful lease write, on the suspend-counting clock."""
        return self.clock.monotonic() - self._renewed_at

    # -- writes ------------------------------------------------------------------------

    def write(self, new: Lease) -> None:
        """Replace the lease by CAS on the ETag we last wrote; LeaseLost if it changed."""
        sent = self.clock.monotonic()
        try:
            self.meta = self.store.put_if_match(self.key, new.to_bytes(), self.meta.etag)
        except Conflict:
            self.lost.set()
            raise LeaseLost(self.lease.experiment, self.lease.run_id, self.lease.attempt) from None
        self.lease = new
        self._renewed_at = sent
        with self._hb_lock:
            if self._deadline is not None and not self._stopped:
                self._arm_deadline()

    def renew(self) -> None:
        with self.lock:
            if self.ended or self.lost.is_set():
                return
            self.write(self.lease.renewed())

    def confirm_claim(self) -> bool:
        """Before the body starts: a claim whose reply came back after a heartbeat interval
        may already have been taken over, so renew it first.  False if it was lost."""
        if self.seconds_since_renewal() < heartbeat_interval(self.lease.ttl):
            return True
        try:
            self.renew()
            return True
        except LeaseLost:
            pass
        except StoreError:
            if self.seconds_since_renewal() < self.lease.ttl:
                return True  # still ours for certain; the heartbeat tries again
        self.lost.set()
        self.stop()
        return False

    # -- heartbeat and deadline -------------------------------------------------------

    def _start_heartbeat(self) -> None:
        """On the timer thread, when the first renewal falls due."""
        with self._hb_lock:
            if self._stopped:
                return
            self._arm_deadline()
            self._heartbeat = _Heartbeat(self)
            self._heartbeat.start()

    def _arm_deadline(self) -> None:
        """(Re)schedule the deadline: ``ttl`` after the last successful write's send.
        Called with ``_hb_lock`` held."""
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = call_later(self.lease.ttl - self.seconds_since_renewal(), self._on_deadline)

    def _on_deadline(self) -> None:
        """On the timer thread: no renewal succeeded within the TTL (a reply held up, a
        suspend, an outage), so another worker may take the run over at any moment.  Stop
        the body now, even while a renewal is in flight (which holds ``lock``)."""
        if self.ended or self.lost.is_set():
            return
        if self.seconds_since_renewal() < self.lease.ttl:
            with self._hb_lock:  # a renewal landed meanwhile, or an injected clock is slow
                if not self._stopped:
                    self._arm_deadline()
            return
        self.declare_lost()

    def declare_lost(self) -> None:
        self.lost.set()
        self._on_lost()

    def beat(self) -> bool:
        """One renewal, then ``on_beat``; False when the heartbeat must stop."""
        try:
            self.renew()
        except LeaseLost:
            self.declare_lost()
            return False
        except StoreError:
            # Transient trouble: keep trying until the deadline says otherwise.
            if self.seconds_since_renewal() > self.lease.ttl:
                self.declare_lost()
                return False
        return self._on_beat()

    def stop(self) -> None:
        """Stop renewing: no timer, no heartbeat thread (joined unless the lease is lost:
        its heartbeat may be blocked in a renewal whose reply is late, and whatever that
        renewal does, it cannot make the run ours again)."""
        with self._hb_lock:
            self._stopped = True
            self._hb_timer.cancel()
            if self._deadline is not None:
                self._deadline.cancel()
            hb = self._heartbeat
        if hb is None:
            return
        hb.stop_event.set()
        if threading.current_thread() is not hb and not self.lost.is_set():
            hb.join(timeout=5)


class _Heartbeat(threading.Thread):
    """Renews one lease every ttl/3 by If-Match until told to stop or the lease is lost.
    Its first beat is at once: it is started when that falls due."""

    def __init__(self, keeper: LeaseKeeper) -> None:
        super().__init__(name=f"s3exp-heartbeat-{keeper.lease.run_id}", daemon=True)
        self.keeper = keeper
        self.stop_event = threading.Event()

    def run(self) -> None:  # noqa: D102 - threading API
        interval = heartbeat_interval(self.keeper.lease.ttl)
        while not self.stop_event.is_set():
            if not self.keeper.beat():
                return
            if self.stop_event.wait(interval):
                return
