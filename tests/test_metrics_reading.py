"""The exact views ``s3exp.metrics`` / ``s3exp.results``: the same rows before compaction,
after a partial one and after a full one; live, failed and superseded attempts; the CLI's
``results`` and ``query`` over the same files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import s3exp
from s3exp.bucket import keys
from s3exp.cli import main
from s3exp.stores import Blob, FileStore, Store
from s3exp.tables._compaction import read_manifest

from ._delegating_store import DelegatingStore
from ._metrics_workers import values
from .conftest import REPO

STEPS = 20


def spec(name: str, runs: int, **extra: Any) -> s3exp.ExperimentSpec:
    return s3exp.parse_spec({"name": name, "runs_per_pair": runs, "max_attempts": 1,
                             "parameters": {"lr": {"min": 0.0, "max": 1.0}}, **extra})


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """Every metric row, as sortable tuples of the columns that identify and carry it."""
    assert None not in table.column("worker").to_pylist()
    cols = ["experiment", "run_id", "attempt", "step", "name", "value", "dataset", "model"]
    return sorted(tuple(r[c] for c in cols) for r in table.select(cols).to_pylist())


def result_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    cols = ["run_id", "status", "attempt", "param_lr", "metric_loss", "experiment"]
    return sorted(tuple(r[c] for c in cols) for r in table.select(cols).to_pylist())


def run_one(store: Store, exp: str, steps: int = STEPS, fail: bool = False) -> str:
    for run in s3exp.Worker(store, exp, max_runs=1, handle_signals=False):
        with run:
            for step in range(steps):
                run.log(values(run.run_id, step), step=step)
            if fail:
                raise RuntimeError("diverged")
            run.complete({"loss": values(run.run_id, steps - 1)["loss"]})
        return run.run_id
    raise AssertionError("nothing to claim")


def listed_metric_rows(root: Path, exp: str) -> int:
    """What a reader that lists ``metrics/`` (as Athena does) counts."""
    base = root / "metrics"
    if not base.exists():
        return 0
    dataset = ds.dataset(str(base), format="parquet", partitioning="hive")
    return int(dataset.to_table(filter=ds.field("experiment") == exp).num_rows)


def wait_for_shard(store: Store, exp: str, run_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not list(store.list(f"{keys.staging_prefix(exp)}{run_id}/")):
        assert time.monotonic() < deadline, f"no shard of {run_id} was staged"
        time.sleep(0.05)


def test_views_are_identical_before_during_and_after_compaction(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    s3exp.submit(store, spec("e", 6))
    done = [run_one(store, "e") for _ in range(3)]
    failed = run_one(store, "e", steps=5, fail=True)  # max_attempts 1: failed for good

    expected = [("e", rid, 1, step, name, v, None, None)
                for rid in done for step in range(STEPS) for name, v in values(rid, step).items()]
    before = rows(s3exp.metrics(store, "e"))
    assert before == sorted(expected)
    assert failed not in {r[1] for r in before}  # a failed run's rows are not analysis rows
    results_before = result_rows(s3exp.results(store, "e"))
    assert [r[0] for r in results_before] == sorted(done)

    # A live run: 10,000 steps x 5 metrics reach the buffer's row limit, so its flusher
    # stages a shard while the run is still going.
    live_run = s3exp.Worker(store, "e", handle_signals=False).claim()
    assert live_run is not None
    with live_run:
        for step in range(10_000):
            live_run.log(values(live_run.run_id, step), step=step)
        wait_for_shard(store, "e", live_run.run_id)
        staged_live = len(rows(s3exp.metrics(store, "e"))) - len(before)
        assert staged_live > 0

        # Partial compaction: the finished runs move to parts, the live run stays staged.
        report = s3exp.compact(store, "e")
        assert report.committed and report.runs_compacted == 3 and report.rows == len(before)
        during = rows(s3exp.metrics(store, "e"))
        assert len(during) == len(before) + staged_live
        assert [r for r in during if r[1] != live_run.run_id] == before
        assert result_rows(s3exp.results(store, "e")) == results_before
        assert listed_metric_rows(tmp_path / "store", "e") == len(before)
        live_run.complete({"loss": 0.0})

    last = run_one(store, "e")
    full = rows(s3exp.metrics(store, "e"))
    assert len(full) == len(before) + 10_000 * 5 + STEPS * 5
    results_full = result_rows(s3exp.results(store, "e"))
    assert [r[0] for r in results_full] == sorted([*done, live_run.run_id, last])

    report = s3exp.compact(store, "e")
    assert report.committed and report.runs_compacted == 2
    assert rows(s3exp.metrics(store, "e")) == full
    assert result_rows(s3exp.results(store, "e")) == results_full
    assert listed_metric_rows(tmp_path / "store", "e") == len(full)
    # Nothing left to do: a third compaction commits nothing and changes nothing.
    again = s3exp.compact(store, "e")
    assert not again.committed and again.rows == 0
    assert rows(s3exp.metrics(store, "e")) == full


def test_a_finished_run_shows_its_winning_attempt_even_if_only_a_dead_one_logged(tmp_path: Path) -> None:
    # Attempt 1 staged rows and was killed; attempt 2 completed without logging.  The view
    # must not take the only staged attempt for the winner: it reads the result's attempt.
    root = tmp_path / "store"
    store = FileStore(root)
    s3exp.submit(store, spec("f", 1, lease_seconds=1, max_attempts=3))
    child = subprocess.Popen([sys.executable, "-m", "tests._metrics_workers", "log-then-hang",
                              json.dumps({"kind": "file", "root": str(root)}), "f", "3"],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        first = json.loads(child.stdout.readline())
    finally:
        child.kill()  # SIGKILL: no cleanup, the lease just goes stale
        child.wait(30)
    assert first["attempt"] == 1
    for run in s3exp.Worker(store, "f", handle_signals=False, wait=True, max_runs=1):
        with run:
            assert run.attempt == 2  # completes with no metrics when the block ends
    assert s3exp.metrics(store, "f").num_rows == 0
    s3exp.compact(store, "f")
    assert s3exp.metrics(store, "f").num_rows == 0
    assert listed_metric_rows(root, "f") == 0
    assert [m.key for m in store.list("staging/")] == [keys.shard("f", first["run_id"], 1, 0)]


def test_a_released_or_failed_attempt_is_not_shown_but_the_running_one_is(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    s3exp.submit(store, spec("g", 1, max_attempts=2))
    run_one(store, "g", steps=4, fail=True)  # attempt 1 fails: released for a retry
    assert s3exp.metrics(store, "g").num_rows == 0
    run = s3exp.Worker(store, "g", handle_signals=False).claim()
    assert run is not None
    with run:
        assert run.attempt == 2
        for step in range(50_000):  # the buffer's row limit: flushed in the background
            run.log({"loss": float(step)}, step=step)
        wait_for_shard_of_attempt(store, "g", run.run_id, 2)
        seen = s3exp.metrics(store, "g")
        assert seen.num_rows > 0 and set(seen.column("attempt").to_pylist()) == {2}
        run.complete({"loss": 0.0})
    assert s3exp.metrics(store, "g").num_rows == 50_000


def wait_for_shard_of_attempt(store: Store, exp: str, run_id: str, attempt: int) -> None:
    deadline = time.monotonic() + 60
    prefix = f"{keys.staging_prefix(exp)}{run_id}/{attempt:04d}/"
    while not list(store.list(prefix)):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_results_and_query_cli_read_the_compacted_tables(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "store"
    store = FileStore(root)
    s3exp.submit(store, spec("q", 4))
    ids = sorted(run_one(store, "q") for _ in range(4))
    s3exp.compact(store, "q")
    # The compacted results part holds every run, and the CLI serves the same rows.
    assert main(["results", "q", "--store", str(root), "--format", "csv"]) == 0
    csv_text = capsys.readouterr().out
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("run_id,") and sorted(l.split(",")[0] for l in lines[1:]) == ids
    # -o writes what stdout would have shown, for every format.
    assert main(["results", "q", "--store", str(root), "--format", "csv", "-o", str(tmp_path / "r.csv")]) == 0
    assert (tmp_path / "r.csv").read_text() == csv_text and capsys.readouterr().out == ""
    assert main(["results", "q", "--store", str(root), "--format", "json", "-o", str(tmp_path / "r.json")]) == 0
    assert sorted(r["run_id"] for r in json.loads((tmp_path / "r.json").read_text())) == ids
    assert capsys.readouterr().out == ""
    out = tmp_path / "r.parquet"
    assert main(["results", "q", "--store", str(root), "--format", "parquet", "-o", str(out)]) == 0
    assert sorted(pq.read_table(out).column("run_id").to_pylist()) == ids
    (part,) = [m.key for m in store.list("results/experiment=q/")]
    assert sorted(pq.read_table(io.BytesIO(store.get(part).data)).column("run_id").to_pylist()) == ids

    sql = ("SELECT r.run_id, count(*) AS n, max(m.step) AS last FROM results r "
           "JOIN metrics m USING (run_id) GROUP BY 1 ORDER BY 1")
    assert main(["query", sql, "--store", str(root), "--format", "csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == (
        ["run_id,n,last"] + [f"{rid},{STEPS * 5},{STEPS - 1}" for rid in ids])


class CompactsDuringTheRead(DelegatingStore):
    """Delegates to ``inner``; right after the view's first read of the manifest, a
    compactor commits (the race a reader meets when compaction runs on a schedule)."""

    def __init__(self, inner: Store, exp: str) -> None:
        super().__init__(inner)
        self.exp, self.fired = exp, False

    def get(self, key: str) -> Blob:
        blob = self.inner.get(key)
        if key == keys.manifest(self.exp) and not self.fired:
            self.fired = True
            assert s3exp.compact(self.inner, self.exp).committed
        return blob


@pytest.mark.parametrize("view", ["metrics", "results"])
def test_a_compaction_committed_while_a_view_is_read_counts_nothing_twice(
        tmp_path: Path, view: str) -> None:
    store = FileStore(tmp_path / "store")
    s3exp.submit(store, spec("r", 2))
    run_one(store, "r")
    s3exp.compact(store, "r")  # generation 1: one run
    second = run_one(store, "r")  # finished, not compacted
    read, key = ((s3exp.metrics, rows) if view == "metrics" else (s3exp.results, result_rows))
    expected = key(read(store, "r"))
    assert len(expected) == (2 * STEPS * 5 if view == "metrics" else 2)

    racing = CompactsDuringTheRead(store, "r")
    assert key(read(racing, "r")) == expected
    assert racing.fired and second in read_manifest(store, "r").runs


def test_compacted_rows_equal_the_staged_rows_in_every_column_across_boundaries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction decodes only (step, name, value, ts) from a shard and builds the other
    columns from the run's owner: every column of every row must still equal what the
    shards hold.  Tiny row groups and parts, and runs of uneven length in several shards,
    put row-group and part boundaries inside shards and inside runs."""
    from s3exp.tables import _compaction

    monkeypatch.setattr(_compaction, "ROW_GROUP_ROWS", 7)
    store = FileStore(tmp_path / "store")
    s3exp.submit(store, s3exp.parse_spec({
        "name": "g", "runs_per_pair": 2, "max_attempts": 1,
        "definition": {"data_groups": {"d": ["iris", "wine"]},
                       "model_groups": {"m": {"model": "sgd", "hype": {
                           "lr": {"distribution": "uniform", "min": 0.0, "max": 1.0}}},
                                        "n": {"model": "knn", "hype": {
                           "k": {"distribution": "int_uniform", "min": 1, "max": 9}}}},
                       "applications": {"d": ["m", "n"]}}}))
    for i, run in enumerate(s3exp.Worker(store, "g", handle_signals=False, worker_id="wk-7")):
        with run:
            for step in range(3 + 2 * i):
                run.log(values(run.run_id, step), step=step, ts=1_700_000_000 + step + i / 8)
                if step % 4 == 3:
                    run._metrics.flush()  # several shards per run  # type: ignore[union-attr]
            run.complete({"loss": 0.5})
    cols = ["run_id", "attempt", "step", "name", "value", "ts", "dataset", "model", "worker"]

    def every_column(table: pa.Table) -> list[tuple[Any, ...]]:
        return sorted(tuple(r[c] for c in cols) for r in table.select(cols).to_pylist())

    staged = every_column(s3exp.metrics(store, "g"))  # decoded in full from the shards
    assert len(staged) == sum((3 + 2 * i) * 5 for i in range(8))
    assert {r[6] for r in staged} == {"iris", "wine"} and {r[8] for r in staged} == {"wk-7"}
    assert len(list(store.list(keys.staging_prefix("g")))) > 8

    report = s3exp.compact(store, "g", part_rows=45)
    assert report.committed and report.rows == len(staged)
    assert report.parts_written == -(-len(staged) // 45) + 1  # metrics parts + results
    assert every_column(s3exp.metrics(store, "g")) == staged
    listed = ds.dataset(str(tmp_path / "store" / "metrics"), format="parquet",
                        partitioning="hive").to_table()
    assert every_column(listed) == staged
    for part in read_manifest(store, "g").parts:
        if part["table"] == "metrics":
            meta = pq.read_metadata(tmp_path / "store" / part["key"])
            assert meta.num_rows == part["rows"] and meta.num_rows <= 45
            assert all(meta.row_group(i).num_rows <= 7 for i in range(meta.num_row_groups))


def test_results_table_from_a_stream_fills_metrics_first_seen_late_with_nulls() -> None:
    from s3exp.bucket._records import ResultRecord
    from s3exp.tables._schema import results_table

    def record(run_id: str, attempt: int, metrics: dict[str, object]) -> ResultRecord:
        return ResultRecord("r", run_id, attempt, "t", {}, metrics, "w")

    records = [record("a", 1, {"loss": 0.5}), record("b", 2, {"loss": 0.25, "acc": 0.9}),
               record("c", 1, {"acc": 0.8, "f1": "n/a"})]
    table = results_table(spec("r", 3), iter(records))  # one pass over a generator
    assert table.column("run_id").to_pylist() == ["a", "b", "c"]
    assert table.column("metric_loss").to_pylist() == [0.5, 0.25, None]
    assert table.column("metric_acc").to_pylist() == [None, 0.9, 0.8]
    assert table.column("metric_f1").to_pylist() == [None, None, None]  # not a number
    assert [n for n in table.column_names if n.startswith("metric_")] == [
        "metric_acc", "metric_f1", "metric_loss"]
