"""Real worker processes for test_runs_race.py and test_runs_faults.py.

A Python-API worker runs as ``python -m tests._run_workers CONFIG_JSON`` (its own
interpreter and store client, so it can be SIGKILLed, SIGSTOPped or SIGTERMed); the
command agent runs as the real ``s3exp worker`` CLI with ``tests/_run_child.py`` as its
command.  The parent-side helpers (start, wait, read the store) live here too.

Config keys of a Python-API worker:

``where``      {"kind": "file", "root"} or {"kind": "s3", "endpoint", "bucket", "prefix",
               "access_key", "secret_key"}
``experiment`` the experiment name;  ``worker_id``: its id in leases and results
``body``       what each run does: {"kind": "sleep", "max_ms"} sleeps at random;
               {"kind": "gate", "dir"} waits until ``<dir>/go-<attempt>`` exists;
               {"kind": "raise", "upto"} raises RuntimeError in attempts <= upto
               (always, if upto is absent), then completes
``ledger``     (optional) a file this worker alone appends
               ``run_id attempt token start end`` to once a run's body has executed
``gate``       (optional) a file to wait for before starting, so that all start together
``report``     a JSON file written at exit: the worker's stats, or the error that ended it
``started``    (optional) a file touched once the worker is built, just before it claims
``clock_offset_s``, ``wait``, ``poll_seconds``, ``max_runs``: passed to ``s3exp.Worker``
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from s3exp import SystemClock, Worker
from s3exp.bucket._records import Lease
from s3exp.core._errors import ObjectNotFound
from s3exp.stores import FileStore, S3Store, Store

REPO = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "_run_child.py"
GATE_TIMEOUT = 120.0

Where = dict[str, str]


# -- child side ------------------------------------------------------------------------


def open_child_store(where: Where) -> Store:
    if where["kind"] == "file":
        return FileStore(where["root"])
    return S3Store(where["bucket"], where["prefix"], endpoint_url=where["endpoint"],
                   path_style=True, credentials=(where["access_key"], where["secret_key"]))


def _wait_for_file(path: Path, timeout: float = GATE_TIMEOUT) -> None:
    """Poll in short sleeps, so that an asynchronous LeaseLost is delivered promptly."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.02)


def worker_main(cfg: dict[str, Any]) -> int:
    report: dict[str, Any] = {"worker_id": cfg["worker_id"], "pid": os.getpid()}
    code = 0
    try:
        store = open_child_store(cfg["where"])
        if cfg.get("gate"):
            Path(cfg["ready"]).touch()
            _wait_for_file(Path(cfg["gate"]))
        worker = Worker(store, cfg["experiment"], worker_id=cfg["worker_id"],
                        clock=SystemClock(timedelta(seconds=cfg.get("clock_offset_s", 0.0))),
                        wait=cfg.get("wait", True), poll_seconds=cfg.get("poll_seconds"),
                        max_runs=cfg.get("max_runs"))
        if cfg.get("started"):
            Path(cfg["started"]).touch()  # the first claim attempt follows at once
        body = cfg["body"]
        rng = random.Random()
        ledger = open(cfg["ledger"], "a", encoding="utf-8") if cfg.get("ledger") else None  # noqa: SIM115
        for run in worker:
            with run:
                start = time.time()
                kind = body["kind"]
                if kind == "sleep":
                    time.sleep(rng.uniform(0, body["max_ms"]) / 1000)
                elif kind == "gate":
                    _wait_for_file(Path(body["dir"]) / f"go-{run.attempt}")
                elif kind == "raise":
                    if body.get("upto") is None or run.attempt <= body["upto"]:
                        raise RuntimeError(f"boom in {run.run_id} attempt {run.attempt}")
                else:
                    raise ValueError(kind)
                if ledger is not None:
                    ledger.write(f"{run.run_id} {run.attempt} {run.lease.token} "
                                 f"{start:.6f} {time.time():.6f}\n")
                    ledger.flush()
                run.complete({"attempt_seen": run.attempt, "worker": cfg["worker_id"]})
        report["stats"] = asdict(worker.stats)
        report["stopped_by_signal"] = worker._stop
    except BaseException as e:  # noqa: BLE001 - everything goes to the report
        report["error"] = "".join(traceback.format_exception(e))
        code = 1
    Path(cfg["report"]).write_text(json.dumps(report))
    return code


# -- parent side -----------------------------------------------------------------------


def store_url(where: Where) -> str:
    if where["kind"] == "file":
        return where["root"]
    return f"s3://{where['bucket']}/{where['prefix']}"


def child_env(where: Where) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k != "S3EXP_STORE"}
    env["PYTHONPATH"] = str(REPO)
    if where["kind"] == "s3":
        env.update({"AWS_ACCESS_KEY_ID": where["access_key"],
                    "AWS_SECRET_ACCESS_KEY": where["secret_key"], "AWS_REGION": "us-east-1"})
    return env


class Proc:
    """A started worker process with its stdout/stderr in files."""

    def __init__(self, argv: list[str], env: dict[str, str], logdir: Path, name: str,
                 report: Path | None = None) -> None:
        self.name = name
        self.out = logdir / f"{name}.out"
        self.err = logdir / f"{name}.err"
        self.report_path = report
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.popen = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=err)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, signum: int) -> None:
        os.kill(self.popen.pid, signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout}s; "
                                 f"stderr:\n{self.stderr()[-3000:]}") from None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def report(self) -> dict[str, Any]:
        assert self.report_path is not None
        if not self.report_path.exists():
            raise AssertionError(f"{self.name} wrote no report; exit {self.popen.poll()}, "
                                 f"stderr:\n{self.stderr()[-3000:]}")
        out: dict[str, Any] = json.loads(self.report_path.read_text())
        assert "error" not in out, f"{self.name} failed:\n{out['error']}\n{self.stderr()[-3000:]}"
        return out


def start_worker(where: Where, exp: str, worker_id: str, logdir: Path, body: dict[str, Any],
                 **options: Any) -> Proc:
    """Start a Python-API worker process (see the module docstring for ``options``)."""
    report = logdir / f"{worker_id}.report.json"
    cfg = {"where": where, "experiment": exp, "worker_id": worker_id, "body": body,
           "report": str(report), **options}
    argv = [sys.executable, "-m", "tests._run_workers", json.dumps(cfg)]
    return Proc(argv, child_env(where), logdir, worker_id, report)


def start_agent(where: Where, exp: str, worker_id: str, logdir: Path, child_dir: Path,
                *extra: str) -> Proc:
    """Start the real command agent: ``s3exp worker EXP -- python _run_child.py DIR``."""
    argv = [sys.executable, "-m", "s3exp", "worker", exp, "--store", store_url(where),
            "--worker-id", worker_id, "--grace", "3", *extra]
    if where["kind"] == "s3":
        argv += ["--endpoint-url", where["endpoint"]]
    argv += ["--", sys.executable, str(CHILD), str(child_dir), "{run_id}", "{attempt}"]
    return Proc(argv, child_env(where), logdir, worker_id)


def child_pid_file(child_dir: Path, run_id: str, attempt: int) -> Path:
    """Where the agent's child (``_run_child.py``) writes its pid for ``run_id``/``attempt``."""
    return child_dir / f"child-{run_id}-{attempt}.pid"


def wait_for_child(child_dir: Path, run_id: str, attempt: int, whose: str, timeout: float) -> int:
    """The pid of the agent's child for ``run_id``/``attempt``, once it has started."""
    path = child_pid_file(child_dir, run_id, attempt)
    wait_until(f"{whose} child", path.exists, timeout)
    return int(path.read_text())


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def read_lease(store: Store, exp: str, run_id: str) -> Lease | None:
    try:
        return Lease.from_bytes(store.get(f"runs/{exp}/{run_id}/lease.json").data, f"runs/{exp}/{run_id}/lease.json")
    except ObjectNotFound:
        return None


def read_json(store: Store, key: str) -> dict[str, Any] | None:
    try:
        out: dict[str, Any] = json.loads(store.get(key).data)
    except ObjectNotFound:
        return None
    return out


def read_result(store: Store, exp: str, run_id: str) -> dict[str, Any] | None:
    """The run's committed result (the one non-empty ``result-NNNN.json``), or None."""
    prefix = f"runs/{exp}/{run_id}/result-"
    committed = [m for m in store.list(prefix) if m.size > 0]
    assert len(committed) <= 1, f"{run_id}: several committed results {committed}"
    return read_json(store, committed[0].key) if committed else None


def run_keys(store: Store, exp: str, run_id: str) -> list[str]:
    prefix = f"runs/{exp}/{run_id}/"
    return [m.key[len(prefix):] for m in store.list(prefix)]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_quietly(pid: int, signum: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    raise SystemExit(worker_main(json.loads(sys.argv[1])))
