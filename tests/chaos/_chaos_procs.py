"""Child processes of the chaos scenario (``python -m tests.chaos._chaos_procs ROLE CFG``).

Roles:

``worker``     a Python-API worker (``s3exp.Worker``) whose store is wrapped in a
               :class:`LedgerStore`; each run logs ``steps`` metric steps with ``run.log``,
               sleeps a few ms and completes.
``compactor``  ``s3exp.compact`` in a loop until the file ``stop`` exists, idle while the
               file ``hold`` exists.
``doomed``     once the file ``go`` exists, ``s3exp.compact`` with the ``inject`` hook: at
               ``stage`` it touches the file ``armed`` and sleeps, for the parent to
               SIGKILL it there.

Every role writes a JSON report at a clean exit.  Errors that end a role are in the
report; a SIGKILLed process writes none, which is the point.

The ledger, one JSON line per event, each with ``run_id, attempt, t, worker, pid``
(``t`` is the wall time; for a write, taken *before* the request was sent):

``lease``    a lease write the store confirmed (with ``token`` and ``state``);
``result``   a commit (a non-empty ``result-NNNN.json``) the store confirmed;
``refused``  a commit the store refused (the attempt had been sealed);
``seal``     a seal (an empty ``result-NNNN.json``) this process created, as a taker;
``begin`` / ``end``   the user's body of a run started / stopped computing.

The parent's checker turns the lease lines of one attempt into the interval [first, last]
during which it held the lease, and the body lines into the intervals it executed.
Lines are appended with one ``write`` to an ``O_APPEND`` descriptor, so a SIGKILL loses
at most the line of a write in flight, never half a line.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from s3exp import compact
from s3exp.core._errors import AlreadyExists, RunAlreadyCompleted, S3ExpError
from s3exp.runs._worker import Run, Worker
from s3exp.stores import ObjectMeta, S3Store, Store

from .._delegating_store import DelegatingStore


def open_store(where: dict[str, str]) -> S3Store:
    return S3Store(where["bucket"], where["prefix"], endpoint_url=where["endpoint"],
                   path_style=True, credentials=(where["access_key"], where["secret_key"]))


class LedgerStore(DelegatingStore):
    """A store that records, in a per-process ledger file, every confirmed lease write and
    every commit or seal of a result key: what the checker proves its verdicts from."""

    def __init__(self, inner: Store, ledger: Path, worker: str) -> None:
        super().__init__(inner)
        self.worker = worker
        self._fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def note(self, kind: str, run_id: str, attempt: int, t: float, **extra: Any) -> None:
        line = {"kind": kind, "run_id": run_id, "attempt": attempt, "t": t,
                "worker": self.worker, "pid": os.getpid(), **extra}
        os.write(self._fd, (json.dumps(line) + "\n").encode())

    @contextlib.contextmanager
    def body(self, run: Run) -> Iterator[None]:
        """Around the user's computation inside ``with run:``."""
        self.note("begin", run.run_id, run.attempt, time.time(), token=run.lease.token)
        try:
            yield
        finally:
            self.note("end", run.run_id, run.attempt, time.time(), token=run.lease.token)

    def _note_write(self, key: str, data: bytes, sent: float, refused: bool = False) -> None:
        name = key.rsplit("/", 1)[-1]
        if name == "lease.json" and not refused:
            body = json.loads(data)
            self.note("lease", body["run_id"], body["attempt"], sent, token=body["token"],
                      state=body["state"])
        elif name.startswith("result-"):
            run_id, attempt = key.split("/")[-2], int(name[len("result-"):-len(".json")])
            if not data:
                if not refused:
                    self.note("seal", run_id, attempt, sent)
                return
            self.note("refused" if refused else "result", run_id, attempt, sent,
                      token=json.loads(data)["token"])

    def put_if_absent(self, key: str, data: bytes) -> ObjectMeta:
        sent = time.time()
        try:
            meta = self.inner.put_if_absent(key, data)
        except AlreadyExists:
            self._note_write(key, data, sent, refused=True)
            raise
        self._note_write(key, data, sent)
        return meta

    def put_if_match(self, key: str, data: bytes, etag: str) -> ObjectMeta:
        sent = time.time()
        meta = self.inner.put_if_match(key, data, etag)
        self._note_write(key, data, sent)
        return meta

    def close(self) -> None:
        os.close(self._fd)
        super().close()


def worker(cfg: dict[str, Any]) -> dict[str, Any]:
    store = LedgerStore(open_store(cfg["where"]), Path(cfg["ledger"]), cfg["worker_id"])
    rng = random.Random()
    w = Worker(store, cfg["experiment"], worker_id=cfg["worker_id"], wait=True)
    lo, hi = cfg["sleep_ms"]
    for run in w:
        with run:
            with store.body(run):
                for step in range(cfg["steps"]):
                    run.log({"loss": 1.0 / (step + 1)}, step=step)
                time.sleep(rng.uniform(lo, hi) / 1000)
            try:
                run.complete({"steps": cfg["steps"]})
            except RunAlreadyCompleted as e:  # (a zombie; `with run` would say nothing)
                print(f"{run!r}: {e}", file=sys.stderr, flush=True)
                raise
    return {"stats": asdict(w.stats)}


def compactor(cfg: dict[str, Any]) -> dict[str, Any]:
    store = open_store(cfg["where"])
    reports: list[dict[str, Any]] = []
    errors: list[str] = []
    stop, hold = Path(cfg["stop"]), Path(cfg["hold"])
    while not stop.exists():
        if hold.exists():  # a doomed compactor must win one commit, undisturbed
            time.sleep(0.1)
            continue
        try:
            reports.append(compact(store, cfg["experiment"]).to_dict())
        except S3ExpError as e:  # e.g. Unavailable after all retries: try again later
            errors.append(f"{type(e).__name__}: {e}")
        time.sleep(cfg.get("interval", 1.0))
    return {"committed": sum(r["committed"] for r in reports), "rounds": len(reports),
            "lost_races": sum(r["lost_races"] for r in reports), "errors": errors}


def doomed(cfg: dict[str, Any]) -> dict[str, Any]:
    store = open_store(cfg["where"])
    armed = Path(cfg["armed"])
    go = Path(cfg["go"])
    while not go.exists():  # started early, so that its start-up does not delay it later
        time.sleep(0.05)

    def hook(stage: str) -> None:
        if stage == cfg["stage"]:
            armed.touch()
            time.sleep(3600)  # the parent SIGKILLs us here

    deadline = time.monotonic() + cfg.get("give_up_s", 120)
    while time.monotonic() < deadline:  # until there is something new to compact
        try:
            compact(store, cfg["experiment"], inject=hook)
        except S3ExpError:
            pass
        time.sleep(0.2)
    return {"gave_up": True}


ROLES = {"worker": worker, "compactor": compactor, "doomed": doomed}


def main(argv: list[str]) -> int:
    role, cfg = argv[0], json.loads(argv[1])
    report: dict[str, Any] = {"role": role, "pid": os.getpid()}
    code = 0
    try:
        report.update(ROLES[role](cfg))
    except BaseException as e:  # noqa: BLE001 - everything goes to the report
        report["error"] = "".join(traceback.format_exception(e))
        code = 1
    Path(cfg["report"]).write_text(json.dumps(report))
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
