"""The run handle: what the user holds inside ``with run:``.

``Run`` is the user's side of one claimed run: its parameters, ``log``, ``check``,
``complete`` and ``fail``, and the context manager that turns however the body ended into
the attempt's outcome.  The machinery is behind it: the lease and its heartbeat and
deadline (:class:`~s3exp.runs._lease_keeper.LeaseKeeper`), the asynchronous stop
(:class:`~s3exp.runs._async_stop.AsyncStop`), the outcome records
(:mod:`s3exp.runs._outcomes`), and what it needs from its worker
(:class:`~s3exp.runs._hooks.RunHooks`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import traceback
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from s3exp.bucket import Lease, ResultRecord
from s3exp.core import (
    Clock,
    Interrupted,
    LeaseLost,
    RunAlreadyCompleted,
    S3ExpError,
    StoreError,
)
from s3exp.runs._async_stop import AsyncStop
from s3exp.runs._claims import Claim
from s3exp.runs._hooks import RunHooks
from s3exp.runs._lease_keeper import LeaseKeeper
from s3exp.runs._outcomes import commit, record_failure, record_interrupt
from s3exp.runs._provenance import provenance
from s3exp.stores import Store
from s3exp.tables import AttemptIdentity, MetricBuffer

__all__ = ["Run"]

log = logging.getLogger(__name__)


class Run:
    """One claimed run.  Use it as a context manager::

        with run:
            model = train(run.dataset, run.model, **run.params)
            run.complete({"acc": evaluate(model)})

    Leaving ``with run:`` normally without ``complete()`` completes the run with no
    metrics.  An exception inside it is recorded (traceback in ``error-<attempt>.json``)
    and the run is released for an immediate retry, or ``failed`` once its attempts are
    spent.  SIGTERM or SIGINT (an ``Interrupted``/``KeyboardInterrupt``) releases it as
    ``interrupted``, not an attempt.  If the lease is taken over, or its deadline passes
    without a successful renewal, :class:`~s3exp.LeaseLost` is raised in the thread that
    entered ``with run:`` and nothing is written that counts.
    """

    def __init__(self, store: Store, claim: Claim, clock: Clock, hooks: RunHooks) -> None:
        self.store = store
        self.spec = claim.spec
        self.slot = claim.slot
        self.clock = clock
        self._hooks = hooks
        self.started_at: datetime = clock.now()
        self._started_mono = clock.monotonic()
        self._finished = False
        self._cancelled = threading.Event()
        self._async = AsyncStop()
        self.result: dict[str, Any] | None = None
        self._metrics: MetricBuffer | None = None
        self._keeper = LeaseKeeper(store, claim, clock, on_lost=self._on_lost, on_beat=self._on_beat)

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
    def lease(self) -> Lease:
        return self._keeper.lease

    @property
    def attempt(self) -> int:
        return self._keeper.lease.attempt

    @property
    def lost(self) -> bool:
        """True once another worker may have taken this run over."""
        return self._keeper.lost.is_set()

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
            buf = self._metrics = MetricBuffer(self.store, AttemptIdentity(
                self.experiment, self.run_id, self.attempt, self.dataset, self.model,
                self.lease.worker.id))
        buf.log(metrics, step, ts)

    def check(self) -> None:
        """Raise LeaseLost if the lease was lost, or Interrupted if the experiment was
        cancelled, as the heartbeat found; cheap, no request.  Code that spends long in
        one C call can call it between calls."""
        if self.lost:
            self._async.close()
            raise LeaseLost(self.experiment, self.run_id, self.attempt)
        if self._cancelled.is_set():
            self._async.close()
            raise self._cancel_error()

    def stop_by_polling(self) -> None:
        """Deliver no exception asynchronously: the caller polls :meth:`check` instead
        (the command agent, which must stop its child itself)."""
        self._async.enabled = False

    def critical(self) -> contextlib.AbstractContextManager[None]:
        """Around work that a signal must not cut in half (SIGTERM waits until it ends)."""
        return self._hooks.critical()

    def confirm_claim(self) -> bool:
        """For the worker, before the body starts: False if the claim's reply came back
        so late that the run had been taken over (nothing was run, nothing is written)."""
        if self._keeper.confirm_claim():
            return True
        self._finish()
        return False

    # -- news from the heartbeat and the deadline (other threads) ---------------------

    def _cancel_error(self) -> Interrupted:
        cancelled = Interrupted(0)
        cancelled.args = (f"experiment {self.experiment!r} was cancelled",)
        return cancelled

    def _on_lost(self) -> None:
        self._async.send(LeaseLost(self.experiment, self.run_id, self.attempt))

    def _on_beat(self) -> bool:
        """After a renewal: one look at the control object; False when the run must stop."""
        try:
            cancelled = self._hooks.cancel_requested(self.experiment)
        except StoreError:
            return True  # a transient failure reading the control object: next beat
        if cancelled:
            self._cancelled.set()
            self._async.send(self._cancel_error())
            self._hooks.run_cancelled(self.experiment)
            return False
        self._hooks.heartbeat()  # a long run: periodic work, such as the cost record
        return True

    # -- ending the run -------------------------------------------------------------

    def complete(self, metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record the run's final metrics; returns the result record.

        The commit is the create-only write of this attempt's result key, which fails if a
        taker sealed the attempt: then LeaseLost is raised and nothing counts.  (No renewal
        is needed first, and none is made.)
        """
        self._async.close()  # from here on, news of a lost lease is raised right here
        with self._hooks.critical(), self._keeper.lock:
            if self._finished:
                raise S3ExpError(f"{self!r} has already ended")
            self._flush_metrics()  # every row is staged before the result says "done"
            if self.lost:
                raise LeaseLost(self.experiment, self.run_id, self.attempt)
            record = ResultRecord(
                self.experiment, self.run_id, self.attempt, self.lease.token, self.params,
                dict(metrics or {}), self.lease.worker.id, self.dataset, self.model,
                self.model_group, self.replicate,
                provenance={**provenance(), "pid": self.lease.worker.pid},
                started_at=self.started_at.isoformat(), ended_at=self.clock.now().isoformat(),
                duration_s=round(self.clock.monotonic() - self._started_mono, 6))
            try:
                commit(self.store, self._keeper, record)
            except (LeaseLost, RunAlreadyCompleted):
                self._finish()
                raise
            # (Any other failure leaves the run open: ``with run:`` records it as failed,
            # and if the commit landed after all, the result counts; see design.md.)
            self._finish()
            self.result = record.to_dict()
            self._hooks.run_ended(self.run_id, "completed")
            return self.result

    def fail(self, error: str, *, kind: str = "exception") -> None:
        """Record a failed attempt (``error`` is a traceback or stderr tail) and release the
        run for a retry, or mark it failed when its attempts are spent."""
        self._async.close()
        with self._hooks.critical(), self._keeper.lock:
            if self._finished:
                return
            self._keeper.stop()
            if not self.lost:
                record_failure(self.store, self._keeper, error, kind, self.clock.now())
            self._finish()
            self._hooks.run_ended(self.run_id, "failed")

    def release_interrupted(self, reason: str = "interrupted") -> None:
        """Give the run back without counting an attempt (preemption, cancel)."""
        self._async.close()
        with self._hooks.critical(), self._keeper.lock:
            if self._finished:
                return
            self._keeper.stop()
            if not self.lost:
                record_interrupt(self.store, self._keeper, reason, self.clock.now())
            self._finish()
            self._hooks.run_ended(self.run_id, "interrupted")

    def _flush_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.close()

    def _finish(self) -> None:
        self._finished = True
        self._keeper.ended = True
        self._keeper.stop()
        try:
            self._flush_metrics()  # rows of failed or fenced attempts are kept for audit
        except S3ExpError as e:
            log.warning("could not stage the last metrics of %r: %s", self, e)

    # -- context manager: how the body ended becomes the attempt's outcome ------------

    def __enter__(self) -> Run:
        self._async.bind()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self._async.close()  # clears an asynchronous LeaseLost that was not delivered yet
        if isinstance(exc, LeaseLost) or self.lost:
            return self._exit_lost(exc)
        if isinstance(exc, KeyboardInterrupt):
            cancelled = self._cancelled.is_set()
            self.release_interrupted("cancelled" if cancelled else
                                     f"signal {getattr(exc, 'signum', signal.SIGINT)}")
            self._hooks.interrupted(cancelled=cancelled)  # a signal ends the worker's loop
            return True
        if exc_type is not None and exc is not None:
            if isinstance(exc, RunAlreadyCompleted):
                return True
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            self.fail(text)
            log.error("%r failed (attempt %d):\n%s", self, self.attempt, text)
            return not self._hooks.raise_errors
        if not self._finished:
            self.complete({})
        return False

    def _exit_lost(self, exc: BaseException | None) -> bool:
        """The run is no longer ours, so whatever else ended it is not recorded either."""
        self._finish()
        self._hooks.run_ended(self.run_id, "lost")
        log.warning("%r: lease lost; run stopped, no result written", self)
        if exc is None or isinstance(exc, LeaseLost):
            return True
        if isinstance(exc, KeyboardInterrupt):
            self._hooks.interrupted(cancelled=self._cancelled.is_set())
            return True
        return not self._hooks.raise_errors
