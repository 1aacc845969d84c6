"""The worker: claim runs, keep their leases alive, record how they ended.

Inverted workflow, in the manner of ``wandb.agent`` and Optuna's ``optimize``, but with
the loop in the user's hands::

    for run in s3exp.Worker("s3://bucket/lab", "testExp0"):
        with run:
            model = train(run.dataset, run.model, **run.params)
            run.complete({"acc": evaluate(model)})

Leaving ``with run:`` normally without ``complete()`` completes the run with no metrics.
An exception inside it is recorded (traceback in ``error-<attempt>.json``) and the run is
released for an immediate retry, or ``failed`` once its attempts are spent; the worker
then goes on with the next run.  SIGTERM or SIGINT releases the run as ``interrupted``
(not an attempt) and stops the worker.  If the heartbeat finds the lease taken over, or
the lease's deadline passes without a successful renewal, :class:`~s3exp.LeaseLost` is
raised in the thread that entered ``with run:``, and no result is written.  The result
itself is fenced: a worker whose attempt was sealed by a taker cannot commit one,
whatever its clocks say (see :mod:`s3exp.bucket._leases`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType, TracebackType
from typing import Any

import pyarrow as pa

from s3exp.bucket import _keys
from s3exp.bucket._leases import Lease, WorkerIdentity, heartbeat_interval, record
from s3exp.core._clock import Clock, SystemClock
from s3exp.core._errors import (
    AlreadyExists,
    Conflict,
    Interrupted,
    LeaseLost,
    RunAlreadyCompleted,
    S3ExpError,
    StoreError,
)
from s3exp.core._timers import Timer, call_later
from s3exp.ops._costs import CostMeter, check_meter_id
from s3exp.runs._claims import Claim, Claimer, read_control
from s3exp.runs._provenance import provenance
from s3exp.specs._expansion import RunSlot
from s3exp.specs._experiments import load_experiment
from s3exp.stores import ObjectMeta, Store, open_store
from s3exp.tables._buffer import MetricBuffer, RunIdentity

__all__ = ["Run", "Worker", "WorkerStats"]

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


class _Heartbeat(threading.Thread):
    """Renews one lease every ttl/3 by If-Match; on loss, stops the run.

    Started by the process's timer thread (:mod:`s3exp.core._timers`) when the run's first
    renewal falls due, so a run that ends sooner never starts one; it renews at once.
    """

    def __init__(self, run: Run) -> None:
        super().__init__(name=f"s3exp-heartbeat-{run.run_id}", daemon=True)
        self.owner = run
        self.stop_event = threading.Event()

    def run(self) -> None:  # noqa: D102 - threading API
        r = self.owner
        interval = heartbeat_interval(r.lease.ttl)
        while not self.stop_event.is_set():
            if not self._beat(r):
                return
            if self.stop_event.wait(interval):
                return

    def _beat(self, r: Run) -> bool:
        """One renewal and one look at the control object; False when the run must stop."""
        try:
            r._renew()
        except LeaseLost:
            r._on_lost()
            return False
        except StoreError:
            # Transient trouble: keep trying; if we cannot renew within the TTL the
            # lease is as good as lost, so stop the run rather than race a taker.
            if r._seconds_since_renewal() > r.lease.ttl:
                r._on_lost()
                return False
        try:
            cancelled = r._worker is not None and r._worker._cancel_seen(r)
        except StoreError:
            return True  # a transient failure reading the control object: next beat
        if cancelled:
            r._on_cancelled()
            return False
        if r._worker is not None:
            r._worker._record_costs()  # a long run: the counts are written every few minutes
        return True


class Run:
    """One claimed run.  Use it as a context manager; see the module docstring."""

    def __init__(self, store: Store, claim: Claim, clock: Clock, worker: Worker | None = None) -> None:
        self.store = store
        self.spec = claim.spec
        self.slot = claim.slot
        self.lease: Lease = claim.lease
        self._meta: ObjectMeta = claim.meta
        self._worker = worker
        self.clock = clock
        self.started_at: datetime = clock.now()
        self._started_mono = clock.monotonic()
        # Freshness is timed from the claim's first send (see "Timing rules" in _leases).
        self._renewed_mono = claim.sent
        self._lock = threading.RLock()
        self._finished = False
        self._lost = threading.Event()
        self._cancelled = threading.Event()
        self._async = _AsyncStop()
        self.result: dict[str, Any] | None = None
        self._metrics: MetricBuffer | None = None
        self._heartbeat: _Heartbeat | None = None
        self._hb_lock = threading.Lock()
        self._hb_stopped = False
        self._deadline: Timer | None = None
        first_beat = heartbeat_interval(self.lease.ttl) - self._seconds_since_renewal()
        self._hb_timer = call_later(first_beat, self._start_heartbeat)

    # -- what the user reads --------------------------------------------------------

    @property
    def experiment(self) -> str:
        return self.spec.name

    @property
    def run_id(self) -> str:
        return self.slot.run_id

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.slot.params)

    @property
    def dataset(self) -> str | None:
        return self.slot.dataset

    @property
    def model(self) -> str | None:
        return self.slot.model

    @property
    def model_group(self) -> str | None:
        return self.slot.model_group

    @property
    def replicate(self) -> int:
        return self.slot.replicate

    @property
    def attempt(self) -> int:
        return self.lease.attempt

    @property
    def lost(self) -> bool:
        """True once another worker has taken this run over."""
        return self._lost.is_set()

    @property
    def finished(self) -> bool:
        return self._finished

    def __repr__(self) -> str:
        return f"<Run {self.experiment}/{self.run_id} attempt={self.attempt}>"

    def log(self, metrics: Mapping[str, Any], step: int | None = None,
            ts: float | None = None) -> None:
        """Record metric values at ``step`` (default: the previous step + 1).

        Never blocks on the network: rows are buffered and written as Parquet shards by a
        background thread every few seconds, and on completion.  ``ts`` is a POSIX
        timestamp (default: now).
        """
        buf = self._metrics
        if buf is None:
            if self._finished:
                raise S3ExpError(f"{self!r} has already ended")
            buf = self._metrics = MetricBuffer(self.store, RunIdentity(
                self.experiment, self.run_id, self.attempt, self.dataset, self.model,
                self.lease.worker.id))
        buf.log(metrics, step, ts)

    def _flush_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.close()

    def check(self) -> None:
        """Raise LeaseLost if the lease was taken over, or Interrupted if the experiment was
        cancelled, as the heartbeat found; cheap, no request.  Code that spends long in
        one C call can call it between calls."""
        if self._lost.is_set():
            self._async.close()
            raise LeaseLost(self.experiment, self.run_id, self.attempt)
        if self._cancelled.is_set():
            self._async.close()
            raise self._cancel_error()

    def stop_by_polling(self) -> None:
        """Deliver no exception asynchronously: the caller polls :meth:`check` instead
        (the command agent, which must stop its child itself)."""
        self._async.enabled = False

    def _cancel_error(self) -> Interrupted:
        cancelled = Interrupted(0)
        cancelled.args = (f"experiment {self.experiment!r} was cancelled",)
        return cancelled

    # -- lease upkeep (heartbeat thread) --------------------------------------------

    def _seconds_since_renewal(self) -> float:
        return self.clock.monotonic() - self._renewed_mono

    def _renew(self) -> None:
        with self._lock:
            if self._finished or self._lost.is_set():
                return
            self._write_lease(self.lease.renewed())

    def _write_lease(self, new: Lease) -> None:
        sent = self.clock.monotonic()
        try:
            self._meta = self.store.put_if_match(_keys.lease(self.experiment, self.run_id),
                                                 new.to_bytes(), self._meta.etag)
        except Conflict:
            self._lost.set()
            self._async.close()  # a no-op in the heartbeat thread
            raise LeaseLost(self.experiment, self.run_id, self.attempt) from None
        self.lease = new
        self._renewed_mono = sent
        with self._hb_lock:
            if self._deadline is not None and not self._hb_stopped:
                self._arm_deadline()

    def _on_lost(self) -> None:
        self._lost.set()
        self._async.send(LeaseLost(self.experiment, self.run_id, self.attempt))
        if self._worker is not None:
            self._worker._on_lost(self)

    def _on_cancelled(self) -> None:
        self._cancelled.set()
        self._async.send(self._cancel_error())
        if self._worker is not None:
            self._worker._on_cancelled(self)

    def _start_heartbeat(self) -> None:
        """On the timer thread, when the first renewal falls due."""
        with self._hb_lock:
            if self._hb_stopped:
                return
            self._arm_deadline()
            self._heartbeat = _Heartbeat(self)
            self._heartbeat.start()

    def _arm_deadline(self) -> None:
        """(Re)schedule the deadline: ``ttl`` after the last successful lease write's send.
        Called with ``_hb_lock`` held."""
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = call_later(self.lease.ttl - self._seconds_since_renewal(), self._on_deadline)

    def _on_deadline(self) -> None:
        """On the timer thread: no renewal succeeded within the TTL (a reply held up, a
        suspend, an outage), so another worker may take the run over at any moment.  Stop
        the body now, even while a renewal is in flight (which holds ``_lock``: the
        asynchronous stop has a lock of its own)."""
        if self._finished or self._lost.is_set():
            return
        if self._seconds_since_renewal() < self.lease.ttl:
            with self._hb_lock:  # a renewal landed meanwhile, or an injected clock is slow
                if not self._hb_stopped:
                    self._arm_deadline()
            return
        self._on_lost()

    def _confirm_claim(self) -> bool:
        """Before the body starts: a claim whose reply came back after a heartbeat interval
        may already have been taken over, so renew it first.  False if it was lost."""
        if self._seconds_since_renewal() < heartbeat_interval(self.lease.ttl):
            return True
        try:
            self._renew()
            return True
        except LeaseLost:
            pass
        except StoreError:
            if self._seconds_since_renewal() < self.lease.ttl:
                return True  # still ours for certain; the heartbeat tries again
        self._lost.set()
        self._finish()
        return False

    def _stop_heartbeat(self) -> None:
        with self._hb_lock:
            self._hb_stopped = True
            self._hb_timer.cancel()
            if self._deadline is not None:
                self._deadline.cancel()
            hb = self._heartbeat
        if hb is None:
            return
        hb.stop_event.set()
        # A lost run does not wait: its heartbeat may be blocked in a renewal whose reply
        # is late, and whatever that renewal does, it cannot make the run ours again.
        if threading.current_thread() is not hb and not self._lost.is_set():
            hb.join(timeout=5)

    # -- ending the run -------------------------------------------------------------

    def complete(self, metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record the run's final metrics.

        The commit is the create-only write of this attempt's result key, which fails if a
        taker sealed the attempt: then LeaseLost is raised and nothing counts.  (No renewal
        is needed first, and none is made.)  RunAlreadyCompleted is kept for a result of
        this attempt written by someone else, which the protocol never produces.
        """
        self._async.close()  # from here on, news of a lost lease is raised right here
        with self._critical(), self._lock:
            if self._finished:
                raise S3ExpError(f"{self!r} has already ended")
            self._flush_metrics()  # every row is staged before the result says "done"
            if self._lost.is_set():
                raise LeaseLost(self.experiment, self.run_id, self.attempt)
            ended = self.clock.now()
            body = {
                "experiment": self.experiment,
                "run_id": self.run_id,
                "status": "done",
                "attempt": self.attempt,
                "token": self.lease.token,
                "dataset": self.dataset,
                "model": self.model,
                "model_group": self.model_group,
                "replicate": self.replicate,
                "params": self.params,
                "metrics": dict(metrics or {}),
                "worker": self.lease.worker.id,
                "provenance": {**provenance(), "pid": self.lease.worker.pid},
                "started_at": self.started_at.isoformat(),
                "ended_at": ended.isoformat(),
                "duration_s": round(self.clock.monotonic() - self._started_mono, 6),
            }
            data = _dumps(body)
            key = _keys.result(self.experiment, self.run_id, self.attempt)
            try:
                self.store.put_if_absent(key, data)
            except AlreadyExists:
                self._refused(key)
            self.result = body
            self._finish()
            if self._worker is not None:
                self._worker.stats.completed += 1
                if self.run_id in self._worker.stats.failed_runs:
                    self._worker.stats.failed_runs.remove(self.run_id)
            return body

    def _refused(self, key: str) -> None:
        """The commit found this attempt's result key taken: sealed by a taker (LeaseLost),
        or, never by the protocol, another writer's result (RunAlreadyCompleted)."""
        blob = self.store.get(key)
        if blob.data:
            self._finish()
            raise RunAlreadyCompleted(self.experiment, self.run_id, _loads(blob.data))
        self._lost.set()
        # Sealed, but maybe still ours: the taker may not have moved the lease yet (or lost
        # its CAS).  Then give the run back now instead of leaving it to expire.
        with contextlib.suppress(StoreError, LeaseLost):
            self._write_lease(self.lease.with_state("released", note="fenced"))
        self._finish()
        raise LeaseLost(self.experiment, self.run_id, self.attempt)

    def fail(self, error: str, *, kind: str = "exception") -> None:
        """Record a failed attempt (``error`` is a traceback or stderr tail) and release the
        run for a retry, or mark it failed when its attempts are spent."""
        self._async.close()
        with self._critical(), self._lock:
            if self._finished:
                return
            self._stop_heartbeat()
            if self._lost.is_set():
                self._finish()
                return
            now = self.clock.now()
            with contextlib.suppress(AlreadyExists):
                self.store.put_if_absent(_keys.error(self.experiment, self.run_id, self.attempt),
                                         record("error", self.lease, now, reason=kind, error=error))
            spent = self.lease.failures + 1 >= self.lease.budget
            try:
                self._write_lease(self.lease.with_state("failed" if spent else "released",
                                                        failed=True, note=kind))
            except LeaseLost:
                pass
            self._finish()
            if self._worker is not None:
                self._worker.stats.failed += 1
                if self.run_id not in self._worker.stats.failed_runs:
                    self._worker.stats.failed_runs.append(self.run_id)

    def release_interrupted(self, reason: str = "interrupted") -> None:
        """Give the run back without counting an attempt (preemption, cancel)."""
        self._async.close()
        with self._critical(), self._lock:
            if self._finished:
                return
            self._stop_heartbeat()
            if not self._lost.is_set():
                now = self.clock.now()
                with contextlib.suppress(AlreadyExists):
                    self.store.put_if_absent(
                        _keys.interrupt(self.experiment, self.run_id, self.attempt),
                        record("interrupt", self.lease, now, reason=reason))
                with contextlib.suppress(LeaseLost):
                    self._write_lease(self.lease.with_state("interrupted", note=reason))
            self._finish()
            if self._worker is not None:
                self._worker.stats.interrupted += 1

    def _finish(self) -> None:
        self._finished = True
        self._stop_heartbeat()
        try:
            self._flush_metrics()  # rows of failed or fenced attempts are kept for audit
        except S3ExpError as e:
            print(f"s3exp: could not stage the last metrics of {self!r}: {e}", file=sys.stderr)

    def _critical(self) -> contextlib.AbstractContextManager[None]:
        return self._worker.deferring_signals() if self._worker is not None else contextlib.nullcontext()

    # -- context manager ------------------------------------------------------------

    def __enter__(self) -> Run:
        self._async.bind()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self._async.close()  # clears an asynchronous LeaseLost that was not delivered yet
        worker = self._worker
        if exc_type is not None and issubclass(exc_type, LeaseLost) or self._lost.is_set():
            self._finish()
            if worker is not None:
                worker.stats.lost += 1
            print(f"s3exp: {self!r}: lease lost; run stopped, no result written", file=sys.stderr)
            if exc_type is None or issubclass(exc_type, LeaseLost):
                return True
            # The run is no longer ours, so whatever else ended it is not recorded either.
            if worker is None:
                return False
            if issubclass(exc_type, KeyboardInterrupt):
                if not self._cancelled.is_set():
                    worker._stop = True
                return True
            return not worker.raise_errors
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self.release_interrupted("cancelled" if self._cancelled.is_set() else
                                     f"signal {getattr(exc, 'signum', signal.SIGINT)}")
            if worker is None:
                return False
            if not self._cancelled.is_set():
                worker._stop = True  # a signal ends the worker's loop; a cancel ends the run
            return True
        if exc_type is not None and exc is not None:
            if isinstance(exc, RunAlreadyCompleted):
                return True
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            self.fail(text)
            print(f"s3exp: {self!r} failed (attempt {self.attempt}):\n{text}", file=sys.stderr)
            return not (worker is not None and worker.raise_errors)
        if not self._finished:
            self.complete({})
        return False


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

    # -- hooks for runs ---------------------------------------------------------------

    def _on_lost(self, run: Run) -> None:
        pass

    def _on_cancelled(self, run: Run) -> None:
        for c in self.claimers:
            if c.exp == run.experiment:
                c.control = "cancelled"

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
                print(f"s3exp: could not record this worker's request counts: {e}", file=sys.stderr)

    def _cancel_seen(self, run: Run) -> bool:
        """Called from a heartbeat: one GET of the control object per heartbeat."""
        state, _ = read_control(self.store, run.experiment)
        return state == "cancelled"

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
                    if not candidate._confirm_claim():
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


class _AsyncStop:
    """Raises LeaseLost or Interrupted in the thread that entered ``with run:``, from
    another thread (the heartbeat, the deadline timer), at that thread's next bytecode
    (``PyThreadState_SetAsyncExc``; a long C call such as one training step finishes
    first).  At most one exception is sent per run.

    Its own lock, held for no I/O: the heartbeat may be blocked in a renewal for as long as
    a reply takes, and the deadline must still get through.  ``close()``, called by the
    owner thread before it raises such news itself, writes a final record or leaves
    ``with run:``, cancels an exception sent and not yet delivered and lets none be sent
    after: otherwise the same news would arrive twice, the second time at any bytecode of
    ``__exit__``, outside the user's ``with`` (seen in the chaos suite), or in the middle
    of a final write.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._sent = False
        self._closed = False
        self.enabled = True
        """False: nothing is sent (the owner polls ``Run.check()`` instead)."""

    def bind(self) -> None:
        with self._lock:
            self._owner = threading.get_ident()

    def send(self, exc: BaseException) -> None:
        with self._lock:
            if not self.enabled or self._closed or self._sent or self._owner is None:
                return
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._owner),
                                                       ctypes.py_object(_async_class(exc)))
            self._sent = True

    def close(self) -> None:
        with self._lock:
            if self._owner != threading.get_ident():
                return  # only the owner closes (the heartbeat thread may call it: no-op)
            self._closed = True
            if self._sent:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._owner),
                                                           ctypes.c_void_p(0))


def _async_class(exc: BaseException) -> type[BaseException]:
    """A subclass of ``type(exc)`` whose no-argument constructor re-creates ``exc``.

    ``PyThreadState_SetAsyncExc`` raises a class and instantiates it with no arguments;
    LeaseLost and Interrupted need arguments, so raising them directly would deliver a
    TypeError instead.  ``except LeaseLost`` still catches the subclass.
    """
    base = type(exc)
    args, state = exc.args, dict(vars(exc))

    def __init__(self: BaseException) -> None:
        BaseException.__init__(self, *args)
        self.__dict__.update(state)

    return type(base.__name__, (base,), {"__init__": __init__, "__module__": base.__module__,
                                         "__qualname__": base.__qualname__})


def _dumps(body: dict[str, Any]) -> bytes:
    # No indent: with one, json falls back to its pure-Python encoder (0.2 ms per result).
    return (json.dumps(body, separators=(", ", ": "), default=str, allow_nan=True) + "\n").encode()


def _loads(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(data)
    return out
