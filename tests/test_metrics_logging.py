"""``run.log``: buffering, shards, retried uploads, and logging from a command's child.

Single-process logic on the directory and in-memory stores; the concurrency and kill
tests are in test_metrics_compaction.py and test_metrics_fencing.py.
"""

from __future__ import annotations

import io
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import s3exp
from s3exp.bucket import keys
from s3exp.core._errors import StoreError
from s3exp.runs._agent import run_command
from s3exp.stores import FileStore, MemoryStore, ObjectMeta, Store
from s3exp.tables._buffer import MetricBuffer
from s3exp.tables._schema import SHARD_SCHEMA, AttemptIdentity

from ._delegating_store import DelegatingStore

IDENT = AttemptIdentity("exp", "r1", 2, "iris", "SGD", "w1")


def shard_rows(store: Store, prefix: str = "staging/") -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for meta in store.list(prefix):
        rows.extend(pq.read_table(io.BytesIO(store.get(meta.key).data)).to_pylist())
    return rows


def test_log_buffers_and_close_writes_one_shard_with_every_column() -> None:
    store = MemoryStore()
    buf = MetricBuffer(store, IDENT, flush_seconds=3600)
    buf.log({"loss": 0.5, "acc": 1}, step=3, ts=1_700_000_000.25)
    buf.log({"loss": 0.4})  # step defaults to the previous one + 1
    assert list(store.list("staging/")) == []  # nothing written by log itself
    buf.close()
    staged = [m.key for m in store.list("staging/")]
    assert staged == [keys.shard("exp", "r1", 2, 0)] == ["staging/exp/r1/0002/000000.parquet"]
    table = pq.read_table(io.BytesIO(store.get(staged[0]).data))
    assert table.schema.equals(SHARD_SCHEMA)
    rows = table.to_pylist()
    assert [(r["step"], r["name"], r["value"]) for r in rows] == [
        (3, "loss", 0.5), (3, "acc", 1.0), (4, "loss", 0.4)]
    assert {(r["experiment"], r["run_id"], r["attempt"], r["dataset"], r["model"], r["worker"])
            for r in rows} == {("exp", "r1", 2, "iris", "SGD", "w1")}
    assert rows[0]["ts"].timestamp() == 1_700_000_000.25


def test_flush_rows_triggers_a_background_shard_without_close() -> None:
    store = MemoryStore()
    buf = MetricBuffer(store, IDENT, flush_seconds=3600, flush_rows=100)
    for step in range(50):
        buf.log({"a": step, "b": -step}, step=step)  # 100 rows
    deadline = time.monotonic() + 30
    while not list(store.list("staging/")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(shard_rows(store)) == 100
    buf.close()
    assert buf.rows_written == 100


def test_bad_metrics_raise_readably_and_keep_nothing() -> None:
    store = MemoryStore()
    buf = MetricBuffer(store, IDENT, flush_seconds=3600)
    with pytest.raises(s3exp.S3ExpError, match="'acc' must be a number"):
        buf.log({"loss": 0.1, "acc": "high"})
    with pytest.raises(s3exp.S3ExpError, match="metric names must be"):
        buf.log({3: 0.1})  # type: ignore[dict-item]
    buf.log({"loss": 0.2}, step=0)
    buf.close()
    assert [(r["name"], r["value"]) for r in shard_rows(store)] == [("loss", 0.2)]


def test_log_after_close_raises_instead_of_dropping_rows() -> None:
    buf = MetricBuffer(MemoryStore(), IDENT, flush_seconds=3600)
    buf.close()
    with pytest.raises(s3exp.S3ExpError, match="has ended"):
        buf.log({"loss": 1.0})


class AppliedButUnacknowledged(DelegatingStore):
    """Wraps a store; the first ``failures`` shard uploads are applied and then reported
    as failed (a reply lost after the write landed, beyond the client's retries)."""

    def __init__(self, inner: Store, failures: int) -> None:
        super().__init__(inner)
        self.failures = failures

    def put_if_absent(self, key: str, data: bytes) -> ObjectMeta:
        meta = self.inner.put_if_absent(key, data)
        if key.startswith("staging/") and self.failures > 0:
            self.failures -= 1
            raise StoreError(f"reply lost for {key}")
        return meta


def test_a_failed_upload_that_landed_loses_no_rows_logged_after_it() -> None:
    # The upload of shard 0 lands but reports failure.  Rows logged afterwards must not be
    # folded into a second try of shard 0 (create-only would refuse it as a duplicate and
    # they would be lost): the retry sends the very same bytes, then a new shard.
    inner = MemoryStore()
    store = AppliedButUnacknowledged(inner, failures=1)
    buf = MetricBuffer(store, IDENT, flush_seconds=3600)
    buf.log({"loss": 1.0}, step=0)
    with pytest.raises(StoreError):
        buf.flush()
    buf.log({"loss": 2.0}, step=1)
    buf.close()
    assert sorted((r["step"], r["value"]) for r in shard_rows(inner)) == [(0, 1.0), (1, 2.0)]
    assert buf.rows_written == 2 and buf.failed_uploads == 1


def test_a_failed_upload_that_did_not_land_is_retried() -> None:
    class FailsOnce(AppliedButUnacknowledged):
        def put_if_absent(self, key: str, data: bytes) -> ObjectMeta:
            if key.startswith("staging/") and self.failures > 0:
                self.failures -= 1
                raise StoreError("503 SlowDown, retries exhausted")
            return self.inner.put_if_absent(key, data)

    inner = MemoryStore()
    buf = MetricBuffer(FailsOnce(inner, failures=1), IDENT, flush_seconds=3600)
    buf.log({"loss": 1.0}, step=0)
    with pytest.raises(StoreError):
        buf.flush()
    assert list(inner.list("staging/")) == []
    buf.log({"loss": 2.0}, step=1)
    buf.close()
    assert sorted((r["step"], r["value"]) for r in shard_rows(inner)) == [(0, 1.0), (1, 2.0)]
    assert [m.key.rsplit("/", 1)[1] for m in inner.list("staging/")] == [
        "000000.parquet", "000001.parquet"]


def test_run_log_through_the_worker_stages_rows_under_the_attempt(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    s3exp.submit(store, s3exp.parse_spec({"name": "e", "runs_per_pair": 2,
                                          "parameters": {"x": {"min": 0.0, "max": 1.0}}}))
    for run in s3exp.Worker(store, "e", handle_signals=False):
        with run:
            for step in range(7):
                run.log({"loss": 1 / (step + 1), "acc": step / 7}, step=step)
            run.complete({"acc": 1.0})
        with pytest.raises(s3exp.S3ExpError):
            run.log({"late": 1.0})  # after completion nothing can be logged
    rows = shard_rows(store)
    assert len(rows) == 2 * 7 * 2
    assert {(r["run_id"], r["attempt"]) for r in rows} == {("r00", 1), ("r01", 1)}


CHILD = textwrap.dedent("""
    import json, os, time
    import s3exp
    run = s3exp.current_run()
    with open(os.environ["S3EXP_METRICS_FILE"], "a") as f:
        for step in range(25):
            run.log({"loss": 1.0 / (step + 1)}, step=step)        # the Python API
            f.write(json.dumps({"step": step, "ext": step * 2.0}) + "\\n")  # plain JSON lines
            f.flush()
            if step % 10 == 0:
                time.sleep(1.1)   # let the child's flusher interleave with our appends
    run.complete({"final": 1.0})
""")


def test_a_command_child_logs_through_current_run_and_through_the_jsonl_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "store")
    script = tmp_path / "train.py"
    script.write_text(CHILD)
    s3exp.submit(store, s3exp.parse_spec({"name": "c", "runs_per_pair": 1,
                                          "parameters": {"x": {"min": 0.0, "max": 1.0}}}))
    for run in s3exp.Worker(store, "c", handle_signals=False):
        with run:
            run_command(run, [sys.executable, str(script)])
    table = s3exp.metrics(store, "c")
    got = sorted((r["name"], r["step"], r["value"]) for r in table.to_pylist())
    assert got == sorted([("loss", s, 1.0 / (s + 1)) for s in range(25)]
                         + [("ext", s, s * 2.0) for s in range(25)])
    (result,) = s3exp.read_results(store, "c")
    assert result["metrics"] == {"final": 1.0}
