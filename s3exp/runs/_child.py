"""Logging from a command agent's child process: ``s3exp.current_run()``.

The agent sets ``S3EXP_RUN_ID``, ``S3EXP_PARAMS`` and ``S3EXP_METRICS_FILE`` for the child.
The child logs with the same call as the Python API (``current_run().log({...}, step=n)``),
which appends JSON lines to that file from a background thread; or it appends the lines
itself from any language::

    {"step": 3, "loss": 0.25, "acc": 0.91}
    {"step": 4, "metrics": {"loss": 0.21}, "ts": 1763800000.5}

The agent tails the file and stages the rows exactly as the Python API would, under the
agent's lease and attempt.  No store credentials reach the child.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from s3exp.core import S3ExpError
from s3exp.tables import coerce_metrics

__all__ = ["ChildRun", "current_run", "parse_metric_line"]

_current: ChildRun | None = None
_lock = threading.Lock()


class ChildRun:
    """The run this process executes for a command agent."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.run_id = env["S3EXP_RUN_ID"]
        self.experiment = env.get("S3EXP_EXPERIMENT", "")
        self.attempt = int(env.get("S3EXP_ATTEMPT", "1"))
        self.dataset = env.get("S3EXP_DATASET") or None
        self.model = env.get("S3EXP_MODEL") or None
        self.params: dict[str, Any] = json.loads(env.get("S3EXP_PARAMS", "{}"))
        self.result_file = env.get("S3EXP_RESULT_FILE")
        path = env.get("S3EXP_METRICS_FILE")
        # A raw O_APPEND descriptor, written with one write() per flush: each flush lands
        # whole at the end of the file, even if the child also appends lines itself.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if path else None
        self._lines: list[str] = []
        self._write_lock = threading.Lock()
        self._next_step = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="s3exp-child-log")
        self._thread.start()
        atexit.register(self.flush)

    def log(self, metrics: Mapping[str, Any], step: int | None = None, ts: float | None = None) -> None:
        """Same contract as ``Run.log``: buffered, never blocks on I/O."""
        values = dict(coerce_metrics(metrics))
        stamp = time.time() if ts is None else ts
        if step is None:
            step = self._next_step
        self._next_step = step + 1
        # No lock (list.append is atomic); see MetricBuffer.log for why that matters.
        self._lines.append(json.dumps({"step": step, "ts": stamp, "metrics": values}))

    def complete(self, metrics: Mapping[str, Any]) -> None:
        """Write the run's final metrics to the result file (exit 0 then completes it)."""
        if not self.result_file:
            raise S3ExpError("no S3EXP_RESULT_FILE: not running under s3exp worker")
        with open(self.result_file, "w", encoding="utf-8") as f:
            json.dump(dict(metrics), f)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.flush()

    def flush(self) -> None:
        """Append what is buffered to the metrics file now (also run at exit)."""
        with self._write_lock:  # the flusher thread and atexit must not interleave
            buffer = self._lines
            n = len(buffer)
            lines = buffer[:n]
            del buffer[:n]  # lines appended meanwhile stay for the next flush
            if not lines or self._fd is None:
                return
            data = ("\n".join(lines) + "\n").encode()
            while data:
                data = data[os.write(self._fd, data):]


def current_run() -> ChildRun:
    """The run this process executes under ``s3exp worker``; raises if there is none."""
    global _current
    with _lock:
        if _current is None:
            if "S3EXP_RUN_ID" not in os.environ:
                raise S3ExpError("not running under s3exp worker (S3EXP_RUN_ID is not set)")
            _current = ChildRun(os.environ)
        return _current


def parse_metric_line(line: str) -> tuple[int | None, dict[str, float], float | None] | None:
    """(step, metrics, ts) of one JSON line, or None if it is not a metrics line."""
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    step = raw.get("step")
    ts = raw.get("ts")
    values = raw["metrics"] if isinstance(raw.get("metrics"), dict) else {
        k: v for k, v in raw.items() if k not in ("step", "ts")}
    metrics = {str(k): float(v) for k, v in values.items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    if not metrics:
        return None
    return (int(step) if isinstance(step, int | float) else None, metrics,
            float(ts) if isinstance(ts, int | float) else None)
