"""Guarantees 1-3 under faults, with real worker processes on a real SeaweedFS server
(and the file store where noted): kill -9, a paused zombie, skewed clocks, failing runs
and SIGTERM preemption.

Workers are separate processes (``tests/_run_workers.py``): Python-API workers, and the
real command agent ``s3exp worker EXP -- python tests/_run_child.py ...``.  A run body
blocks until the test creates ``go-<attempt>``, so the test decides which attempt may
finish.  Every verdict is read from the store: leases, results, error and interrupt
records, and the server's Last-Modified times.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import s3exp
from s3exp.bucket._records import Lease
from s3exp.specs._expansion import expand
from s3exp.stores import Store

from . import _run_workers as rw
from .conftest import shared_target

EXP = "faults"
SHORT_TTL = 2.0
# Generous: the machine has 2 cores and other tests may run at the same time.
START = 60.0  # a worker process starting and claiming
SETTLE = 30.0  # anything else that should happen "soon"


def _where(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[rw.Where, Store]:
    return shared_target(kind, request, tmp_path)


@pytest.fixture
def seaweed_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[rw.Where, Store]:
    return _where("seaweed", request, tmp_path)


@pytest.fixture(params=["file", pytest.param("seaweed", marks=pytest.mark.seaweed)])
def any_target(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[rw.Where, Store]:
    return _where(request.param, request, tmp_path)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(logs, gates): process logs and reports; go-files and child pid files."""
    logs, gates = tmp_path / "logs", tmp_path / "gates"
    logs.mkdir()
    gates.mkdir()
    return logs, gates


def _submit(store: Store, **fields: Any) -> str:
    """A one-run experiment; returns the run id."""
    spec = s3exp.parse_spec({"name": EXP, "parameters": {"lr": {"min": 0.1, "max": 0.2}},
                             **fields})
    s3exp.submit(store, spec)
    (slot,) = expand(spec)
    return slot.run_id


def _lease_key(run_id: str) -> str:
    return f"runs/{EXP}/{run_id}/lease.json"


def _held_by(store: Store, run_id: str, worker_id: str, attempt: int) -> Lease | None:
    lease = rw.read_lease(store, EXP, run_id)
    ok = (lease is not None and lease.worker.id == worker_id and lease.attempt == attempt
          and lease.state == "running")
    return lease if ok else None


def _result(store: Store, run_id: str) -> dict[str, Any] | None:
    return rw.read_result(store, EXP, run_id)


def _check_expired_takeover(store: Store, run_id: str, dead_worker: str, taker: str,
                            dead_last_renewal: Any) -> dict[str, Any]:
    """The state after a dead or paused holder's run was taken over and completed."""
    result = _result(store, run_id)
    assert result is not None
    assert (result["attempt"], result["worker"]) == (2, taker)
    lease = rw.read_lease(store, EXP, run_id)
    assert lease is not None
    assert (lease.attempt, lease.failures, lease.worker.id) == (2, 1, taker)
    # attempt 1 was sealed (empty result-0001) before it was taken over
    assert sorted(rw.run_keys(store, EXP, run_id)) == ["error-0001.json", "lease.json",
                                                       "result-0001.json", "result-0002.json"]
    assert store.head(f"runs/{EXP}/{run_id}/result-0001.json").size == 0
    err = rw.read_json(store, f"runs/{EXP}/{run_id}/error-0001.json")
    assert err is not None
    assert err["attempt"] == 1 and err["worker"]["id"] == dead_worker
    assert err["reason"] == "lease expired" and "lease expired" in err["error"]
    # Not sooner than the TTL, on the server's clock: the takeover record was written at
    # least TTL after the dead lease's last renewal (less one second of Last-Modified
    # resolution on S3), and not much later either.
    waited = store.head(f"runs/{EXP}/{run_id}/error-0001.json").last_modified - dead_last_renewal
    assert timedelta(seconds=SHORT_TTL - 1) <= waited <= timedelta(seconds=SHORT_TTL + 15), waited
    print(f"takeover {waited.total_seconds():.1f}s after the last renewal (TTL {SHORT_TTL}s)")
    # The run is counted once.
    status = s3exp.experiment_status(store, EXP)
    assert status.counts == {"pending": 0, "running": 0, "done": 1, "failed": 0, "interrupted": 0}
    rows = s3exp.read_results(store, EXP)
    assert [(r["run_id"], r["attempt"]) for r in rows] == [(run_id, 2)]
    return result


# -- kill -9 -------------------------------------------------------------------------


def test_kill_9_python_worker_run_is_taken_over_after_ttl(any_target: tuple[rw.Where, Store],
                                                          dirs: tuple[Path, Path]) -> None:
    where, store = any_target
    logs, gates = dirs
    run_id = _submit(store, lease_seconds=SHORT_TTL)
    gate_body = {"kind": "gate", "dir": str(gates)}
    (gates / "go-2").touch()  # a second attempt may finish at once; the first never does
    victim = rw.start_worker(where, EXP, "victim", logs, gate_body)
    taker: rw.Proc | None = None
    try:
        rw.wait_until("the victim's claim", lambda: _held_by(store, run_id, "victim", 1), START)
        taker = rw.start_worker(where, EXP, "taker", logs, gate_body)  # waits: nothing claimable
        # The victim heartbeats, and the waiting taker leaves its live lease alone.
        rw.wait_until("two renewals", lambda: (lease := _held_by(store, run_id, "victim", 1))
                      and lease.renewals >= 2, SETTLE)
        victim.signal(signal.SIGKILL)
        victim.wait(SETTLE)
        last_renewal = store.head(_lease_key(run_id)).last_modified
        assert _held_by(store, run_id, "victim", 1), "the live lease was taken over"
        rw.wait_until("the takeover's result", lambda: _result(store, run_id), SETTLE)
        assert taker.wait(SETTLE) == 0  # and the taker exits: nothing left to do
        _check_expired_takeover(store, run_id, "victim", "taker", last_renewal)
        assert taker.report()["stats"] | {"run_ids": None} == {
            "claimed": 1, "completed": 1, "failed": 0, "lost": 0, "interrupted": 0, "run_ids": None,
            "failed_runs": []}
    finally:
        victim.kill()
        if taker is not None:
            taker.kill()


@pytest.mark.seaweed
def test_kill_9_command_agent_and_child_run_is_taken_over(seaweed_target: tuple[rw.Where, Store],
                                                         dirs: tuple[Path, Path]) -> None:
    where, store = seaweed_target
    logs, gates = dirs
    run_id = _submit(store, lease_seconds=SHORT_TTL)
    victim = rw.start_agent(where, EXP, "victim", logs, gates)
    taker: rw.Proc | None = None
    child = 0
    try:
        child = rw.wait_for_child(gates, run_id, 1, "the victim's", START)
        assert _held_by(store, run_id, "victim", 1)
        (gates / "go-2").touch()
        taker = rw.start_agent(where, EXP, "taker", logs, gates)
        rw.wait_until("two renewals", lambda: (lease := _held_by(store, run_id, "victim", 1))
                      and lease.renewals >= 2, SETTLE)
        victim.signal(signal.SIGKILL)
        rw.kill_quietly(child)
        victim.wait(SETTLE)
        rw.wait_until("the victim's child to die", lambda: not rw.pid_alive(child), SETTLE)
        last_renewal = store.head(_lease_key(run_id)).last_modified
        rw.wait_until("the takeover's result", lambda: _result(store, run_id), SETTLE)
        assert taker.wait(SETTLE) == 0, taker.stderr()
        result = _check_expired_takeover(store, run_id, "victim", "taker", last_renewal)
        # the result is what the taker's child (attempt 2) wrote to S3EXP_RESULT_FILE
        assert result["metrics"]["child_attempt"] == 2
        assert result["metrics"]["child_pid"] != child
        assert "1 completed, 0 failed, 0 lost" in taker.stderr()
    finally:
        victim.kill()
        if child:
            rw.kill_quietly(child)
        if taker is not None:
            taker.kill()


# -- zombie: paused past the TTL --------------------------------------------------------


@pytest.mark.seaweed
@pytest.mark.parametrize("wakes_into", ["complete", "body"])
def test_paused_python_worker_is_fenced_and_writes_no_result(
        seaweed_target: tuple[rw.Where, Store], dirs: tuple[Path, Path], wakes_into: str) -> None:
    """``complete``: the zombie's body is over when it wakes, so it goes straight for
    run.complete(), which must fence itself.  ``body``: its body is still running, and the
    heartbeat must stop it (LeaseLost raised in the thread that entered ``with run:``)."""
    where, store = seaweed_target
    logs, gates = dirs
    run_id = _submit(store, lease_seconds=SHORT_TTL)
    gate_body = {"kind": "gate", "dir": str(gates)}
    zombie = rw.start_worker(where, EXP, "zombie", logs, gate_body)
    taker: rw.Proc | None = None
    try:
        rw.wait_until("the zombie's claim", lambda: _held_by(store, run_id, "zombie", 1), START)
        taker = rw.start_worker(where, EXP, "taker", logs, gate_body)
        zombie.signal(signal.SIGSTOP)
        last_renewal = store.head(_lease_key(run_id)).last_modified
        rw.wait_until("the takeover", lambda: _held_by(store, run_id, "taker", 2), SETTLE)
        # The taker is now running attempt 2 (blocked on go-2).
        if wakes_into == "complete":
            (gates / "go-1").touch()
        zombie.signal(signal.SIGCONT)
        rw.wait_until("the zombie to notice", lambda: "lease lost" in zombie.stderr(), SETTLE)
        assert _result(store, run_id) is None, "the zombie wrote a result"
        assert _held_by(store, run_id, "taker", 2), "the zombie disturbed the taker's lease"
        assert zombie.popen.poll() is None  # it stays, waiting for the taker to finish
        (gates / "go-2").touch()
        rw.wait_until("the taker's result", lambda: _result(store, run_id), SETTLE)
        zombie.wait(SETTLE)
        z = zombie.report()["stats"]  # fails with the zombie's traceback if it crashed
        assert zombie.popen.returncode == 0 and taker.wait(SETTLE) == 0
        _check_expired_takeover(store, run_id, "zombie", "taker", last_renewal)
        assert (z["claimed"], z["completed"], z["lost"], z["failed"]) == (1, 0, 1, 0)
        assert taker.report()["stats"]["completed"] == 1
    finally:
        for p in (zombie, taker):
            if p is not None:
                rw.kill_quietly(p.pid, signal.SIGCONT)
                p.kill()


@pytest.mark.seaweed
def test_paused_command_agent_stops_its_child_and_writes_no_result(
        seaweed_target: tuple[rw.Where, Store], dirs: tuple[Path, Path]) -> None:
    where, store = seaweed_target
    logs, gates = dirs
    run_id = _submit(store, lease_seconds=SHORT_TTL)
    zombie = rw.start_agent(where, EXP, "zombie", logs, gates)
    taker: rw.Proc | None = None
    child = 0
    try:
        child = rw.wait_for_child(gates, run_id, 1, "the zombie's", START)
        taker = rw.start_agent(where, EXP, "taker", logs, gates)
        zombie.signal(signal.SIGSTOP)  # the agent only: its child runs on, in its own session
        last_renewal = store.head(_lease_key(run_id)).last_modified
        rw.wait_until("the takeover", lambda: _held_by(store, run_id, "taker", 2), SETTLE)
        rw.wait_for_child(gates, run_id, 2, "the taker's", SETTLE)
        zombie.signal(signal.SIGCONT)
        rw.wait_until("the zombie's child to be stopped", lambda: not rw.pid_alive(child), SETTLE)
        rw.wait_until("the zombie to notice", lambda: "lease lost" in zombie.stderr(), SETTLE)
        assert _result(store, run_id) is None
        (gates / "go-2").touch()
        rw.wait_until("the taker's result", lambda: _result(store, run_id), SETTLE)
        assert taker.wait(SETTLE) == 0 and zombie.wait(SETTLE) == 0
        result = _check_expired_takeover(store, run_id, "zombie", "taker", last_renewal)
        assert result["metrics"]["child_attempt"] == 2
        assert "0 completed, 0 failed, 1 lost" in zombie.stderr()
    finally:
        for p in (zombie, taker):
            if p is not None:
                rw.kill_quietly(p.pid, signal.SIGCONT)
                p.kill()
        if child:
            rw.kill_quietly(child)


# -- skewed clocks ------------------------------------------------------------------------


@pytest.mark.seaweed
@pytest.mark.parametrize(("holder_offset", "taker_offset"), [(-600, 600), (600, -600)],
                         ids=["slow-holder,fast-taker", "fast-holder,slow-taker"])
def test_skewed_clocks_neither_steal_a_live_lease_nor_miss_a_dead_one(
        seaweed_target: tuple[rw.Where, Store], dirs: tuple[Path, Path],
        holder_offset: float, taker_offset: float) -> None:
    """Clocks ten minutes off in opposite directions, injected through ``Worker(clock=)``.
    A fast taker that trusted its clock would steal the live lease at once; a slow one
    would not take the dead lease over for ten minutes."""
    where, store = seaweed_target
    logs, gates = dirs
    run_id = _submit(store, lease_seconds=SHORT_TTL)
    gate_body = {"kind": "gate", "dir": str(gates)}
    (gates / "go-2").touch()
    holder = rw.start_worker(where, EXP, "holder", logs, gate_body, clock_offset_s=holder_offset)
    taker: rw.Proc | None = None
    try:
        rw.wait_until("the holder's claim", lambda: _held_by(store, run_id, "holder", 1), START)
        started = logs / "taker.started"
        taker = rw.start_worker(where, EXP, "taker", logs, gate_body, clock_offset_s=taker_offset,
                                started=str(started))
        rw.wait_until("the taker to start", started.exists, START)
        # Live lease: for three TTLs the waiting taker polls (every TTL/4) and must not steal it.
        first = _held_by(store, run_id, "holder", 1)
        assert first is not None
        lease: Lease | None = first
        deadline = time.monotonic() + 3 * SHORT_TTL
        while time.monotonic() < deadline:
            lease = _held_by(store, run_id, "holder", 1)
            assert lease is not None, f"live lease taken over: {rw.read_lease(store, EXP, run_id)}"
            assert taker.popen.poll() is None, "the taker gave up while a run was unfinished"
            time.sleep(0.1)
        assert lease is not None and lease.renewals >= first.renewals + 3  # the holder renewed
        assert rw.run_keys(store, EXP, run_id) == ["lease.json"]
        # Dead lease: taken over after the TTL on the server's clock, not sooner, not never.
        holder.signal(signal.SIGKILL)
        holder.wait(SETTLE)
        last_renewal = store.head(_lease_key(run_id)).last_modified
        rw.wait_until("the takeover's result", lambda: _result(store, run_id), SETTLE)
        assert taker.wait(SETTLE) == 0
        _check_expired_takeover(store, run_id, "holder", "taker", last_renewal)
    finally:
        holder.kill()
        if taker is not None:
            taker.kill()


# -- retries -------------------------------------------------------------------------------


@pytest.mark.seaweed
def test_failing_run_ends_failed_keeps_tracebacks_and_reset_makes_it_claimable(
        seaweed_target: tuple[rw.Where, Store], dirs: tuple[Path, Path]) -> None:
    where, store = seaweed_target
    logs, _ = dirs
    run_id = _submit(store, max_attempts=3)
    worker = rw.start_worker(where, EXP, "w1", logs, {"kind": "raise"})
    # The worker retries at once, and exits when the run is failed: nothing is unfinished.
    assert worker.wait(START) == 0
    stats = worker.report()["stats"]
    assert (stats["claimed"], stats["failed"], stats["completed"]) == (3, 3, 0)

    errors = [f"error-{n:04d}.json" for n in (1, 2, 3)]
    # attempts 1 and 2 were sealed before each reclaim; attempt 3 ended failed by itself
    assert sorted(rw.run_keys(store, EXP, run_id)) == [*errors, "lease.json", "result-0001.json",
                                                       "result-0002.json"]
    history = {name: store.get(f"runs/{EXP}/{run_id}/{name}").data for name in errors}
    for n, name in enumerate(errors, 1):
        rec = json.loads(history[name])
        assert (rec["kind"], rec["attempt"], rec["reason"], rec["worker"]["id"]) == (
            "error", n, "exception", "w1")
        assert rec["error"].startswith("Traceback (most recent call last)")
        assert "in worker_main" in rec["error"]  # the frame that raised
        assert f"RuntimeError: boom in {run_id} attempt {n}" in rec["error"]
    lease = rw.read_lease(store, EXP, run_id)
    assert lease is not None
    assert (lease.state, lease.attempt, lease.failures) == ("failed", 3, 3)
    assert s3exp.experiment_status(store, EXP).counts["failed"] == 1

    # The real CLI.
    cli = subprocess.run(
        [sys.executable, "-m", "s3exp", "reset", EXP, "--failed", "--store", rw.store_url(where),
         *(["--endpoint-url", where["endpoint"]] if where["kind"] == "s3" else [])],
        env=rw.child_env(where), cwd=rw.REPO, capture_output=True, text=True, timeout=SETTLE)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith(f"reset 1 run(s): {run_id}")
    lease = rw.read_lease(store, EXP, run_id)
    assert lease is not None
    assert (lease.state, lease.attempt, lease.failures, lease.budget) == ("released", 3, 3, 6)
    assert s3exp.experiment_status(store, EXP).counts["pending"] == 1
    for name, data in history.items():  # the history survives, byte for byte
        assert store.get(f"runs/{EXP}/{run_id}/{name}").data == data

    again = rw.start_worker(where, EXP, "w2", logs, {"kind": "raise", "upto": 3})
    assert again.wait(START) == 0
    assert again.report()["stats"]["completed"] == 1
    result = _result(store, run_id)
    assert result is not None and (result["attempt"], result["worker"]) == (4, "w2")
    seals = [f"result-{a:04d}.json" for a in (1, 2, 3)]
    assert sorted(rw.run_keys(store, EXP, run_id)) == [*errors, "lease.json", *seals, "result-0004.json"]
    for name, data in history.items():
        assert store.get(f"runs/{EXP}/{run_id}/{name}").data == data


# -- preemption: SIGTERM ------------------------------------------------------------------

LONG_TTL = 60.0
PICKUP = 15.0  # "at once": well before the TTL


def _check_preempted_and_picked_up(store: Store, run_id: str, victim: str, taker: str) -> None:
    result = _result(store, run_id)
    assert result is not None and (result["attempt"], result["worker"]) == (2, taker)
    lease = rw.read_lease(store, EXP, run_id)
    assert lease is not None
    assert (lease.attempt, lease.failures) == (2, 0)  # an interruption is not a failure
    assert sorted(rw.run_keys(store, EXP, run_id)) == ["interrupt-0001.json", "lease.json",
                                                       "result-0001.json", "result-0002.json"]
    rec = rw.read_json(store, f"runs/{EXP}/{run_id}/interrupt-0001.json")
    assert rec is not None
    assert (rec["kind"], rec["attempt"], rec["worker"]["id"]) == ("interrupt", 1, victim)
    assert rec["reason"] == f"signal {int(signal.SIGTERM)}"


@pytest.mark.seaweed
def test_sigterm_python_worker_releases_run_to_a_waiting_worker_at_once(
        seaweed_target: tuple[rw.Where, Store], dirs: tuple[Path, Path]) -> None:
    where, store = seaweed_target
    logs, gates = dirs
    run_id = _submit(store, lease_seconds=LONG_TTL)
    gate_body = {"kind": "gate", "dir": str(gates)}
    (gates / "go-2").touch()
    victim = rw.start_worker(where, EXP, "victim", logs, gate_body)
    taker: rw.Proc | None = None
    try:
        rw.wait_until("the victim's claim", lambda: _held_by(store, run_id, "victim", 1), START)
        started = logs / "taker.started"
        taker = rw.start_worker(where, EXP, "taker", logs, gate_body, started=str(started))
        rw.wait_until("the taker to start waiting", started.exists, START)
        time.sleep(1.0)  # setup, not a check: let the taker find nothing and go idle
        assert _held_by(store, run_id, "victim", 1)
        sent = time.monotonic()
        victim.signal(signal.SIGTERM)
        rw.wait_until("the pickup", lambda: _held_by(store, run_id, "taker", 2) or _result(store, run_id),
                      PICKUP)
        pickup = time.monotonic() - sent
        assert victim.wait(SETTLE) == 0
        v = victim.report()
        assert v["stopped_by_signal"] and v["stats"]["interrupted"] == 1
        rw.wait_until("the taker's result", lambda: _result(store, run_id), SETTLE)
        assert taker.wait(SETTLE) == 0
        _check_preempted_and_picked_up(store, run_id, "victim", "taker")
        assert pickup < PICKUP < LONG_TTL
        print(f"picked up {pickup:.1f}s after SIGTERM (TTL {LONG_TTL}s)")
    finally:
        victim.kill()
        if taker is not None:
            taker.kill()


@pytest.mark.seaweed
def test_sigterm_command_agent_stops_child_and_releases_run_at_once(
        seaweed_target: tuple[rw.Where, Store], dirs: tuple[Path, Path]) -> None:
    where, store = seaweed_target
    logs, gates = dirs
    run_id = _submit(store, lease_seconds=LONG_TTL)
    victim = rw.start_agent(where, EXP, "victim", logs, gates)
    taker: rw.Proc | None = None
    child = 0
    try:
        child = rw.wait_for_child(gates, run_id, 1, "the victim's", START)
        (gates / "go-2").touch()
        taker = rw.start_agent(where, EXP, "taker", logs, gates)
        time.sleep(2.0)  # setup, not a check: let the taker start, find nothing and go idle
        assert _held_by(store, run_id, "victim", 1)
        sent = time.monotonic()
        victim.signal(signal.SIGTERM)
        assert victim.wait(SETTLE) == 128 + signal.SIGTERM
        assert not rw.pid_alive(child), "the agent left its child running"
        assert "0 completed, 0 failed, 0 lost, 1 interrupted" in victim.stderr()
        rw.wait_until("the pickup", lambda: _held_by(store, run_id, "taker", 2) or _result(store, run_id),
                      PICKUP)
        pickup = time.monotonic() - sent
        rw.wait_until("the taker's result", lambda: _result(store, run_id), SETTLE)
        assert taker.wait(SETTLE) == 0, taker.stderr()
        _check_preempted_and_picked_up(store, run_id, "victim", "taker")
        assert pickup < PICKUP < LONG_TTL
        print(f"picked up {pickup:.1f}s after SIGTERM (TTL {LONG_TTL}s)")
    finally:
        victim.kill()
        if child:
            rw.kill_quietly(child)
        if taker is not None:
            taker.kill()


# -- when a worker exits ---------------------------------------------------------------------


def test_idle_worker_waits_while_runs_are_unfinished_unless_told_not_to(
        request: pytest.FixtureRequest, tmp_path: Path, dirs: tuple[Path, Path]) -> None:
    """By default a worker with nothing to claim stays while another worker holds an
    unfinished run (it may have to take it over) and exits once every run is finished.
    ``--no-wait`` / ``wait=False`` exit at once; a cancel ends the wait too."""
    where, store = _where("file", request, tmp_path)
    logs, gates = dirs
    run_id = _submit(store, lease_seconds=LONG_TTL)
    gate_body = {"kind": "gate", "dir": str(gates)}
    holder = rw.start_worker(where, EXP, "holder", logs, gate_body)
    procs = [holder]
    try:
        rw.wait_until("the holder's claim", lambda: _held_by(store, run_id, "holder", 1), START)
        early_api = rw.start_worker(where, EXP, "early-api", logs, gate_body, wait=False)
        early_cli = rw.start_agent(where, EXP, "early-cli", logs, gates, "--no-wait")
        waiter = rw.start_worker(where, EXP, "waiter", logs, gate_body, poll_seconds=0.2)
        procs += [early_api, early_cli, waiter]
        assert early_api.wait(START) == 0 and early_api.report()["stats"]["claimed"] == 0
        assert early_cli.wait(START) == 0
        assert "0 completed, 0 failed, 0 lost, 0 interrupted" in early_cli.stderr()
        assert waiter.popen.poll() is None, waiter.stderr()
        assert _held_by(store, run_id, "holder", 1)
        (gates / "go-1").touch()
        assert holder.wait(SETTLE) == 0 and waiter.wait(SETTLE) == 0
        assert waiter.report()["stats"]["claimed"] == 0
        result = _result(store, run_id)
        assert result is not None and result["worker"] == "holder"

        # A cancelled experiment keeps no worker waiting: submit another, hold its run,
        # cancel it, and start a worker.
        other = s3exp.parse_spec({"name": "other", "parameters": {"x": {"value": 1}},
                                  "lease_seconds": 3})
        s3exp.submit(store, other)
        (other_slot,) = expand(other)
        never = tmp_path / "never"  # no go-file ever appears here
        never.mkdir()
        holder2 = rw.start_agent(where, "other", "holder2", logs, never)
        procs.append(holder2)
        child = rw.wait_for_child(never, other_slot.run_id, 1, "holder2's", START)
        s3exp.set_control(store, "other", "cancelled")
        waiter2 = rw.start_worker(where, "other", "waiter2", logs, gate_body, poll_seconds=0.2)
        procs.append(waiter2)
        # The agent stops its child at its next heartbeat and releases the run as
        # interrupted; neither worker waits for a cancelled experiment.
        assert waiter2.wait(SETTLE) == 0 and holder2.wait(SETTLE) == 0
        assert waiter2.report()["stats"]["claimed"] == 0
        assert "0 completed, 0 failed, 0 lost, 1 interrupted" in holder2.stderr()
        assert not rw.pid_alive(child)
        lease = rw.read_lease(store, "other", other_slot.run_id)
        assert lease is not None and (lease.state, lease.failures) == ("interrupted", 0)
        rec = rw.read_json(store, f"runs/other/{other_slot.run_id}/interrupt-0001.json")
        assert rec is not None and rec["reason"] == "cancelled"
    finally:
        for p in procs:
            p.kill()
