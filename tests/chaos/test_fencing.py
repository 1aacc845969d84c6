"""Fencing attacked where timing alone cannot hold: a claim whose reply comes back after
its lease was taken over, a worker frozen between its last look and its commit, and a
suspend that the worker's clock does not see.  Every verdict is read from the store
(straight to SeaweedFS, or the directory itself), never from the worker under attack.

What must hold in each case: the result that counts is the live lease holder's, the
zombie's commit (if it makes one) is refused, and the zombie's body stops within the
documented bound (``checker.OVERLAP_BOUND_S``; design.md, "What is guaranteed").
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import s3exp
from s3exp.bucket._records import Lease
from s3exp.core._clock import SystemClock
from s3exp.core._errors import LeaseLost
from s3exp.stores import FileStore, ObjectMeta, Store

from .. import _run_workers as rw
from .._delegating_store import DelegatingStore
from .checker import OVERLAP_BOUND_S
from .conftest import Stores
from .fault_proxy import FaultConfig, FaultProxy

TRIALS = 20
TTL = 5.0
HOLD = 2 * TTL  # the claim's reply is held for twice the TTL


def _submit(store: Store, name: str, runs: int = 1, ttl: float = TTL) -> list[str]:
    spec = s3exp.parse_spec({"name": name, "runs_per_pair": runs, "lease_seconds": ttl,
                             "max_attempts": 5, "parameters": {"lr": {"min": 0.1, "max": 0.2}}})
    s3exp.submit(store, spec)
    return [s.run_id for s in s3exp.expand(spec)]


def _outcomes(store: Store, exp: str, run_id: str) -> dict[int, int]:
    """attempt -> size of its result key (0: sealed)."""
    prefix = f"runs/{exp}/{run_id}/result-"
    return {int(m.key[len(prefix):-len(".json")]): m.size for m in store.list(prefix)}


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(y, d) - max(x, c)) for x, y in a for c, d in b)


@dataclass
class Bodies:
    """When each attempt's body executed, as the test's own body function saw it."""

    spans: dict[tuple[str, int], list[tuple[float, float]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, run: s3exp.Run, seconds: float) -> None:
        start = time.time()
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            with self.lock:
                self.spans.setdefault((run.run_id, run.attempt), []).append((start, time.time()))


def _taker(store: Store, exp: str, bodies: Bodies, out: dict[str, Any]) -> None:
    """A healthy worker that waits for the run to become stale and takes it over."""
    try:
        w = s3exp.Worker(store, exp, wait=True, poll_seconds=0.2, handle_signals=False,
                         worker_id=f"taker-{exp}", cost_seconds=None)
        for run in w:
            with run:
                out["took_at"] = time.time()
                bodies.run(run, 0.3)
        out["stats"] = w.stats
    except BaseException as e:  # noqa: BLE001 - reported to the test thread
        out["error"] = repr(e)


def _held_claims(proxy: FaultProxy) -> None:
    proxy.configure(FaultConfig(rates={"hold_reply": 1.0}, methods=frozenset({"PUT"}),
                                path=r"/lease\.json$", header=("if-none-match", "*"), hold=HOLD))


def _check_trials(direct: Store, exps: list[str], run_ids: dict[str, str], bodies: Bodies,
                  zombie_id: str) -> None:
    for exp in exps:
        rid = run_ids[exp]
        outcomes = _outcomes(direct, exp, rid)
        assert outcomes.get(1) == 0 and (outcomes.get(2) or 0) > 0, (exp, outcomes)
        result = rw.read_json(direct, f"runs/{exp}/{rid}/result-0002.json")
        assert result is not None and result["worker"] == f"taker-{exp}"
        lease = rw.read_lease(direct, exp, rid)
        assert lease is not None and (lease.attempt, lease.worker.id) == (2, f"taker-{exp}")
        zombie = bodies.spans.get((rid, 1), [])
        live = bodies.spans.get((rid, 2), [])
        assert live, f"{exp}: the taker's body never ran"
        assert _overlap(zombie, live) <= OVERLAP_BOUND_S, (exp, zombie, live)
        err = rw.read_json(direct, f"runs/{exp}/{rid}/error-0001.json")
        assert err is not None and err["reason"] == "lease expired" and zombie_id in err["error"]


@pytest.mark.seaweed
@pytest.mark.timeout(240)
def test_python_worker_whose_claim_reply_is_held_past_the_ttl_runs_nothing_that_counts(
        stores: Stores, proxy: FaultProxy) -> None:
    """20 trials at once: each zombie's claim is applied and its reply held 2 x TTL; a
    taker takes the run over on the server's clock meanwhile.  The zombie hears of its
    claim only after the takeover: it must not run the body (it renews first and finds
    the lease gone), and whatever it does, the taker's result is the one that counts."""
    exps = [f"held{i:02d}" for i in range(TRIALS)]
    run_ids = {e: _submit(stores.direct, e)[0] for e in exps}
    _held_claims(proxy)
    bodies = Bodies()
    zombies: dict[str, dict[str, Any]] = {e: {} for e in exps}
    takers: dict[str, dict[str, Any]] = {e: {} for e in exps}

    def zombie(exp: str) -> None:
        out = zombies[exp]
        try:
            w = s3exp.Worker(stores.proxied, exp, wait=False, handle_signals=False,
                             worker_id="zombie", cost_seconds=None)
            for run in w:
                with run:
                    bodies.run(run, 0.3)
                    out["committed"] = run.complete({})
            out["stats"] = w.stats
            out["reply_at"] = time.time()
        except BaseException as e:  # noqa: BLE001
            out["error"] = repr(e)

    threads = [threading.Thread(target=zombie, args=(e,)) for e in exps]
    for t in threads:
        t.start()
    rw.wait_until("every zombie's claim to land", lambda: all(
        rw.read_lease(stores.direct, e, run_ids[e]) for e in exps), 60)
    takers_t = [threading.Thread(target=_taker, args=(stores.direct, e, bodies, takers[e]))
                for e in exps]
    for t in takers_t:
        t.start()
    for t in threads + takers_t:
        t.join(120)
    assert proxy.stats()["hold_reply"] == TRIALS
    for exp in exps:
        z, tk = zombies[exp], takers[exp]
        assert "error" not in z and "error" not in tk, (exp, z, tk)
        assert tk["took_at"] < z["reply_at"], f"{exp}: the takeover came after the reply"
        assert "committed" not in z, f"{exp}: the zombie committed {z['committed']}"
        assert (z["stats"].claimed, z["stats"].lost, z["stats"].completed) == (1, 1, 0), z
        assert (tk["stats"].completed, tk["stats"].lost) == (1, 0), tk
        assert (run_ids[exp], 1) not in bodies.spans, f"{exp}: the zombie ran its body"
    _check_trials(stores.direct, exps, run_ids, bodies, "zombie")


@pytest.mark.seaweed
@pytest.mark.timeout(240)
def test_command_agent_whose_claim_reply_is_held_past_the_ttl_starts_no_child(
        stores: Stores, proxy: FaultProxy, tmp_path: Path) -> None:
    """The same 20 trials with the real ``s3exp worker`` CLI as the zombie: its child
    must never start for the attempt it lost, and the taker's result counts."""
    exps = [f"agent{i:02d}" for i in range(TRIALS)]
    run_ids = {e: _submit(stores.direct, e)[0] for e in exps}
    _held_claims(proxy)
    child_dir = tmp_path / "children"
    child_dir.mkdir()
    for attempt in (1, 2):
        (child_dir / f"go-{attempt}").touch()  # children finish at once
    logs = tmp_path / "logs"
    logs.mkdir()
    agents = [rw.start_agent(stores.where, e, "zombie", logs, child_dir, "--no-wait") for e in exps]
    try:
        rw.wait_until("every zombie's claim to land", lambda: all(
            rw.read_lease(stores.direct, e, run_ids[e]) for e in exps), 90)
        bodies = Bodies()
        takers: dict[str, dict[str, Any]] = {e: {} for e in exps}
        threads = [threading.Thread(target=_taker, args=(stores.direct, e, bodies, takers[e]))
                   for e in exps]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        codes = [a.wait(120) for a in agents]
    finally:
        for a in agents:
            a.kill()
    assert proxy.stats()["hold_reply"] == TRIALS
    for exp, agent, code in zip(exps, agents, codes, strict=True):
        assert "error" not in takers[exp], takers[exp]
        assert code == 0, agent.stderr()[-2000:]
        assert not rw.child_pid_file(child_dir, run_ids[exp], 1).exists(), \
            f"{exp}: the zombie agent started a child for the attempt it lost"
    _check_trials(stores.direct, exps, run_ids, bodies, "zombie")


# -- a freeze at the commit, and a suspend the clock does not see -------------------------


class FrozenClock(SystemClock):
    """A clock whose monotonic reading stands still while ``frozen`` is set: what a
    process that cannot see its own freeze or suspend would read (CLOCK_MONOTONIC across
    a suspend, or any clock of a process stopped and continued)."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = threading.Event()
        self._hidden = 0.0
        self._since: float | None = None
        self._lock = threading.Lock()

    def freeze(self) -> None:
        with self._lock:
            self._since = super().monotonic()
            self.frozen.set()

    def thaw(self) -> None:
        with self._lock:
            assert self._since is not None
            self._hidden += super().monotonic() - self._since
            self._since = None
            self.frozen.clear()

    def monotonic(self) -> float:
        with self._lock:
            if self._since is not None:
                return self._since - self._hidden
            return super().monotonic() - self._hidden


class FreezableStore(DelegatingStore):
    """A zombie's store: while frozen, every write waits (a frozen process sends nothing).
    On thaw, the first write to go through is the commit, if one is waiting; the others
    follow once the commit's outcome is known, so that nothing the zombie could learn
    from them reaches it first."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.frozen = threading.Event()
        self.commit_waiting = threading.Event()
        self.commit_done = threading.Event()
        self.thawed = threading.Event()
        self.commits: list[tuple[str, str]] = []

    def freeze(self) -> None:
        self.thawed.clear()
        self.frozen.set()

    def thaw(self) -> None:
        self.frozen.clear()
        self.thawed.set()

    def _gate(self, key: str) -> None:
        if not self.frozen.is_set():
            return
        is_commit = "/result-" in key
        if is_commit:
            self.commit_waiting.set()
        assert self.thawed.wait(60), "never thawed"
        if not is_commit and self.commit_waiting.is_set():
            assert self.commit_done.wait(60)

    def put_if_absent(self, key: str, data: bytes) -> ObjectMeta:
        self._gate(key)
        if "/result-" not in key or not data:
            return self.inner.put_if_absent(key, data)
        try:
            meta = self.inner.put_if_absent(key, data)
            self.commits.append((key, "ok"))
            return meta
        except Exception as e:
            self.commits.append((key, type(e).__name__))
            raise
        finally:
            self.commit_done.set()

    def put_if_match(self, key: str, data: bytes, etag: str) -> ObjectMeta:
        self._gate(key)
        return self.inner.put_if_match(key, data, etag)


@pytest.fixture(params=["file", "seaweed"])
def direct(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "file":
        yield FileStore(tmp_path / "store")
    else:
        yield request.getfixturevalue("seaweed_bucket")("fence")


def _take_over_while(direct: Store, exp: str, run_id: str, bodies: Bodies) -> dict[str, Any]:
    out: dict[str, Any] = {}
    taker = threading.Thread(target=_taker, args=(direct, exp, bodies, out))
    taker.start()
    taker.join(60)
    assert "error" not in out and out["stats"].completed == 1, out
    lease = rw.read_lease(direct, exp, run_id)
    assert lease is not None and lease.attempt == 2
    return out


@dataclass
class Zombie:
    """What a freeze or suspend test needs: one run with a short TTL, and the zombie's
    store and clock, which the test freezes and thaws."""

    run_id: str
    store: FreezableStore
    clock: FrozenClock
    bodies: Bodies = field(default_factory=Bodies)
    out: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def on(cls, direct: Store, exp: str, ttl: float = 2.0) -> Zombie:
        (run_id,) = _submit(direct, exp, ttl=ttl)
        return cls(run_id, FreezableStore(direct), FrozenClock())

    def worker(self, exp: str) -> s3exp.Worker:
        return s3exp.Worker(self.store, exp, wait=False, handle_signals=False,
                            worker_id="zombie", clock=self.clock, cost_seconds=None)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("trial", range(3))
def test_worker_frozen_between_its_last_check_and_its_commit_is_fenced(
        direct: Store, trial: int) -> None:
    """The zombie's body is done; it is frozen exactly as its commit is about to be sent,
    with a clock that does not see the freeze.  A taker takes the run over and completes
    it.  Thawed, the zombie sends its commit first of all: refused, LeaseLost, no result
    of attempt 1."""
    z = Zombie.on(direct, "frozen")
    run_id, zstore, clock, bodies, out = z.run_id, z.store, z.clock, z.bodies, z.out
    at_commit = threading.Event()

    def zombie() -> None:
        w = z.worker("frozen")
        try:
            for run in w:
                with run:
                    bodies.run(run, 0.05)
                    zstore.freeze()
                    clock.freeze()
                    at_commit.set()
                    try:
                        out["committed"] = run.complete({"zombie": True})
                    except LeaseLost as e:
                        out["refused"] = e
                        raise
        finally:
            out["stats"] = w.stats

    zt = threading.Thread(target=zombie)
    zt.start()
    assert at_commit.wait(30)
    assert zstore.commit_waiting.wait(30), "the zombie never reached its commit"
    taker = _take_over_while(direct, "frozen", run_id, bodies)
    clock.thaw()
    zstore.thaw()
    zt.join(30)
    assert "committed" not in out and isinstance(out.get("refused"), LeaseLost), out
    assert zstore.commits == [(f"runs/frozen/{run_id}/result-0001.json", "AlreadyExists")]
    assert (out["stats"].completed, out["stats"].lost) == (0, 1)
    assert _outcomes(direct, "frozen", run_id) == {1: 0, 2: direct.head(
        f"runs/frozen/{run_id}/result-0002.json").size}
    result = rw.read_json(direct, f"runs/frozen/{run_id}/result-0002.json")
    assert result is not None and result["worker"] == "taker-frozen" and "zombie" not in result["metrics"]
    assert taker["stats"].completed == 1
    assert [r["run_id"] for r in s3exp.read_results(direct, "frozen")] == [run_id]


@pytest.mark.timeout(120)
def test_suspend_that_the_clock_does_not_see_is_fenced(direct: Store) -> None:
    """A laptop suspended mid-run for longer than the TTL, with a clock that does not
    count the suspend (as CLOCK_MONOTONIC does not): it wakes up believing its lease
    fresh and goes on to complete.  Fenced: no result of its attempt counts, and its
    body stops within the bound of waking up."""
    z = Zombie.on(direct, "suspended")
    run_id, zstore, clock, bodies, out = z.run_id, z.store, z.clock, z.bodies, z.out
    suspended = threading.Event()
    resume = threading.Event()

    def zombie() -> None:
        w = z.worker("suspended")
        try:
            for run in w:
                with run:
                    zstore.freeze()
                    clock.freeze()
                    suspended.set()
                    resume.wait(60)  # suspended: nothing of this process runs or sends
                    out["woke_at"] = time.time()
                    try:
                        bodies.run(run, 0.05)
                        out["committed"] = run.complete({"zombie": True})
                    finally:
                        out["body_ended"] = time.time()
        except BaseException as e:  # noqa: BLE001
            out["error"] = repr(e)
        finally:
            out["stats"] = w.stats

    zt = threading.Thread(target=zombie)
    zt.start()
    assert suspended.wait(30)
    _take_over_while(direct, "suspended", run_id, bodies)
    clock.thaw()
    zstore.thaw()
    resume.set()
    zt.join(30)
    assert "committed" not in out and "error" not in out, out
    assert (out["stats"].completed, out["stats"].lost) == (0, 1), out
    assert out["body_ended"] - out["woke_at"] <= OVERLAP_BOUND_S
    outcomes = _outcomes(direct, "suspended", run_id)
    assert outcomes.get(1) == 0 and outcomes.get(2, 0) > 0, outcomes
    assert all(c[1] != "ok" for c in zstore.commits), zstore.commits
    lease = Lease.from_bytes(direct.get(f"runs/suspended/{run_id}/lease.json").data, f"runs/suspended/{run_id}/lease.json")
    assert (lease.attempt, lease.worker.id) == (2, "taker-suspended")
    print(json.dumps({"commits": zstore.commits}), file=sys.stderr)


@pytest.mark.seaweed
@pytest.mark.timeout(120)
def test_body_stops_at_its_deadline_while_a_renewal_reply_is_held(
        stores: Stores, proxy: FaultProxy) -> None:
    """The first renewal is applied but its reply held for twice the TTL.  A renewal
    whose reply has not come back proves nothing, so at the deadline (TTL after the
    claim was sent) the body gets LeaseLost, while the renewal is still in flight and
    before anyone can take the run over; the taker's later result counts."""
    ttl = 3.0
    (run_id,) = _submit(stores.direct, "deadline", ttl=ttl)
    out: dict[str, Any] = {}
    bodies = Bodies()

    def zombie() -> None:
        w = s3exp.Worker(stores.proxied, "deadline", wait=False, handle_signals=False,
                         worker_id="zombie", cost_seconds=None, max_runs=1)
        for run in w:
            with run:
                out["started"] = time.time()
                # the claim is in; hold the reply of the next lease write (the renewal)
                proxy.configure(FaultConfig(rates={"hold_reply": 1.0}, methods=frozenset({"PUT"}),
                                            path=r"/lease\.json$", hold=2 * ttl, limit=1))
                try:
                    bodies.run(run, 30.0)
                except LeaseLost:
                    out["stopped"] = time.time()
                    raise
        out["stats"] = w.stats

    zt = threading.Thread(target=zombie)
    zt.start()
    zt.join(60)
    assert proxy.stats()["hold_reply"] == 1
    took = out["stopped"] - out["started"]
    assert ttl - 0.5 <= took <= ttl + 1.0, took
    assert (out["stats"].lost, out["stats"].completed) == (1, 0)
    taker = _take_over_while(stores.direct, "deadline", run_id, bodies)
    assert taker["took_at"] > out["stopped"]
    assert _outcomes(stores.direct, "deadline", run_id) == {1: 0, 2: stores.direct.head(
        f"runs/deadline/{run_id}/result-0002.json").size}
