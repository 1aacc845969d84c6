"""The process's timer thread, and what it is for: a short run starts no thread of its
own (heartbeat or metric flusher), a long run still gets both."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import s3exp
from s3exp import _keys
from s3exp._metrics_log import MetricBuffer
from s3exp._timers import call_later
from s3exp._worker import _Heartbeat
from s3exp.stores import FileStore


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


def test_a_failing_callback_does_not_stop_the_timer_thread(capsys: pytest.CaptureFixture[str]) -> None:
    done = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    call_later(0.0, boom)
    call_later(0.05, done.set)
    assert done.wait(5)
    assert "boom" in capsys.readouterr().err


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
    shards = [m.key for m in store.list(_keys.staging_prefix("t"))]
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
    lease = json.loads(store.get(_keys.lease("t", run.run_id)).data)
    assert lease["renewals"] >= 2
