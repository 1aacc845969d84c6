"""The worker: claim runs, hand them to the caller, end its loop when the work is done.

Inverted workflow, in the manner of ``wandb.agent`` and Optuna's ``optimize``, but with
the loop in the user's hands::

    for run in s3exp.Worker("s3://bucket/lab", "testExp0"):
        with run:
            model = train(run.dataset, run.model, **run.params)
            run.complete({"acc": evaluate(model)})

What a run does inside ``with run:`` is :class:`~s3exp.runs._run.Run`'s; the worker is what
it talks to through :class:`~s3exp.runs._hooks.RunHooks`: signals deferred during final
writes, the counts of how runs ended, cancellation, and the cost record.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import pyarrow as pa

from s3exp.bucket import WorkerIdentity
from s3exp.core import Clock, Interrupted, S3ExpError, SystemClock
from s3exp.ops import CostMeter, check_meter_id, read_control
from s3exp.runs._claims import Claimer
from s3exp.runs._hooks import Outcome
from s3exp.runs._run import Run
from s3exp.specs import RunSlot, load_experiment
from s3exp.stores import Store, open_store

__all__ = ["Run", "Worker", "WorkerStats"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class WorkerStats:
    """What one worker did."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    interrupted: int = 0
    run_ids: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    """Runs whose last attempt by this worker failed (``s3exp worker`` then exits 1)."""


class Worker:
    """Pulls runs of one or more experiments from a store; iterate over it.

    ``experiments`` may be several names: higher ``priority`` (from each spec) is served
    first.  ``sticky_dataset`` prefers runs on the dataset of the previous run.
    ``max_runs`` stops after that many claims.

    When nothing is claimable, the worker by default (``wait=True``) keeps polling while
    other workers still hold unfinished runs, because any of them may die and leave a run
    to take over; it exits once every run is done or failed (or the experiment is
    cancelled).  A paused experiment keeps it waiting.  ``wait=False`` stops early: as
    soon as nothing is claimable right now.  Polls back off from 0.5 s to
    ``poll_seconds`` (default: a quarter of the shortest lease TTL, within 0.2-5 s); each
    costs one LIST.  ``clock`` is used for intervals and informational timestamps only:
    lease expiry is judged on the store's clock.

    The cost meter: the worker adds the store requests it made to
    ``costs/<first experiment>/<worker_id>.json`` every ``cost_seconds`` (default 300)
    and when its loop ends (``s3exp status EXP --cost`` sums them); ``None`` turns it
    off.  ``worker_id`` must be a safe key segment (letters, digits, ``_ . + @ : -``);
    the default is built from the host name, pid and a random suffix.

    Signals: when iterated in the main thread, SIGTERM raises :class:`~s3exp.Interrupted`
    (SIGINT raises KeyboardInterrupt), deferred while a claim is being written.
    """

    def __init__(
        self,
        store: Store | str,
        experiments: str | Sequence[str],
        *,
        sticky_dataset: bool = False,
        max_runs: int | None = None,
        wait: bool = True,
        poll_seconds: float | None = None,
        worker_id: str | None = None,
        clock: Clock | None = None,
        window: int = 64,
        raise_errors: bool = False,
        handle_signals: bool = True,
        cost_seconds: float | None = 300.0,
    ) -> None:
        if worker_id is not None:
            check_meter_id(worker_id)  # before anything is sent: it becomes a key segment
        self.store = open_store(store) if isinstance(store, str) else store
        names = [experiments] if isinstance(experiments, str) else list(experiments)
        self.clock: Clock = clock or SystemClock()
        self.identity = WorkerIdentity.current(worker_id)
        counted_before = self.store.requests.snapshot()  # the spec reads below are ours
        specs = [load_experiment(self.store, n) for n in names]
        _warm_up()
        self.cost_meter: CostMeter | None = None
        if cost_seconds is not None and names:
            self.cost_meter = CostMeter(self.store, names[0], self.identity.id, role="worker",
                                        interval=cost_seconds, served=names,
                                        baseline=counted_before)
        self._cost_warned = False
        specs.sort(key=lambda s: -s.priority)  # stable: ties keep the given order
        self.claimers = [Claimer(self.store, s, self.identity, self.clock, window=window)
                         for s in specs]
        self.sticky_dataset = sticky_dataset
        self.max_runs = max_runs
        self.wait = wait
        self.poll_seconds = poll_seconds or max(0.2, min(5.0, min(s.lease_seconds for s in specs) / 4))
        self.raise_errors = raise_errors
        self.handle_signals = handle_signals
        self.stats = WorkerStats()
        self.current: Run | None = None
        self._last_dataset: str | None = None
        self._stop = False
        self.stopped_by: int | None = None
        """The signal (SIGTERM, SIGINT) that ended the loop, if one did."""
        self._pending_signal: int | None = None
        self._critical = 0

    # -- signals --------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True
        self.stopped_by = signum
        if self._critical:
            self._pending_signal = signum  # raised when the critical section ends
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def deferring_signals(self) -> Iterator[None]:
        """Hold SIGTERM/SIGINT while a claim or a final write is in flight, so that a
        signal cannot separate a store write from the local state that records it."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
            if not self._critical and self._pending_signal is not None:
                signum, self._pending_signal = self._pending_signal, None
                raise Interrupted(signum)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for s in previous:
            signal.signal(s, self._on_signal)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    # -- RunHooks: what the runs it claimed need from it ------------------------------

    def critical(self) -> contextlib.AbstractContextManager[None]:
        return self.deferring_signals()

    def run_ended(self, run_id: str, outcome: Outcome) -> None:
        st = self.stats
        if outcome == "completed":
            st.completed += 1
            if run_id in st.failed_runs:
                st.failed_runs.remove(run_id)
        elif outcome == "failed":
            st.failed += 1
            if run_id not in st.failed_runs:
                st.failed_runs.append(run_id)
        elif outcome == "interrupted":
            st.interrupted += 1
        else:
            st.lost += 1

    def interrupted(self, *, cancelled: bool) -> None:
        if not cancelled:
            self._stop = True  # a signal ends the loop; a cancel ends only the run

    def cancel_requested(self, experiment: str) -> bool:
        """Called from a heartbeat: one GET of the control object per heartbeat."""
        return read_control(self.store, experiment).state == "cancelled"

    def run_cancelled(self, experiment: str) -> None:
        for c in self.claimers:
            if c.exp == experiment:
                c.control = "cancelled"

    def heartbeat(self) -> None:
        self._record_costs()  # a long run: the counts are written every few minutes

    def _record_costs(self, *, final: bool = False) -> None:
        """Write the request counts if they are due (or ``final``); never raises: a worker
        does not stop over its cost record, it says so once."""
        meter = self.cost_meter
        if meter is None:
            return
        try:
            if final:
                meter.flush()
            else:
                meter.maybe_flush()
        except S3ExpError as e:
            if not self._cost_warned:
                self._cost_warned = True
                log.warning("could not record this worker's request counts: %s", e)

    # -- the loop ---------------------------------------------------------------------

    def claim(self) -> Run | None:
        """Claim the next run (highest priority first), or None if none is claimable now."""
        prefer = self._last_dataset if self.sticky_dataset else None
        run: Run | None = None
        with self.deferring_signals():
            for claimer in self.claimers:
                while run is None and (claim := claimer.try_claim(prefer)) is not None:
                    candidate = Run(self.store, claim, self.clock, self)
                    self.stats.claimed += 1
                    if not candidate.confirm_claim():
                        self.stats.lost += 1  # its reply came late, and it had been taken over
                        continue
                    run = candidate
                    self.stats.run_ids.append(run.run_id)
                    self._last_dataset = run.dataset
                if run is not None:
                    break
            if run is not None and self._pending_signal is not None:
                run.release_interrupted(f"signal {self._pending_signal}")
        return run

    def slots(self) -> list[RunSlot]:
        """Every run slot of the experiments this worker serves, highest priority first."""
        return [slot for c in self.claimers for slot in c.slots]

    def _unfinished(self) -> bool:
        """Whether another worker may still leave a run for this one to take over: some
        experiment that is not cancelled has runs that are neither done nor failed."""
        return any(c.control != "cancelled" and c.unfinished() for c in self.claimers)

    def __iter__(self) -> Iterator[Run]:
        ended_by: BaseException | None = None
        try:
            yield from self._loop()
        except BaseException as e:
            ended_by = e
            raise
        finally:
            # At exit, the last counts (and this write itself) go to the cost record;
            # not when the store itself failed (it would fail again, more slowly).
            if ended_by is None or isinstance(ended_by, (KeyboardInterrupt, GeneratorExit)):
                self._record_costs(final=True)

    def _loop(self) -> Iterator[Run]:
        idle = min(0.5, self.poll_seconds)
        with self._signals():
            while not self._stop:
                if self.max_runs is not None and self.stats.claimed >= self.max_runs:
                    return
                try:
                    run = self.claim()
                except Interrupted:
                    return
                if run is None:
                    # claim() has just refreshed the picture from a LIST: it is current.
                    if not self.wait or not self._unfinished():
                        return
                    try:
                        time.sleep(idle)
                    except Interrupted:
                        return  # SIGTERM/SIGINT while idle: nothing to release
                    idle = min(self.poll_seconds, idle * 2)
                    self._record_costs()
                    continue
                idle = min(0.5, self.poll_seconds)
                self.current = run
                try:
                    yield run
                finally:
                    self.current = None
                    if not run.finished:
                        # The caller did not use `with run:`; treat leaving as interruption.
                        run.release_interrupted("abandoned")
                self._record_costs()

    def run(self, fn: Any) -> WorkerStats:
        """Call ``fn(run)`` for every claimed run; a returned mapping becomes the result."""
        for run in self:
            with run:
                out = fn(run)
                if not run.finished:
                    run.complete(out if isinstance(out, Mapping) else {})
        return self.stats


def _warm_up() -> None:
    """pyarrow imports pandas (0.15-0.2 s of CPU) the first time it converts a Python list,
    which the first metric shard does: pay that while the worker starts, not inside the
    first run it holds a lease on."""
    if "pandas" not in sys.modules:
        pa.array([0.0])
