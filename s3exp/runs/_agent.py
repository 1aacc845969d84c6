"""The command agent: ``s3exp worker EXP -- python train.py --lr {learning_rate}``.

Each claimed run starts the command as a child process in its own session, with the
template fields filled in and these variables set:

``S3EXP_EXPERIMENT``, ``S3EXP_RUN_ID``, ``S3EXP_ATTEMPT``, ``S3EXP_DATASET``,
``S3EXP_MODEL``, ``S3EXP_PARAMS`` (JSON) and ``S3EXP_RESULT_FILE``: a JSON object the
child writes there becomes the run's result metrics.

Exit status 0 completes the run; anything else records the status and the tail of the
child's stderr as the attempt's error.  If the lease is lost, or the agent receives
SIGTERM/SIGINT, the child's process group gets SIGTERM and, after a grace period, SIGKILL.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from s3exp.core import ConfigError
from s3exp.runs._child import parse_metric_line
from s3exp.runs._run import Run
from s3exp.specs import RunSlot

__all__ = ["FIXED_FIELDS", "check_template", "fill_template", "run_command"]

FIXED_FIELDS = ("dataset", "model", "model_group", "run_id", "attempt", "experiment", "replicate")
_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def _fields(slot: RunSlot, experiment: str, attempt: int) -> dict[str, Any]:
    return {
        **slot.params,
        "dataset": slot.dataset or "",
        "model": slot.model or "",
        "model_group": slot.model_group or "",
        "run_id": slot.run_id,
        "attempt": attempt,
        "experiment": experiment,
        "replicate": slot.replicate,
    }


def _render(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def fill_template(template: Sequence[str], fields: dict[str, Any]) -> list[str]:
    """Replace ``{name}`` in every argument; ``{{`` and ``}}`` are literal braces."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        name = m.group(1)
        if name not in fields:
            raise ConfigError(f"command template field {{{name}}} is not a parameter of this run "
                              f"(fields: {', '.join(sorted(fields))})")
        return _render(fields[name])

    return [_FIELD.sub(sub, arg) for arg in template]


def check_template(template: Sequence[str], slots: Sequence[RunSlot]) -> None:
    """Fail fast, before claiming anything, on a field no run of the experiment has."""
    if not template:
        raise ConfigError("no command given: use  s3exp worker EXP -- COMMAND ARGS...")
    known = set(FIXED_FIELDS)
    for s in slots:
        known.update(s.params)
    for arg in template:
        for m in _FIELD.finditer(arg):
            name = m.group(1)
            if name is not None and name not in known:
                raise ConfigError(f"command template field {{{name}}} is not a parameter or run "
                                  f"field (known: {', '.join(sorted(known))})")


class _Tail(threading.Thread):
    """Copies the child's stderr through to ours and keeps its last lines."""

    def __init__(self, pipe: IO[bytes], lines: int = 40) -> None:
        super().__init__(name="s3exp-stderr", daemon=True)
        self.pipe = pipe
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)

    def run(self) -> None:
        for raw in iter(self.pipe.readline, b""):
            sys.stderr.buffer.write(raw)
            sys.stderr.flush()
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class _MetricsFollower:
    """Reads complete JSON lines the child appended to its metrics file and logs them."""

    def __init__(self, path: Path, run: Run) -> None:
        self.file = open(path, encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.run = run
        self.partial = ""
        self.bad_lines = 0

    def poll(self) -> None:
        chunk = self.file.read()
        if not chunk:
            return
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()  # an incomplete last line waits for its newline
        for line in lines:
            if not line.strip():
                continue
            parsed = parse_metric_line(line)
            if parsed is None:
                self.bad_lines += 1
                continue
            step, metrics, ts = parsed
            self.run.log(metrics, step, ts)

    def close(self) -> None:
        self.file.close()


def _stop_child(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def run_command(run: Run, template: Sequence[str], *, grace: float = 10.0) -> None:
    """Execute one run as a child process and record its outcome on ``run``.

    Call inside ``with run:``.  A lost lease or a signal stops the child (the exception
    propagates for ``Run.__exit__`` to record); otherwise the run is completed or failed.
    """
    # Polling run.check() below stops the child; an asynchronous exception from the
    # heartbeat could instead land inside _stop_child and leave the child running.
    run.stop_by_polling()
    fields = _fields(run.slot, run.experiment, run.attempt)
    try:
        argv = fill_template(template, fields)
    except ConfigError as e:
        run.fail(str(e), kind="template")
        return
    with tempfile.TemporaryDirectory(prefix="s3exp-run-") as tmp:
        result_file = Path(tmp) / "result.json"
        metrics_file = Path(tmp) / "metrics.jsonl"
        metrics_file.touch()
        env = {
            **os.environ,
            "S3EXP_EXPERIMENT": run.experiment,
            "S3EXP_RUN_ID": run.run_id,
            "S3EXP_ATTEMPT": str(run.attempt),
            "S3EXP_DATASET": run.dataset or "",
            "S3EXP_MODEL": run.model or "",
            "S3EXP_PARAMS": json.dumps(run.params),
            "S3EXP_RESULT_FILE": str(result_file),
            "S3EXP_METRICS_FILE": str(metrics_file),
        }
        try:
            proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            run.fail(f"cannot start {argv[0]!r}: {e}", kind="exec")
            return
        assert proc.stderr is not None
        tail = _Tail(proc.stderr)
        tail.start()
        follower = _MetricsFollower(metrics_file, run)
        try:
            while True:
                try:
                    code = proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    follower.poll()
                    run.check()  # LeaseLost or Interrupted (cancel), as the heartbeat saw
        finally:
            with run.critical():  # a SIGTERM now waits until the child is stopped
                _stop_child(proc, grace)
            tail.join(timeout=5)
            follower.poll()
            follower.close()
        if code != 0:
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            run.fail(f"command {argv!r} ended with {how}\n--- stderr tail ---\n{tail.text}",
                     kind="exit")
            return
        metrics: dict[str, Any] = {}
        if result_file.exists():
            try:
                loaded = json.loads(result_file.read_text())
                if not isinstance(loaded, dict):
                    raise ValueError("not a JSON object")
                metrics = loaded
            except ValueError as e:
                run.fail(f"the result file is not a JSON object: {e}", kind="result-file")
                return
        run.complete(metrics)
