"""Exactly-once compaction: a compactor killed halfway, one dying after its commit,
orphaned parts, and compactors racing each other in separate processes on SeaweedFS.

Every check is made three ways: the manifest's own count, the exact reader
(``s3exp.metrics``), and a reader that lists ``metrics/`` the way Athena does
(``pyarrow.dataset.dataset()`` over the prefix, through ``pyarrow.fs``).
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

import s3exp
from s3exp.bucket import keys
from s3exp.devserver._seaweed import SeaweedServer
from s3exp.stores import FileStore, S3Store, Store
from s3exp.tables._compaction import collect_orphans, read_manifest

from . import _metrics_workers
from ._metrics_workers import values
from .conftest import REPO, MakeS3Store, collect_reports

STEPS = 40
ROW_COLS = ["run_id", "attempt", "step", "name", "value"]


class Target:
    """Where a test's store lives, for the parent, for child processes and for a
    listing reader."""

    def __init__(self, store: Store, where: dict[str, str], fs: pafs.FileSystem, base: str) -> None:
        self.store = store
        self.where = where
        self.fs = fs
        self.base = base  # the store's root as a path of ``fs``

    def listed(self, table: str, exp: str) -> pa.Table:
        """What a reader that lists ``<table>/`` sees of ``exp`` (Athena's view)."""
        root = f"{self.base}/{table}"
        if self.fs.get_file_info(root).type == pafs.FileType.NotFound:
            return pa.table({c: [] for c in ROW_COLS})
        dataset = ds.dataset(root, filesystem=self.fs, format="parquet", partitioning="hive")
        return dataset.to_table(filter=ds.field("experiment") == exp)


def file_target(tmp_path: Path) -> Target:
    root = tmp_path / "store"
    return Target(FileStore(root), {"kind": "file", "root": str(root)}, pafs.LocalFileSystem(),
                  str(root))


def seaweed_target(server: SeaweedServer, make: MakeS3Store) -> Target:
    store: S3Store = make("proj")
    where = {"kind": "s3", "endpoint": server.endpoint_url, "bucket": store.bucket,
             "prefix": "proj", "access_key": server.credentials.access_key,
             "secret_key": server.credentials.secret_key}
    fs = pafs.S3FileSystem(access_key=server.credentials.access_key,
                           secret_key=server.credentials.secret_key,
                           endpoint_override=server.endpoint_url, region="us-east-1")
    return Target(store, where, fs, f"{store.bucket}/proj")


@pytest.fixture(params=["file", pytest.param("seaweed", marks=pytest.mark.seaweed)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "file":
        return file_target(tmp_path)
    return seaweed_target(request.getfixturevalue("seaweed"),
                          request.getfixturevalue("seaweed_bucket"))


def submit_and_drain(store: Store, exp: str, runs: int, steps: int = STEPS) -> list[str]:
    s3exp.submit(store, s3exp.parse_spec({"name": exp, "runs_per_pair": runs,
                                          "parameters": {"lr": {"min": 0.0, "max": 1.0}}}))
    return drain(store, exp, steps)


def drain(store: Store, exp: str, steps: int = STEPS, max_runs: int | None = None) -> list[str]:
    done = []
    for run in s3exp.Worker(store, exp, handle_signals=False, max_runs=max_runs):
        with run:
            for step in range(steps):
                run.log(values(run.run_id, step), step=step)
            run.complete({"loss": 0.0})
        done.append(run.run_id)
    return done


def expected_rows(run_ids: list[str], steps: int = STEPS) -> list[tuple[Any, ...]]:
    return sorted((rid, 1, step, name, v) for rid in run_ids for step in range(steps)
                  for name, v in values(rid, step).items())


def row_tuples(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(tuple(r[c] for c in ROW_COLS) for r in table.select(ROW_COLS).to_pylist())


def duplicates(table: pa.Table) -> int:
    keys = Counter(zip(*(table.column(c).to_pylist() for c in ("run_id", "step", "name")),
                       strict=True))
    return sum(n - 1 for n in keys.values())


def test_a_compactor_killed_between_parts_and_commit_loses_and_duplicates_nothing(
        target: Target) -> None:
    store = target.store
    runs = submit_and_drain(store, "k", 12)
    expected = expected_rows(runs)  # 12 x 40 x 5 = 2,400 rows

    # A real process that is SIGKILLed after writing its parts, before the commit.
    child = subprocess.run(
        [sys.executable, "-m", "tests._metrics_workers", "compact-then-die",
         json.dumps(target.where), "k", "700"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    assert child.stdout.split() == ["parts-written"]
    orphans = [m.key for m in store.list(keys.pending_prefix("k"))]
    assert len(orphans) == 5  # 4 metric parts of <= 700 rows + 1 results part
    assert read_manifest(store, "k").etag is None  # nothing committed
    assert target.listed("metrics", "k").num_rows == 0  # the orphans are not listed
    assert row_tuples(s3exp.metrics(store, "k")) == expected  # exact view: from staging

    report = s3exp.compact(store, "k", part_rows=700)
    assert report.committed and report.generation == 1 and report.rows == len(expected)
    assert report.orphans_deleted == 0  # younger than the orphan age: left alone
    manifest = read_manifest(store, "k")
    assert manifest.metric_rows == len(expected) and sorted(manifest.runs) == sorted(runs)

    exact = s3exp.metrics(store, "k")
    listed = target.listed("metrics", "k")
    assert row_tuples(exact) == expected
    assert row_tuples(listed) == expected
    assert duplicates(exact) == duplicates(listed) == 0
    assert sorted(target.listed("results", "k").column("run_id").to_pylist()) == sorted(runs)
    # The dead compactor's parts are still pending, invisible; collected once old enough.
    assert sorted(m.key for m in store.list(keys.pending_prefix("k"))) == sorted(orphans)
    assert collect_orphans(store, "k", timedelta(0)) == len(orphans)
    assert list(store.list(keys.pending_prefix("k"))) == []
    assert row_tuples(s3exp.metrics(store, "k")) == expected


class Crash(Exception):
    """Stands for the process dying at an injected point (not an S3ExpError, so the
    compactor does not clean up after itself)."""


def crash_at(stage: str) -> Any:
    def inject(at: str) -> None:
        if at == stage:
            raise Crash(stage)
    return inject


def test_a_compactor_dying_after_its_commit_is_rolled_forward(tmp_path: Path) -> None:
    target = file_target(tmp_path)
    store = target.store
    runs = submit_and_drain(store, "c", 6)
    expected = expected_rows(runs)
    with pytest.raises(Crash):
        s3exp.compact(store, "c", part_rows=500, inject=crash_at("committed"))
    manifest = read_manifest(store, "c")
    assert manifest.generation == 1 and manifest.metric_rows == len(expected)
    # Committed, not yet published: the listing reader misses the generation (never
    # doubles it); the exact reader follows the manifest to the pending parts.
    assert target.listed("metrics", "c").num_rows == 0
    assert row_tuples(s3exp.metrics(store, "c")) == expected
    assert sorted(s3exp.results(store, "c").column("run_id").to_pylist()) == sorted(runs)

    report = s3exp.compact(store, "c")  # nothing new; rolls the commit forward
    assert not report.committed and report.parts_published == len(manifest.parts)
    assert row_tuples(target.listed("metrics", "c")) == expected
    assert row_tuples(s3exp.metrics(store, "c")) == expected
    assert list(store.list(keys.pending_prefix("c"))) == []



def test_compaction_is_incremental_and_reads_only_new_shards(tmp_path: Path) -> None:
    target = file_target(tmp_path)
    store = target.store
    s3exp.submit(store, s3exp.parse_spec({"name": "i", "runs_per_pair": 8,
                                          "parameters": {"lr": {"min": 0.0, "max": 1.0}}}))
    first = drain(store, "i", max_runs=5)
    r1 = s3exp.compact(store, "i")
    second = drain(store, "i")
    r2 = s3exp.compact(store, "i")
    assert (r1.generation, r1.runs_compacted, r1.shards_read) == (1, 5, 5)
    assert (r2.generation, r2.runs_compacted, r2.shards_read) == (2, 3, 3)
    assert row_tuples(target.listed("metrics", "i")) == expected_rows(first + second)
    keys = [m.key for m in store.list("metrics/experiment=i/")]
    assert [k.split("/")[-1][:11] for k in keys] == ["part-000001", "part-000002"]


@pytest.mark.seaweed
def test_concurrent_compactors_in_separate_processes_neither_lose_nor_duplicate(
        seaweed: SeaweedServer, seaweed_bucket: MakeS3Store) -> None:
    target = seaweed_target(seaweed, seaweed_bucket)
    store = target.store
    runs_total, compactors, loggers = 40, 3, 2
    s3exp.submit(store, s3exp.parse_spec({"name": "cc", "runs_per_pair": runs_total,
                                          "parameters": {"lr": {"min": 0.0, "max": 1.0}}}))
    early = drain(store, "cc", max_runs=16)

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(compactors)
    out = ctx.Queue()
    procs = [ctx.Process(target=_metrics_workers.compactor,
                         args=(i, target.where, "cc", runs_total, barrier, out), daemon=True)
             for i in range(compactors)]
    procs += [ctx.Process(target=_metrics_workers.log_worker,
                          args=(100 + i, target.where, "cc", runs_total, STEPS, out), daemon=True)
              for i in range(loggers)]
    reports = {index: payload for index, payload, _ in
               collect_reports(procs, out, 240, _metrics_workers.no_error)}
    late = [rid for i in range(loggers) for rid in reports[100 + i]]
    assert sorted(early + late) == sorted(f"r{i:02d}" for i in range(runs_total))

    compactor_reports = [r for i in range(compactors) for r in reports[i]]
    # All three held parts for generation 1 when they tried to commit (the test hook held
    # them at a barrier): exactly one won, the others lost the race and went again.
    assert sum(r["lost_races"] for r in compactor_reports) >= compactors - 1
    generations = sorted(r["generation"] for r in compactor_reports if r["committed"])
    assert len(generations) == len(set(generations))  # each generation committed once
    assert sum(r["rows"] for r in compactor_reports if r["committed"]) == runs_total * STEPS * 5

    s3exp.compact(store, "cc")  # publish anything a compactor committed last
    expected = expected_rows(early + late)
    manifest = read_manifest(store, "cc")
    assert manifest.metric_rows == len(expected) and len(manifest.runs) == runs_total
    exact = s3exp.metrics(store, "cc")
    listed = target.listed("metrics", "cc")
    assert row_tuples(exact) == expected
    assert row_tuples(listed) == expected
    assert duplicates(listed) == 0
    assert list(store.list(keys.pending_prefix("cc"))) == []  # losers cleaned up
    result_ids = target.listed("results", "cc").column("run_id").to_pylist()
    assert sorted(result_ids) == sorted(early + late)


def test_staged_shards_expire_after_the_retention_once_compacted_earlier(tmp_path: Path) -> None:
    target = file_target(tmp_path)
    store = target.store
    runs = submit_and_drain(store, "x", 4)
    expected = expected_rows(runs)
    assert s3exp.compact(store, "x").shards_deleted == 0  # a week's retention by default
    assert s3exp.compact(store, "x", retention=timedelta(0)).shards_deleted == 4
    assert list(store.list(keys.staging_prefix("x"))) == []
    assert row_tuples(s3exp.metrics(store, "x")) == expected
    assert row_tuples(target.listed("metrics", "x")) == expected


def test_shards_of_runs_compacted_by_this_call_are_kept_for_readers_of_the_old_manifest(
        tmp_path: Path) -> None:
    store = file_target(tmp_path).store
    submit_and_drain(store, "y", 3)
    report = s3exp.compact(store, "y", retention=timedelta(0))
    assert report.committed and report.shards_deleted == 0
    assert len(list(store.list(keys.staging_prefix("y")))) == 3
