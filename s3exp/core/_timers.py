"""One timer thread per process, so that short runs start no thread of their own.

A run's heartbeat and its metric flusher are only needed once the run has lived for a
while (a third of the lease TTL; the flush interval).  Starting two threads for every run
cost about 3 ms per run on 2 cores (``Thread.start`` waits until the new thread has
run), which for runs of a few milliseconds was most of the worker's own time.  Instead
each run schedules a call here, and the call starts the thread only if the run is still
going when it falls due; a run that ends first cancels it.

The thread sleeps until the earliest live deadline: cancelled timers are dropped when
they reach the top of the heap, without waking anyone, and a new timer wakes the thread
only when it falls due before the deadline the thread is sleeping towards.  Callbacks run
on the timer thread and must be quick (they start a thread, or set an event).

Deadlines are on :func:`s3exp.core._clock.elapsed`, which counts time spent suspended; a timed
wait does not (it sleeps on ``CLOCK_MONOTONIC``), so while any timer is pending the thread
wakes at least every ``MAX_SLEEP`` seconds to look at the clock again.  After a laptop
wakes from a suspend, a deadline that passed during it fires within that second.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
from collections.abc import Callable

from s3exp.core._clock import elapsed

__all__ = ["MAX_SLEEP", "Timer", "call_later"]

MAX_SLEEP = 1.0

log = logging.getLogger(__name__)


class Timer:
    """A pending call; ``cancel()`` makes sure it never runs (if it has not started)."""

    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.fn = _nothing  # let go of the run now, not when the deadline comes round


def _nothing() -> None:
    pass


class _Scheduler:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._sleeping_until = float("inf")

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        timer = Timer(elapsed() + max(0.0, delay), fn)
        with self._cond:
            heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="s3exp-timers", daemon=True)
                self._thread.start()
            elif timer.when < self._sleeping_until:
                self._cond.notify()
        return timer

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    heap = self._heap
                    while heap and heap[0][2].cancelled:
                        heapq.heappop(heap)
                    now = elapsed()
                    if heap and heap[0][0] <= now:
                        timer = heapq.heappop(heap)[2]
                        break
                    self._sleeping_until = heap[0][0] if heap else float("inf")
                    self._cond.wait(None if not heap else min(MAX_SLEEP, self._sleeping_until - now))
                self._sleeping_until = float("inf")
            if timer.cancelled:
                continue
            try:
                timer.fn()
            except Exception as e:  # noqa: BLE001 - one bad callback must not stop the others
                log.exception("timer callback failed: %r", e)

    def after_fork(self) -> None:
        # The child has no timer thread; pending timers belong to the parent's runs.
        self._cond = threading.Condition(threading.Lock())
        self._heap = []
        self._thread = None
        self._sleeping_until = float("inf")


_scheduler = _Scheduler()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_scheduler.after_fork)


def call_later(delay: float, fn: Callable[[], None]) -> Timer:
    """Call ``fn()`` on the process's timer thread after ``delay`` seconds (suspend counted)."""
    return _scheduler.call_later(delay, fn)
