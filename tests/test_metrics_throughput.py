"""The issue's throughput check on real SeaweedFS: 8 worker processes x 50 runs x 200
steps x 5 metrics, every value logged with ``run.log``.  After ``s3exp compact``,
``s3exp query`` counts exactly 8*50*200*5 = 400,000 rows and 0 duplicates by
(run_id, step, name).  Speed is measured in benchmarks/, not asserted here."""

from __future__ import annotations

import multiprocessing
import os
import subprocess

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

import s3exp
from s3exp.devserver._seaweed import SeaweedServer
from s3exp.tables._compaction import read_manifest

from . import _metrics_workers
from .conftest import AWS_ENV, REPO, MakeS3Store, collect_reports

WORKERS, RUNS_EACH, STEPS, METRICS = 8, 50, 200, 5
TOTAL = WORKERS * RUNS_EACH * STEPS * METRICS


def cli(*args: str, env: dict[str, str]) -> str:
    exe = REPO / ".venv" / "bin" / "s3exp"
    argv = [str(exe)] if exe.exists() else ["python", "-m", "s3exp"]
    proc = subprocess.run([*argv, *args], env=env, capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.seaweed
def test_400k_rows_from_8_processes_are_counted_exactly_once(
        seaweed: SeaweedServer, seaweed_bucket: MakeS3Store) -> None:
    store = seaweed_bucket("proj")
    where = {"kind": "s3", "endpoint": seaweed.endpoint_url, "bucket": store.bucket,
             "prefix": "proj", "access_key": seaweed.credentials.access_key,
             "secret_key": seaweed.credentials.secret_key}
    s3exp.submit(store, s3exp.parse_spec({
        "name": "tp", "runs_per_pair": WORKERS * RUNS_EACH,
        "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1.0}}}))

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_metrics_workers.log_worker,
                         args=(i, where, "tp", RUNS_EACH, STEPS, out), daemon=True)
             for i in range(WORKERS)]
    done = {index: run_ids for index, run_ids, _ in
            collect_reports(procs, out, 300, _metrics_workers.no_error)}
    assert sorted(len(ids) for ids in done.values()) == [RUNS_EACH] * WORKERS
    assert len({rid for ids in done.values() for rid in ids}) == WORKERS * RUNS_EACH

    env = {k: v for k, v in os.environ.items() if k not in AWS_ENV} | seaweed.env()
    url = f"s3://{store.bucket}/proj"
    compacted = cli("compact", "tp", "--store", url, "--json", env=env)
    assert f'"rows": {TOTAL}' in compacted and '"committed": true' in compacted
    assert read_manifest(store, "tp").metric_rows == TOTAL

    sql = ("SELECT count(*) AS n_rows, count(DISTINCT (run_id, step, name)) AS n_keys, "
           "count(DISTINCT run_id) AS n_runs FROM metrics")
    text = cli("query", sql, "--store", url, "--format", "csv", env=env)
    assert text.splitlines() == ["n_rows,n_keys,n_runs", f"{TOTAL},{TOTAL},{WORKERS * RUNS_EACH}"]

    # And a reader that lists metrics/ the way Athena does sees the same rows.
    fs = pafs.S3FileSystem(access_key=seaweed.credentials.access_key,
                           secret_key=seaweed.credentials.secret_key,
                           endpoint_override=seaweed.endpoint_url, region="us-east-1")
    dataset = ds.dataset(f"{store.bucket}/proj/metrics", filesystem=fs, format="parquet",
                         partitioning="hive")
    assert dataset.count_rows() == TOTAL
