"""Fencing on real SeaweedFS: attempt 1 logs 30 steps and is killed with SIGKILL;
attempt 2 takes the run over after the lease TTL, logs 50 steps and completes.  Only
attempt 2's 50 steps count, in the exact view and in the compacted table; attempt 1's
shards stay in staging for audit."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import s3exp
from s3exp.bucket import keys
from s3exp.devserver._seaweed import SeaweedServer

from ._metrics_workers import NAMES, values
from .conftest import REPO, MakeS3Store


@pytest.mark.seaweed
def test_rows_of_a_killed_attempt_are_fenced_out(seaweed: SeaweedServer,
                                                 seaweed_bucket: MakeS3Store) -> None:
    store = seaweed_bucket("proj")
    where = {"kind": "s3", "endpoint": seaweed.endpoint_url, "bucket": store.bucket,
             "prefix": "proj", "access_key": seaweed.credentials.access_key,
             "secret_key": seaweed.credentials.secret_key}
    s3exp.submit(store, s3exp.parse_spec({
        "name": "fence", "runs_per_pair": 1, "lease_seconds": 2, "max_attempts": 3,
        "parameters": {"lr": {"min": 0.0, "max": 1.0}}}))

    # Attempt 1: a real process that logs 30 steps, waits until its background flusher
    # has staged them, reports, and hangs until we kill -9 it.
    child = subprocess.Popen(
        [sys.executable, "-m", "tests._metrics_workers", "log-then-hang", json.dumps(where),
         "fence", "30"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        first = json.loads(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    run_id = first["run_id"]
    assert first["attempt"] == 1
    attempt1 = [m.key for m in store.list(f"{keys.staging_prefix('fence')}{run_id}/0001/")]
    assert attempt1
    staged1 = sum(pq.read_table(io.BytesIO(store.get(k).data)).num_rows for k in attempt1)
    assert staged1 == 30 * len(NAMES)
    # While the dead attempt's lease is the current one, its rows are the live view.
    assert s3exp.metrics(store, "fence").num_rows == 30 * len(NAMES)

    # Attempt 2 takes the run over once the lease is stale on the server's clock.
    for run in s3exp.Worker(store, "fence", handle_signals=False, wait=True, max_runs=1):
        with run:
            assert (run.run_id, run.attempt) == (run_id, 2)
            for step in range(50):
                run.log(values(run_id, step), step=step)
            run.complete({"loss": values(run_id, 49)["loss"]})

    def check(table: pa.Table) -> None:
        rows = sorted((r["attempt"], r["step"], r["name"], r["value"]) for r in table.to_pylist())
        assert rows == sorted((2, step, name, v) for step in range(50)
                              for name, v in values(run_id, step).items())

    check(s3exp.metrics(store, "fence"))  # exact view, before compaction
    report = s3exp.compact(store, "fence")
    assert report.committed and report.rows == 50 * len(NAMES)
    check(s3exp.metrics(store, "fence"))  # exact view, after compaction
    (part,) = [m.key for m in store.list("metrics/experiment=fence/")]
    check(pq.read_table(io.BytesIO(store.get(part).data)))  # the compacted table itself
    fs = pafs.S3FileSystem(access_key=seaweed.credentials.access_key,
                           secret_key=seaweed.credentials.secret_key,
                           endpoint_override=seaweed.endpoint_url, region="us-east-1")
    listed = ds.dataset(f"{store.bucket}/proj/metrics", filesystem=fs, format="parquet",
                        partitioning="hive").to_table()
    check(listed)  # and what Athena would list

    (result,) = s3exp.results(store, "fence").to_pylist()
    assert (result["run_id"], result["attempt"]) == (run_id, 2)
    # Attempt 1's shards are kept in staging (for audit, until the retention passes).
    assert [m.key for m in store.list(f"{keys.staging_prefix('fence')}{run_id}/0001/")] == attempt1
    assert list(store.list(f"{keys.staging_prefix('fence')}{run_id}/0002/"))
