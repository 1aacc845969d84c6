"""The process's timer thread, and what it is for: a short run starts no thread of its
own (heartbeat or metric flusher), a long run still gets both."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import s3exp
from s3exp.bucket import keys
from s3exp.core._timers import call_later
from s3exp.runs._lease_keeper import _Heartbeat
from s3exp.stores import FileStore
from s3exp.tables._buffer import MetricBuffer


def test_timers_fire_in_order_and_cancelled_ones_never() -> None:
    fired: list[str] = []
    done = threading.Event()
    call_later(0.15, lambda: fired.append("late"))
    cancelled = call_later(0.05, lambda: fired.append("cancelled"))
    call_later(0.02, lambda: fired.append("early"))
    call_later(0.2, done.set)
    cancelled.cancel()
    assert done.wait(5)
    assert fired == ["early", "late"]


def test_a_failing_callback_does_not_stop_the_timer_thread(caplog: pytest.LogCaptureFixture) -> None:
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    with caplog.at_level("ERROR", logger="s3exp"):
        call_later(0.0, boom)
        call_later(0.05, done.set)
        assert done.wait(5)
    assert any("boom" in r.getMessage() and r.name.startswith("s3exp") for r in caplog.records)


def submit(root: Path, runs: int, lease_seconds: float = 60.0) -> FileStore:
    store = FileStore(root)
    s3exp.submit(store, s3exp.parse_spec({"name": "t", "runs_per_pair": runs, "lease_seconds": lease_seconds,
                                          "parameters": {"x": {"min": 0.0, "max": 1.0}}}))
    return store


def test_short_runs_start_no_thread_and_write_one_shard_each(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    store = submit(tmp_path, 20)
    buffers: list[MetricBuffer] = []
    for run in s3exp.Worker(store, "t", wait=False, handle_signals=False):
        with run:
            for step in range(10):
                run.log({"loss": 1.0 / (step + 1)}, step=step)
            assert run._metrics is not None
            buffers.append(run._metrics)
            run.complete({})
    assert len(buffers) == 20
    assert [n for n in started if n.startswith(("s3exp-heartbeat", "s3exp-metrics"))] == []
    assert all(b._thread is None and b.shards_written == 1 for b in buffers)
    shards = [m.key for m in store.list(keys.staging_prefix("t"))]
    assert len(shards) == 20


def test_a_long_run_still_gets_its_heartbeat_and_flusher(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    store = submit(tmp_path, 1, lease_seconds=0.6)  # heartbeat every 0.2 s
    beats: list[int] = []
    real_start = _Heartbeat.start

    def counting_start(self: _Heartbeat) -> None:
        beats.append(1)
        real_start(self)

    monkeypatch.setattr(_Heartbeat, "start", counting_start)
    for run in s3exp.Worker(store, "t", wait=False, handle_signals=False):
        with run:
            assert run._metrics is None
            run.log({"loss": 1.0}, step=0)
            assert run._metrics is not None
            run._metrics.flush_seconds = 0.1  # (read by the flusher's loop)
            run._metrics._timer.cancel()
            run._metrics._timer = call_later(0.1, run._metrics._start_flusher)
            time.sleep(0.9)
            flusher = run._metrics._thread
            assert flusher is not None and flusher.is_alive()  # it flushed in the background
            assert run._metrics.shards_written >= 1
            run.log({"loss": 0.5}, step=1)
            run.complete({})
        assert not flusher.is_alive()
    assert beats == [1]  # one heartbeat thread for the run
    lease = json.loads(store.get(keys.lease("t", run.run_id)).data)
    assert lease["renewals"] >= 2


# -- suspend: the clock that counts it, and a timer thread that notices it --------------


def test_the_system_clock_counts_suspend() -> None:
    """On Linux the intervals of a lease are read on CLOCK_BOOTTIME, which goes on while
    the machine sleeps (CLOCK_MONOTONIC, behind time.monotonic(), does not)."""
    import sys

    from s3exp.core import _clock

    if sys.platform.startswith("linux"):
        assert _clock.ELAPSED_SOURCE == "boottime"
        before = time.clock_gettime(time.CLOCK_BOOTTIME)
        reading = _clock.SystemClock().monotonic()
        assert before <= reading <= time.clock_gettime(time.CLOCK_BOOTTIME)


def test_the_second_opinion_follows_the_wall_clock_when_monotonic_stands_still(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Elsewhere: a suspend shows up as wall time passing while the monotonic clock does
    not; the reading takes the larger advance, and never goes back."""
    from s3exp.core import _clock

    mono, wall = [100.0], [5000.0]
    monkeypatch.setattr(_clock.time, "monotonic", lambda: mono[0])
    monkeypatch.setattr(_clock.time, "time", lambda: wall[0])
    clock = _clock._SecondOpinion()
    start = clock()
    mono[0] += 1.0
    wall[0] += 1.0
    assert clock() == pytest.approx(start + 1.0)
    wall[0] += 3600.0  # an hour asleep
    assert clock() == pytest.approx(start + 3601.0)
    wall[0] -= 7200.0  # the wall clock set back: monotonic still counts
    mono[0] += 2.0
    assert clock() == pytest.approx(start + 3603.0)


def test_a_deadline_that_passed_during_a_suspend_fires_within_a_second(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer thread sleeps on CLOCK_MONOTONIC, which a suspend stops; it wakes at
    least every MAX_SLEEP to read the suspend-counting clock again.  Modelled by moving
    that clock forward an hour while the thread sleeps towards a timer an hour away."""
    from s3exp.core import _timers

    offset = [0.0]
    real = _timers.elapsed
    monkeypatch.setattr(_timers, "elapsed", lambda: real() + offset[0])
    fired = threading.Event()
    call_later(3600.0, fired.set)
    time.sleep(0.1)  # the thread is now asleep towards that deadline
    offset[0] = 3600.0  # the machine "slept" for an hour
    woke = time.monotonic()
    assert fired.wait(5 * _timers.MAX_SLEEP)
    assert time.monotonic() - woke <= _timers.MAX_SLEEP + 0.5
