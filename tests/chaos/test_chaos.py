"""The chaos scenario: many workers, injected S3 faults, kills, a frozen worker and dying
compactors, then an independent checker.

Everything goes through the fault proxy (``fault_proxy.py``) in front of a real
SeaweedFS: 5% of requests get a fault (503 SlowDown, 500 InternalError, added latency,
a reset before the request is forwarded, or a reset after the server applied it), and
3% of writes are applied with their reply held for twice the TTL (a claim that lands,
expires and is taken over before its worker hears it landed).

* W Python-API workers (``s3exp.Worker``, separate processes) drain N runs; each run logs
  M metric steps with ``run.log``, sleeps a few ms and completes.  Leases are short
  (3 s), so heartbeats and takeovers happen.
* Every few seconds a random worker is SIGKILLed and a new one started.
* Once, a worker that holds a lease is SIGSTOPped until its run has been taken over
  (which needs at least the TTL on the server's clock), then SIGCONTed: a zombie.
* Compactors (``s3exp.compact``, separate processes) run all along; one is SIGKILLed
  with its parts written but not committed, and one with the manifest committed but its
  parts not yet published.
* At the end a final compaction runs without faults and ``checker.check`` reads the store
  directly and the workers' ledgers (see there for what it proves).

Sizes: the short form (120 runs, 4 workers, 5 steps) runs in the normal suite.
``S3EXP_CHAOS=full`` selects the full form (500 runs, 8 workers, 10 steps);
``S3EXP_CHAOS_RUNS``, ``S3EXP_CHAOS_WORKERS`` and ``S3EXP_CHAOS_STEPS`` override either;
``S3EXP_CHAOS_SEED`` fixes the seed (default: random, printed and named in failures), and
``S3EXP_CHAOS_REPORT`` names a file to which the scenario's numbers are written as JSON.
Run it alone with ``pytest -m chaos``.  (While the compactor to be killed after its commit
is let go, the looping compactors pause, so that it can win a commit at all.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import s3exp
from s3exp.bucket._records import Lease
from s3exp.core._errors import ObjectNotFound
from s3exp.devserver._seaweed import SeaweedServer
from s3exp.tables._compaction import collect_orphans

from .checker import check
from .conftest import Stores
from .fault_proxy import FAULT_KINDS, FaultConfig, FaultProxy

REPO = Path(__file__).resolve().parents[2]
EXP = "chaos"


@dataclass(frozen=True)
class Size:
    name: str
    runs: int
    workers: int
    steps: int
    compactors: int
    fault_rate: float = 0.05
    hold_rate: float = 0.03
    """Of the writes: applied, with the reply held for ``2 * ttl``."""
    ttl: float = 3.0
    kill_every: tuple[float, float] = (2.0, 4.0)
    sleep_ms: tuple[int, int] = (1, 10)
    deadline: float = 600.0
    """Give up (and fail) after this many seconds."""


# Short runs take 60-140 ms: fast enough for CI, slow enough that the drain from 30% to
# 60% done (where the forced kills fall) spans several progress counts on a fast machine.
SHORT = Size("short", runs=120, workers=4, steps=5, compactors=1, kill_every=(2.0, 4.0),
             sleep_ms=(60, 140), deadline=150.0)
FULL = Size("full", runs=500, workers=8, steps=10, compactors=2, sleep_ms=(20, 80), deadline=900.0)


def chosen_size() -> Size:
    size = FULL if os.environ.get("S3EXP_CHAOS", "").lower() == "full" else SHORT
    def number(name: str, default: int) -> int:
        return int(os.environ.get(f"S3EXP_CHAOS_{name.upper()}") or default)

    return replace(size, runs=number("runs", size.runs), workers=number("workers", size.workers),
                   steps=number("steps", size.steps))


SIZE = chosen_size()


class Child:
    """One child process of the scenario (see ``_chaos_procs``)."""

    def __init__(self, role: str, name: str, cfg: dict[str, Any], logdir: Path,
                 signal_log: list[dict[str, Any]]) -> None:
        self.role, self.name = role, name
        self.signal_log = signal_log
        self.report_path = logdir / f"{name}.report.json"
        self.err_path = logdir / f"{name}.err"
        cfg = {**cfg, "report": str(self.report_path)}
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "S3EXP_STORE"}
        env["PYTHONPATH"] = str(REPO)
        with open(logdir / f"{name}.out", "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "tests.chaos._chaos_procs", role, json.dumps(cfg)],
                cwd=REPO, env=env, stdout=out, stderr=err)
        self.killed = False

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` and log it for the checker (which subtracts stopped time from a
        body's execution and ends it at a SIGKILL)."""
        if self.alive:
            self.signal_log.append({"pid": self.popen.pid, "t": time.time(),
                                    "sig": signal.Signals(signum).name.removeprefix("SIG")})
            os.kill(self.popen.pid, signum)

    def kill(self) -> None:
        self.killed = True
        self.signal(signal.SIGKILL)
        self.popen.wait(30)

    def report(self) -> dict[str, Any] | None:
        if not self.report_path.exists():
            return None
        out: dict[str, Any] = json.loads(self.report_path.read_text())
        return out


class Scenario:
    def __init__(self, size: Size, seed: int, stores: Stores, proxy: FaultProxy,
                 tmp: Path) -> None:
        self.size, self.seed = size, seed
        self.direct, self.proxy, self.where = stores.direct, proxy, stores.where
        self.rng = random.Random(seed)
        self.logs = tmp / "logs"
        self.ledgers = tmp / "ledgers"
        self.logs.mkdir()
        self.ledgers.mkdir()
        self.workers: list[Child] = []
        self.compactors: list[Child] = []
        self.doomed: list[Child] = []
        self.stop_file = tmp / "stop-compactors"
        self.hold_file = tmp / "hold-compactors"
        self.n_workers = 0
        self.kills = 0
        self.events: list[str] = []
        self.frozen: dict[str, Any] = {}
        self.signals: list[dict[str, Any]] = []
        self.t0 = time.monotonic()

    def log(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self.t0:7.2f}s {what}")

    # -- children ----------------------------------------------------------------

    def start_worker(self) -> Child:
        name = f"w{self.n_workers:03d}"
        self.n_workers += 1
        child = Child("worker", name, {
            "where": self.where, "experiment": EXP, "worker_id": name,
            "ledger": str(self.ledgers / f"{name}.jsonl"), "steps": self.size.steps,
            "sleep_ms": list(self.size.sleep_ms)}, self.logs, self.signals)
        self.workers.append(child)
        return child

    def start_compactor(self, i: int) -> None:
        self.compactors.append(Child("compactor", f"c{i}", {
            "where": self.where, "experiment": EXP, "stop": str(self.stop_file),
            "hold": str(self.hold_file), "interval": 1.0}, self.logs, self.signals))

    def start_doomed(self, stage: str) -> Child:
        name = f"doomed-{stage}"
        child = Child("doomed", name, {"where": self.where, "experiment": EXP, "stage": stage,
                                       "armed": str(self.logs / f"{name}.armed"),
                                       "go": str(self.logs / f"{name}.go")}, self.logs, self.signals)
        self.doomed.append(child)
        return child

    def ledger_tail(self, w: Child) -> dict[str, Any] | None:
        """The worker's last lease write or commit, as its ledger says."""
        path = self.ledgers / f"{w.name}.jsonl"
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return None
        for raw in reversed(lines):
            line: dict[str, Any] = json.loads(raw)
            if line["kind"] in ("lease", "result", "refused"):
                return line
        return None

    # -- the store, read directly ------------------------------------------------

    def done(self) -> int:
        return sum(1 for m in self.direct.list(f"runs/{EXP}/")
                   if "/result-" in m.key and m.size > 0)

    def has_result(self, run_id: str) -> bool:
        return any(m.size > 0 for m in self.direct.list(f"runs/{EXP}/{run_id}/result-"))

    def superseded(self, run_id: str, attempt: int) -> bool:
        try:
            lease = Lease.from_bytes(self.direct.get(f"runs/{EXP}/{run_id}/lease.json").data, f"runs/{EXP}/{run_id}/lease.json")
        except ObjectNotFound:
            return False
        return lease.attempt > attempt

    # -- the phases --------------------------------------------------------------

    def try_freeze(self) -> bool:
        """SIGSTOP a worker whose ledger says it holds a lease right now."""
        candidates = [w for w in self.workers if w.alive]
        self.rng.shuffle(candidates)
        for w in candidates:
            tail = self.ledger_tail(w)
            if not (tail and tail["kind"] == "lease" and tail["state"] == "running"):
                continue
            w.signal(signal.SIGSTOP)
            tail = self.ledger_tail(w)  # final now: the process is frozen
            time.sleep(0.5)  # let a result PUT already on its way land, if there is one
            if tail and tail["kind"] == "lease" and tail["state"] == "running" and not \
                    self.has_result(tail["run_id"]):
                self.frozen = {"worker": w, "run_id": tail["run_id"], "attempt": tail["attempt"],
                               "since": time.monotonic()}
                self.log(f"SIGSTOP {w.name} holding {tail['run_id']} attempt {tail['attempt']}")
                return True
            w.signal(signal.SIGCONT)
        return False

    def maybe_thaw(self) -> None:
        f = self.frozen
        if not f or "thawed" in f:
            return
        waited = time.monotonic() - f["since"]
        taken = self.superseded(f["run_id"], f["attempt"])
        if (taken and waited > self.size.ttl) or waited > 20 * self.size.ttl:
            f["worker"].signal(signal.SIGCONT)
            f["thawed"] = waited
            f["taken_over_while_frozen"] = taken
            self.log(f"SIGCONT {f['worker'].name} after {waited:.1f}s (taken over: {taken})")

    def kill_one(self) -> None:
        frozen = self.frozen.get("worker")  # kept alive, to see what the zombie does
        live = [w for w in self.workers if w.alive and w is not frozen]
        if not live:
            return
        # Rather one that holds a lease now (its run must then be taken over), else one
        # that has started working: a kill during the seconds of a process's start-up
        # tests nothing.
        holding = [w for w in live if (t := self.ledger_tail(w)) is not None
                   and t["kind"] == "lease" and t["state"] == "running"]
        working = [w for w in live if self.ledger_tail(w) is not None]
        victim = self.rng.choice(holding or working or live)
        victim.kill()
        self.kills += 1
        new = self.start_worker()
        self.log(f"SIGKILL {victim.name}; started {new.name}")

    def run(self) -> dict[str, Any]:
        size = self.size
        for _ in range(size.workers):
            self.start_worker()
        for i in range(size.compactors):
            self.start_compactor(i)
        # Compactors to be killed mid-commit: started now, let go at 25% and 45% done.
        doomed = [(0.25, self.start_doomed("parts-written")), (0.45, self.start_doomed("committed"))]
        kinds = [k for k in FAULT_KINDS if k != "hold_reply"]
        rates = {**{k: size.fault_rate / len(kinds) for k in kinds}, "hold_reply": size.hold_rate}
        self.proxy.configure(FaultConfig(rates=rates, latency=(0.02, 0.3), hold=2 * size.ttl))
        deadline = self.t0 + size.deadline
        next_kill = time.monotonic() + 3.0 + self.rng.uniform(*size.kill_every)
        current_doomed: Child | None = None
        done = 0
        last_count = 0.0
        while True:
            now = time.monotonic()
            assert now < deadline, (f"chaos (seed {self.seed}) did not finish within {size.deadline}s: "
                                    f"{done}/{size.runs} runs done\n" + "\n".join(self.events[-30:]))
            if now - last_count > 0.25:
                done, last_count = self.done(), now
            # Done when every run is and every worker has exited, and not before both
            # doomed compactors have reached their stage: one let go late (the workers
            # drained the runs meanwhile) still has finished runs to compact, since the
            # others are held back, and would otherwise be killed before its commit.
            if (done >= size.runs and not any(w.alive for w in self.workers)
                    and current_doomed is None and not doomed):
                break
            if not self.frozen and done >= size.runs // 5:
                self.try_freeze()
            self.maybe_thaw()
            # Every few seconds; and at least two kills, at 30% and 60% done, however fast
            # the machine drains the runs.
            # (Past 90% too: workers can drain the runs from 30% to 90% between two counts.)
            behind = self.kills < 2 and done >= size.runs * 0.3 * (self.kills + 1)
            if (done < 0.9 * size.runs and now >= next_kill) or (behind and done < size.runs):
                self.kill_one()
                next_kill = now + self.rng.uniform(*size.kill_every)
            if current_doomed is None and doomed and done >= size.runs * doomed[0][0]:
                current_doomed = doomed.pop(0)[1]
                if current_doomed.name == "doomed-committed":
                    # To die after its commit it must win one: the others wait meanwhile.
                    self.hold_file.touch()
                (self.logs / f"{current_doomed.name}.go").touch()
                self.log(f"let {current_doomed.name} go")
            if current_doomed is not None:
                armed = self.logs / f"{current_doomed.name}.armed"
                if armed.exists():
                    current_doomed.kill()
                    self.log(f"SIGKILL {current_doomed.name} at its stage")
                    current_doomed = None
                    self.hold_file.unlink(missing_ok=True)
                elif not current_doomed.alive:
                    self.log(f"{current_doomed.name} exited without reaching its stage")
                    current_doomed = None
                    self.hold_file.unlink(missing_ok=True)
            if done >= size.runs and self.frozen and "thawed" not in self.frozen:
                self.frozen["worker"].signal(signal.SIGCONT)
                self.frozen["thawed"] = time.monotonic() - self.frozen["since"]
                self.frozen["taken_over_while_frozen"] = False
            time.sleep(0.05)
        self.log("all runs done and every worker exited")
        if current_doomed is not None:
            current_doomed.kill()
        self.stop_file.touch()
        for c in self.compactors:
            c.popen.wait(120)
        self.proxy.disable()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        reports = {w.name: w.report() for w in self.workers}
        stats = [r["stats"] for r in reports.values() if r and "stats" in r]
        return {
            "kills": self.kills,
            "workers_started": self.n_workers,
            "worker_errors": {n: r["error"][-2000:] for n, r in reports.items() if r and "error" in r},
            "worker_stats": {k: sum(s[k] for s in stats) for k in
                             ("claimed", "completed", "failed", "lost", "interrupted")},
            "frozen": {k: (v.name if isinstance(v, Child) else v) for k, v in self.frozen.items()
                       if k != "since"},
            "frozen_outcome": self.frozen_outcome(),
            "doomed_compactors": [(d.name, (self.logs / f"{d.name}.armed").exists(), d.killed)
                                  for d in self.doomed],
            "compactors": [c.report() for c in self.compactors],
        }

    def frozen_outcome(self) -> list[str]:
        """What the thawed zombie said about the run it held (its stderr)."""
        if not self.frozen:
            return []
        w: Child = self.frozen["worker"]
        run = f"{EXP}/{self.frozen['run_id']} attempt={self.frozen['attempt']}"
        return [ln.strip() for ln in w.err_path.read_text(errors="replace").splitlines() if run in ln]

    def cleanup(self) -> None:
        for c in self.workers + self.compactors + self.doomed:
            if c.alive:
                c.signal(signal.SIGCONT)
                c.kill()


@pytest.fixture
def chaos_seed() -> int:
    raw = os.environ.get("S3EXP_CHAOS_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(1, 2**31)


@pytest.fixture
def scenario(stores: Stores, proxy: FaultProxy, tmp_path: Path, chaos_seed: int) -> Iterator[Scenario]:
    sc = Scenario(SIZE, chaos_seed, stores, proxy, tmp_path)
    yield sc
    sc.cleanup()


@pytest.mark.chaos
@pytest.mark.seaweed
@pytest.mark.timeout(SIZE.deadline + 300)
def test_chaos(scenario: Scenario, stores: Stores, proxy: FaultProxy, seaweed: SeaweedServer,
               chaos_seed: int) -> None:
    size = SIZE
    proxy.reseed(chaos_seed)
    spec = s3exp.parse_spec({"name": EXP, "runs_per_pair": size.runs, "lease_seconds": size.ttl,
                             "max_attempts": 50,
                             "parameters": {"lr": {"min": 0.001, "max": 0.1}}})
    s3exp.submit(stores.direct, spec)
    started = time.monotonic()
    summary = scenario.run()
    elapsed = time.monotonic() - started

    # A final, clean compaction (no faults, nothing running), then orphans of the killed
    # compactors are collected: nothing else can be committing now.
    final = s3exp.compact(stores.direct, EXP)
    orphans = collect_orphans(stores.direct, EXP, orphan_age=timedelta(0))
    ledgers = sorted(scenario.ledgers.glob("*.jsonl"))
    report = check(stores.direct, spec, ledgers, size.steps, signals=scenario.signals)
    exact = s3exp.metrics(stores.direct, EXP)

    faults = proxy.stats()
    out = {"seed": chaos_seed, "size": asdict(size), "seconds": round(elapsed, 1),
           "faults": faults, "faults_total": sum(faults.values()),
           "faults_by_method": {f"{k}/{m}": n for (k, m), n in sorted(proxy.faults_by_method().items())},
           "requests": proxy.requests(), "upstream_errors": proxy.upstream_errors,
           **summary, "final_compaction": final.to_dict(), "orphans_collected": orphans,
           "check": report.to_dict(), "events": scenario.events}
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if os.environ.get("S3EXP_CHAOS_REPORT"):
        Path(os.environ["S3EXP_CHAOS_REPORT"]).write_text(text)

    where = f"chaos seed {chaos_seed}, size {size.name}"
    assert not report.violations, f"{where}: " + "\n".join(report.violations[:40])
    assert report.results == size.runs
    assert exact.num_rows == size.runs * size.steps, where
    # The scenario did what it says: every fault kind, kills, takeovers, a frozen worker
    # whose run was taken over, and compactors killed at both stages.
    assert all(n > 0 for n in faults.values()), f"{where}: a fault kind never fired: {faults}"
    assert summary["kills"] >= 2, where
    assert report.takeovers >= 1 and report.max_attempt >= 2, where
    assert summary["frozen"].get("taken_over_while_frozen"), \
        f"{where}: no worker was frozen holding a lease until it was taken over: {summary['frozen']}"
    assert [d[1:] for d in summary["doomed_compactors"]] == [(True, True), (True, True)], \
        f"{where}: {summary['doomed_compactors']}"
    assert not summary["worker_errors"], f"{where}: workers ended with errors: {summary['worker_errors']}"
    assert all(c is not None and "error" not in c for c in summary["compactors"]), \
        f"{where}: a compactor crashed: {summary['compactors']}"
    assert ledgers and report.ledger_lines >= size.runs
