"""Claiming runs: one worker's local picture of an experiment and its claim loop.

The picture comes from one LIST of ``runs/<exp>/`` and is refreshed only when it runs
dry, after repeated lost races, or when it is old.  Between refreshes a worker learns
from its own writes: a lost create tells it a run is taken.

Candidates, in order:

1. runs with history (an error or interrupt record) whose lease body says ``released`` or
   ``interrupted``: in-flight work is finished before new work starts;
2. runs whose lease is stale on the server's clock (its worker died): taken over by an
   If-Match write on the stale ETag;
3. free runs (no lease), in slot order, so that the cells with the fewest started runs
   come first.  A worker starts at a random one of the first ``window`` free slots and
   then walks forward through its picture, one slot per claim, so that workers claim
   runs in separate stretches instead of all racing for slot 0.  When it loses a race
   it has run into another worker's stretch; it jumps to a random slot of the
   ``window`` beyond where the other workers have probably got since its LIST (its own
   claims since then times the runs that were in flight).  ``prefer_dataset`` narrows
   the pick to one dataset when it has free slots.

Lease bodies are read (GET) only for candidates of kinds 1 and 2, and cached by ETag.
Before a lease of kind 1 or 2 is moved on, its attempt is sealed (:func:`s3exp.bucket._leases.seal`),
so that a zombie of that attempt can never commit a result.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from s3exp.bucket import (
    AttemptRecord,
    ControlState,
    Lease,
    RunListing,
    WorkerIdentity,
    is_stale,
    keys,
    list_runs,
    seal,
)
from s3exp.core import AlreadyExists, Clock, Conflict, ObjectNotFound
from s3exp.ops import read_control
from s3exp.specs import ExperimentSpec, RunSlot, expand
from s3exp.stores import ObjectMeta, Store

__all__ = ["Claim", "Claimer"]

@dataclass(frozen=True, slots=True)
class Claim:
    """A run this worker now holds: its slot, its lease and the lease's current ETag.

    ``sent`` is the claimer's ``clock.monotonic()`` taken before the claiming write was
    first sent: the lease's freshness is measured from then (see "Timing rules" in
    :mod:`s3exp.bucket._leases`), not from when the reply arrived.
    """

    spec: ExperimentSpec
    slot: RunSlot
    lease: Lease
    meta: ObjectMeta
    sent: float


class Claimer:
    """Claims runs of one experiment for one worker.  Not thread-safe: one per worker."""

    def __init__(
        self,
        store: Store,
        spec: ExperimentSpec,
        identity: WorkerIdentity,
        clock: Clock,
        *,
        window: int = 32,
        refresh_seconds: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.spec = spec
        self.exp = spec.name
        self.identity = identity
        self.clock = clock
        self.window = max(1, window)
        self.refresh_seconds = refresh_seconds
        self.rng = rng or random.Random()
        self.slots = expand(spec)
        self._by_id = {s.run_id: s for s in self.slots}
        self._listing: RunListing | None = None
        self._listed_at = float("-inf")
        self._free: list[RunSlot] = []
        # The walk through the free slots: where the next claim is tried, how many this
        # worker has won since its LIST, and how many runs other workers held then.
        self._cursor: int | None = None
        self._won = 0
        self._in_flight = 0
        # Runs claimed by everyone per second, from the last two LISTs (None before).
        self._rate: float | None = None
        self._claimed_seen: tuple[int, float] | None = None
        self._history: list[str] = []
        self._stale: list[str] = []
        self._lease_cache: dict[str, tuple[str, Lease]] = {}
        self.control: ControlState = "active"
        self.control_seconds = 10.0
        self._control_read_at = float("-inf")
        self.losses = 0
        # Lost races in a row before the picture is taken as out of date and LISTed again.
        # A LIST pages through every lease and result (2,000 runs: 4 pages, 0.1-0.4 s on
        # SeaweedFS or a directory), a lost race costs one PUT; 3 halved the LISTs of 8
        # workers on 2,000 runs against 2, for about the same number of lost races.
        self.max_losses = 3

    # -- the picture ----------------------------------------------------------------

    def refresh(self) -> RunListing:
        """LIST the runs prefix (plus one GET of the control object) and rebuild the picture."""
        if self.clock.monotonic() - self._control_read_at > self.control_seconds:
            self._read_control()
        listing = list_runs(self.store, self.exp)
        self._listing = listing
        self._listed_at = self.clock.monotonic()
        self._free, self._history, self._stale = [], [], []
        self._cursor, self._won, self._in_flight = None, 0, 0
        for slot in self.slots:
            objs = listing.runs.get(slot.run_id)
            if objs is None or objs.lease is None:
                self._free.append(slot)
            elif objs.result is not None:
                continue
            elif objs.has_history:
                cached = self._lease_cache.get(slot.run_id)
                if cached is None or cached[0] != objs.lease.etag:
                    self._history.append(slot.run_id)  # its body must be read
                elif cached[1].state in ("released", "interrupted"):
                    self._history.append(slot.run_id)
                elif cached[1].state == "running" and is_stale(
                        objs.lease.last_modified, cached[1].ttl, listing.server_now):
                    self._stale.append(slot.run_id)
            elif is_stale(objs.lease.last_modified, self.spec.lease_seconds, listing.server_now):
                self._stale.append(slot.run_id)
            else:
                self._in_flight += 1
        claimed, now = len(self.slots) - len(self._free), self._listed_at
        if self._claimed_seen is not None and now > self._claimed_seen[1] and claimed >= self._claimed_seen[0]:
            self._rate = (claimed - self._claimed_seen[0]) / (now - self._claimed_seen[1])
        self._claimed_seen = (claimed, now)
        self.losses = 0
        return listing

    def _read_control(self) -> None:
        self.control = read_control(self.store, self.exp).state
        self._control_read_at = self.clock.monotonic()

    @property
    def listing(self) -> RunListing:
        return self._listing or self.refresh()

    def unfinished(self) -> int:
        """Runs that, as of the last LIST, have no result and are not known to be failed."""
        listing = self.listing
        n = 0
        for slot in self.slots:
            objs = listing.runs.get(slot.run_id)
            if objs is not None and objs.result is not None:
                continue
            cached = self._lease_cache.get(slot.run_id)
            if cached is not None and cached[1].state == "failed" and objs is not None \
                    and objs.lease is not None and objs.lease.etag == cached[0]:
                continue
            n += 1
        return n

    # -- claiming -------------------------------------------------------------------

    def try_claim(self, prefer_dataset: str | None = None) -> Claim | None:
        """Claim one run, or return None if nothing is claimable right now."""
        fresh = False
        if self._listing is None or self.clock.monotonic() - self._listed_at > self.refresh_seconds:
            self.refresh()
            fresh = True
        elif self.clock.monotonic() - self._control_read_at > self.control_seconds:
            self._read_control()  # pause/cancel are seen within control_seconds
        while True:
            if self.control != "active":
                return None
            claim = self._claim_from_picture(prefer_dataset)
            if claim is not None:
                return claim
            if fresh and not self.losses:
                return None  # a fresh picture with nothing claimable in it
            # A lost race means the picture is out of date: every loss is another
            # worker's progress, so refreshing and trying again terminates.
            self.refresh()
            fresh = True

    def _claim_from_picture(self, prefer_dataset: str | None) -> Claim | None:
        while self._history:
            claim = self._claim_existing(self._history.pop(0), stale_only=False)
            if claim is not None:
                return claim
        while self._stale:
            claim = self._claim_existing(self._stale.pop(0), stale_only=True)
            if claim is not None:
                return claim
        while self._free:
            if self.losses >= self.max_losses:
                return None  # the picture is out of date; the caller refreshes it
            slot = self._pick_free(prefer_dataset)
            lease = Lease.first(self.exp, slot.run_id, self.identity, self.spec.lease_seconds,
                                self.spec.max_attempts, self.clock.now())
            sent = self.clock.monotonic()
            try:
                meta = self.store.put_if_absent(keys.lease(self.exp, slot.run_id), lease.to_bytes())
            except AlreadyExists:
                self.losses += 1
                self._jump()
                continue
            self.losses = 0
            self._won += 1
            return Claim(self.spec, slot, lease, meta, sent)
        return None

    def _pick_free(self, prefer_dataset: str | None) -> RunSlot:
        """The next free slot of the walk (popped from the picture)."""
        if prefer_dataset is not None:
            preferred = [i for i, s in enumerate(self._free) if s.dataset == prefer_dataset]
            if preferred:
                return self._free.pop(self.rng.choice(preferred[:self.window]))
        if self._cursor is None or self._cursor >= len(self._free):
            self._cursor = self.rng.randrange(min(self.window, len(self._free)))
        # After a win the cursor stays: it now points at the next slot of the stretch.
        return self._free.pop(self._cursor)

    def _jump(self) -> None:
        """After a lost race: continue a window beyond where the others probably are.

        Between two LISTs the other workers claim about ``in_flight`` runs for each one of
        ours, near the front of the picture; slots there are likely taken already.
        Simulated against picking at random among the first ``window`` slots (500 runs and
        4 workers; 2000 and 8): a third of the lost races and a quarter of the LISTs, with
        runs still started in about the same order."""
        guess = self._won * max(1, self._in_flight)
        if self._rate is not None:  # by the time since the LIST, when the rate is known
            elapsed = self.clock.monotonic() - self._listed_at
            guess = max(guess, int(self._rate * elapsed) - self._won)
        ahead = min(guess, max(0, len(self._free) - 1))
        self._cursor = ahead + self.rng.randrange(self.window)

    def _read_lease(self, run_id: str) -> tuple[Lease, ObjectMeta] | None:
        try:
            blob = self.store.get(keys.lease(self.exp, run_id))
        except ObjectNotFound:
            return None
        cached = self._lease_cache.get(run_id)
        lease = (cached[1] if cached and cached[0] == blob.etag
                 else Lease.from_bytes(blob.data, blob.meta.key))
        self._lease_cache[run_id] = (blob.etag, lease)
        return lease, blob.meta

    def _claim_existing(self, run_id: str, *, stale_only: bool) -> Claim | None:
        """Take over a released, interrupted or stale lease with If-Match."""
        got = self._read_lease(run_id)
        if got is None:
            return None  # reset or never claimed; the next LIST shows it as free
        lease, meta = got
        now = self.clock.now()
        if lease.state in ("released", "interrupted") and not stale_only:
            if not seal(self.store, self.exp, run_id, lease.attempt):
                return None  # its result landed after all (a lost reply): the run is done
            new = lease.next_attempt(self.identity, self.spec.lease_seconds, now, failed_previous=False)
            return self._swap(run_id, lease, new, meta)
        if lease.state != "running":
            return None
        if not is_stale(meta.last_modified, lease.ttl, self.store.server_time()):
            return None
        if not seal(self.store, self.exp, run_id, lease.attempt):
            return None  # it finished after our LIST; its lease just has not been touched
        new = lease.next_attempt(self.identity, self.spec.lease_seconds, now, failed_previous=True)
        if new.budget_spent:
            failed = lease.with_state("failed", failed=True, note="lease expired")
            if self._swap(run_id, lease, failed, meta, claim=False) is not None:
                self._write_expired_record(lease, now)
            return None
        claim = self._swap(run_id, lease, new, meta)
        if claim is not None:
            self._write_expired_record(lease, now)
        return claim

    def _swap(self, run_id: str, old: Lease, new: Lease, meta: ObjectMeta, *,
              claim: bool = True) -> Claim | None:
        sent = self.clock.monotonic()
        try:
            written = self.store.put_if_match(keys.lease(self.exp, run_id), new.to_bytes(), meta.etag)
        except Conflict:
            return None  # another worker moved first: exactly one taker wins
        self._lease_cache[run_id] = (written.etag, new)
        return Claim(self.spec, self._by_id[run_id], new, written, sent) if claim else None

    def _write_expired_record(self, dead: Lease, now: datetime) -> None:
        body = AttemptRecord.of("error", dead, now, reason="lease expired",
                                error=f"lease expired: worker {dead.worker.id} on {dead.worker.host} "
                                      f"(pid {dead.worker.pid}) stopped renewing it; taken over by "
                                      f"{self.identity.id}").to_bytes()
        try:
            self.store.put_if_absent(keys.error(self.exp, dead.run_id, dead.attempt), body)
        except AlreadyExists:
            pass  # the dead worker wrote its own error record before it went quiet
