"""Clocks, passed in explicitly so that tests can skew, freeze or suspend time.

``Clock.monotonic()`` is the clock every lease-holding interval is measured on, and it
must count the time a machine spends suspended: ``time.monotonic()`` does not (on Linux
``CLOCK_MONOTONIC`` stops during a suspend, and so do timed waits on it), so a laptop that
slept through its lease would wake up believing the lease fresh.  :func:`elapsed` reads
``CLOCK_BOOTTIME`` on Linux; elsewhere it takes the larger of the monotonic and the
wall-clock advance since the previous reading (a wall clock that jumps forward only makes
a holder give up sooner, never later).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "elapsed"]


class Clock(Protocol):
    """Wall-clock time (UTC) and a monotonic counter for intervals that counts suspend."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class _SecondOpinion:
    """A monotonic reading that also advances with the wall clock (for systems without
    CLOCK_BOOTTIME): each reading adds the larger of the two clocks' advances."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mono = time.monotonic()
        self._wall = time.time()
        self._value = self._mono

    def __call__(self) -> float:
        with self._lock:
            mono, wall = time.monotonic(), time.time()
            self._value += max(mono - self._mono, wall - self._wall, 0.0)
            self._mono, self._wall = mono, wall
            return self._value


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _pick_elapsed() -> tuple[str, Callable[[], float]]:
    if hasattr(time, "CLOCK_BOOTTIME"):
        try:
            _boottime()
            return "boottime", _boottime
        except OSError:  # pragma: no cover - a kernel without it
            pass
    return "second-opinion", _SecondOpinion()


ELAPSED_SOURCE, _elapsed = _pick_elapsed()


def elapsed() -> float:
    """Seconds on a clock that never goes back and counts time spent suspended."""
    return _elapsed()


class SystemClock:
    """The machine's clock, optionally skewed by ``offset`` (used to test clock skew)."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def monotonic(self) -> float:
        return elapsed()


class FakeClock:
    """A clock that moves only when told to; thread-safe."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds
