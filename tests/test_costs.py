"""The cost meter: workers and compactors record their store requests; ``status --cost``
sums them.

Everything runs real workers on the directory store and compares the records with the
stores' own request counters, which count every request the store makes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import s3exp
from s3exp.bucket import keys
from s3exp.bucket._records import WorkerIdentity
from s3exp.cli import main
from s3exp.core._errors import ConfigError
from s3exp.core._names import name_problem
from s3exp.ops._costs import PRICE_PER_1000, CostMeter, dollars, read_costs
from s3exp.stores import FileStore, ObjectMeta

REPO = Path(__file__).resolve().parent.parent
EXP = "costExp"


def submit(root: Path, runs: int) -> None:
    spec = s3exp.parse_spec({"name": EXP, "runs_per_pair": runs,
                             "parameters": {"x": {"min": 0.0, "max": 1.0}}})
    s3exp.submit(FileStore(root), spec)


def drain(root: Path, worker_id: str | None = None, **kw: Any) -> FileStore:
    """One worker on its own store object (its own counter); returns that store."""
    store = FileStore(root)
    for run in s3exp.Worker(store, EXP, wait=False, handle_signals=False, worker_id=worker_id, **kw):
        with run:
            for step in range(3):
                run.log({"loss": 1.0 / (step + 1)}, step=step)
            run.complete({"loss": 0.1})
    return store


def status_cost(root: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["status", EXP, "--cost", "--json", "--store", str(root)]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_status_cost_totals_are_the_workers_own_counts(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "store"
    submit(root, 30)
    stores: list[FileStore] = []
    threads = [threading.Thread(target=lambda i=i: stores.append(drain(root, f"w{i}")))
               for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    workers: Counter[str] = Counter()
    for st in stores:
        workers.update(st.requests.snapshot())
    assert workers["PUT"] >= 3 * 30  # claim, shard, result per run: real traffic was counted

    report = status_cost(root, capsys)
    cost = report["cost"]
    assert report["counts"]["done"] == 30
    assert {k: v for k, v in cost["requests"].items() if v} == dict(workers)
    assert sorted(m["id"] for m in cost["meters"]) == ["w0", "w1", "w2"]
    assert cost["finished_runs"] == 30
    assert cost["dollars"] == pytest.approx(sum(n * PRICE_PER_1000[k] for k, n in workers.items()) / 1000)
    assert cost["requests_per_run"]["PUT"] == pytest.approx(workers["PUT"] / 30, abs=1e-4)
    assert cost["dollars_per_run"] == pytest.approx(cost["dollars"] / 30)
    # One record write per worker lifetime (the default interval is minutes), counted in.
    assert len(list(FileStore(root).list(keys.costs_prefix(EXP)))) == 3

    # A compaction records its own requests under the compactors' shared id.
    assert main(["compact", EXP, "--store", str(root)]) == 0
    capsys.readouterr()
    after = status_cost(root, capsys)["cost"]
    compactor = [m for m in after["meters"] if m["id"] == "compactor"]
    assert len(compactor) == 1 and compactor[0]["role"] == "compactor"
    assert compactor[0]["requests"]["LIST"] >= 2 and compactor[0]["requests"]["PUT"] >= 1
    assert Counter(after["requests"]) == +(Counter(cost["requests"]) + Counter(compactor[0]["requests"]))

    # The text form shows the same totals.
    assert main(["status", EXP, "--cost", "--store", str(root)]) == 0
    text = capsys.readouterr().out
    assert "S3 requests so far" in text and "per 1,000 finished runs" in text
    assert f"{after['requests']['PUT']}" in text


def test_cost_records_add_up_and_are_never_written_blindly(tmp_path: Path) -> None:
    """Two workers under one id (a restart, or two at once) add to one record; neither
    clobbers the other, and every write carries a condition."""
    root = tmp_path / "store"
    submit(root, 10)
    writes: list[tuple[str, str]] = []

    class Watched(FileStore):
        def put_if_absent(self, key: str, data: bytes) -> ObjectMeta:
            if key.startswith("costs/"):
                writes.append(("create", key))
            return super().put_if_absent(key, data)

        def put_if_match(self, key: str, data: bytes, etag: str) -> ObjectMeta:
            if key.startswith("costs/"):
                writes.append(("swap", key))
            return super().put_if_match(key, data, etag)

    a, b = Watched(root), Watched(root)
    meter_a = CostMeter(a, EXP, "same-id")
    meter_b = CostMeter(b, EXP, "same-id")
    list(a.list("runs/"))
    a.get(keys.spec(EXP))
    assert meter_a.flush()
    b.get(keys.spec(EXP))
    b.get(keys.spec(EXP))
    assert meter_b.flush()  # its create fails, it reads A's record and adds to it
    a.head(keys.spec(EXP))
    assert meter_a.flush()  # its ETag is stale now: it reads again and adds
    stored = json.loads(FileStore(root).get(keys.cost(EXP, "same-id")).data)["requests"]
    both = Counter(a.requests.snapshot()) + Counter(b.requests.snapshot())
    assert stored == dict(both)
    assert writes[0] == ("create", keys.cost(EXP, "same-id"))
    assert {kind for kind, _ in writes} == {"create", "swap"}
    assert len(writes) == 5  # A create; B create (lost), B swap; A swap (lost), A swap
    assert not meter_a.flush()  # nothing new: nothing written

    # The same through real workers: a second worker with the first one's id adds to its record.
    first = drain(root, "node-1")
    second = drain(root, "node-1")  # nothing left to claim: it still made requests
    rec = json.loads(FileStore(root).get(keys.cost(EXP, "node-1")).data)
    assert rec["requests"] == dict(Counter(first.requests.snapshot()) + Counter(second.requests.snapshot()))
    assert rec["role"] == "worker" and rec["served"] == [EXP]


def test_a_long_lived_worker_writes_its_record_every_interval(tmp_path: Path) -> None:
    root = tmp_path / "store"
    submit(root, 6)
    store = FileStore(root)
    worker = s3exp.Worker(store, EXP, wait=False, handle_signals=False, cost_seconds=0.0)
    for run in worker:
        with run:
            run.complete({})
    assert worker.cost_meter is not None and worker.cost_meter.writes >= 6  # after each run
    counted = store.requests.snapshot()
    rec = json.loads(FileStore(root).get(keys.cost(EXP, worker.identity.id)).data)
    assert rec["requests"] == counted
    off = s3exp.Worker(FileStore(root), EXP, wait=False, handle_signals=False, cost_seconds=None)
    assert off.cost_meter is None


def test_read_costs_prices_and_skips_foreign_bodies(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.put_if_absent(keys.cost(EXP, "a"), json.dumps(
        {"id": "a", "role": "worker", "requests": {"PUT": 2000, "GET": 1000, "LIST": 10, "DELETE": 5}}).encode())
    store.put_if_absent(keys.cost(EXP, "junk"), b"not json")
    report = read_costs(store, EXP, finished_runs=1000)
    assert report.requests == {"PUT": 2000, "GET": 1000, "HEAD": 0, "LIST": 10, "DELETE": 5}
    assert report.dollars == pytest.approx(2 * 0.005 + 0.0004 + 0.01 * 0.005)  # DELETE is free
    assert report.dollars == pytest.approx(dollars(report.requests))
    assert report.requests_per_run is not None and report.requests_per_run["PUT"] == 2.0
    assert [m["id"] for m in report.meters] == ["a"]
    assert read_costs(store, "other", 0).dollars_per_run is None


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "a__b", ".hidden", "x" * 200, "tab\there"])
def test_a_bad_worker_id_is_refused_before_anything_is_written(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "store"
    submit(root, 3)
    store = FileStore(root)
    before = sorted(m.key for m in store.list(""))
    sent = store.requests.total
    with pytest.raises(ConfigError, match="invalid worker id"):
        s3exp.Worker(store, EXP, worker_id=bad)
    assert store.requests.total == sent  # refused before any request
    assert sorted(m.key for m in store.list("")) == before


def test_a_bad_worker_id_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    root = tmp_path / "store"
    submit(root, 3)
    before = sorted(p.relative_to(root) for p in root.rglob("*") if ".s3exp" not in p.parts)
    r = subprocess.run([sys.executable, "-m", "s3exp", "worker", EXP, "--worker-id", "../evil",
                        "--store", str(root), "--", "true"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("s3exp: error: invalid worker id '../evil'")
    assert "Traceback" not in r.stderr
    assert sorted(p.relative_to(root) for p in root.rglob("*") if ".s3exp" not in p.parts) == before


def test_the_default_worker_id_is_a_safe_key_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "..my host__name/x")
    ident = WorkerIdentity.current()
    assert name_problem(ident.id) is None, ident.id
    assert ident.host == "..my host__name/x"  # the lease still names the real host


def test_compare_benchmark_smoke(tmp_path: Path) -> None:
    """benchmarks/compare.py on a tiny size, s3exp on the directory store only: it runs,
    its ledger shows no double execution, and the cost meter agrees with the workers."""
    out = tmp_path / "compare.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "compare.py"), "--n", "20", "--w", "2",
                        "--m", "3", "--systems", "s3exp-dir", "--json", str(out),
                        "--workdir", str(tmp_path / "work")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "| s3exp-dir |" in r.stdout and "what dominates the cost" in r.stdout
    data = json.loads(out.read_text())
    (run,) = data["runs"]["s3exp-dir"]
    assert run["ok"] and run["double_executed_runs"] == 0 and run["executions"] == 20
    assert run["verify"]["completed"] == 20 and run["verify"]["stored_points"] == 60
    assert run["cost_meter_matches"] is True
    assert run["requests"]["PUT"] >= 3 * 20
