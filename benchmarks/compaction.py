"""Compaction throughput (rows/s) and peak memory, for an input and one 10x larger.

    python benchmarks/compaction.py                       # 200 and 2,000 runs of 10,000 rows
    python benchmarks/compaction.py --runs 100 --rows-per-run 2000 --shard-rows 1000

For each size, finished runs are staged on a directory store: real claims and real
``result.json`` completions through ``Worker``, and shards of ``--shard-rows`` rows in
the format ``run.log``'s flusher writes (5 metrics per step).  Then ``s3exp.compact``
runs in a fresh child process (after a warm-up compaction of a one-run experiment,
reported apart), which reports the wall time, its peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``), its RSS just before compacting (the warmed-up
interpreter) and the peak of pyarrow's memory pool.  If memory
is bounded by one output part (``--part-rows``), the peak stays flat when the input grows
tenfold.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import s3exp
from s3exp import _keys
from s3exp._metrics_log import SHARD_SCHEMA
from s3exp.stores import FileStore

NAMES = np.array(["loss", "acc", "lr", "grad_norm", "val_loss"])
TARGET_ROWS_PER_S = 2_000_000


def shard_bytes(exp: str, run_id: str, attempt: int, first_step: int, rows: int,
                rng: np.random.Generator) -> bytes:
    """A shard as MetricBuffer writes it (same schema, dictionary-coded constants, snappy)."""
    steps = first_step + np.arange(rows) // len(NAMES)

    def constant(value: str) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array([value]))

    table = pa.table([
        constant(exp), constant(run_id), pa.array(np.full(rows, attempt, np.int32)),
        pa.array(steps.astype(np.int64)), pa.array(np.resize(NAMES, rows)),
        pa.array(rng.random(rows)),
        pa.array(1_760_000_000_000_000 + steps * 1000).cast(SHARD_SCHEMA.field("ts").type),
        constant("dataset-a"), constant("model-b"), constant("worker-1"),
    ], names=SHARD_SCHEMA.names)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy", store_schema=False)
    return sink.getvalue()


def stage(root: Path, runs: int, rows_per_run: int, shard_rows: int) -> dict[str, Any]:
    store = FileStore(root)
    s3exp.submit(store, s3exp.parse_spec({"name": "bench", "runs_per_pair": runs,
                                          "parameters": {"lr": {"min": 0.0, "max": 1.0}}}))
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    shards = 0
    for run in s3exp.Worker(store, "bench", handle_signals=False):
        with run:
            for seq, first in enumerate(range(0, rows_per_run, shard_rows)):
                n = min(shard_rows, rows_per_run - first)
                store.put_if_absent(_keys.shard("bench", run.run_id, run.attempt, seq),
                                    shard_bytes("bench", run.run_id, run.attempt,
                                                first // len(NAMES), n, rng))
                shards += 1
            run.complete({"loss": float(rng.random())})
    staged_bytes = sum(m.size for m in store.list(_keys.STAGING))
    return {"rows": runs * rows_per_run, "shards": shards, "staged_mb": staged_bytes / 2**20,
            "stage_s": time.perf_counter() - t0}


def compact_child(root: str, part_rows: int) -> None:
    """Runs in a fresh process: compact and report time and memory as one JSON line.

    A one-run experiment in a scratch store is compacted first, so that one-time costs of
    a fresh process (lazy imports: pyarrow loads pandas, if installed, at its first
    conversion of Python objects; thread pools) are reported apart, as ``warmup_s``; a
    long-lived compactor (a warm Lambda container) does not pay them again."""
    with tempfile.TemporaryDirectory(prefix="s3exp-warmup-") as scratch:
        t0 = time.perf_counter()
        stage(Path(scratch) / "store", 1, 10, 10)
        s3exp.compact(FileStore(Path(scratch) / "store"), "bench")
        warmup = time.perf_counter() - t0
    store = FileStore(root)
    pa.default_memory_pool().release_unused()
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    report = s3exp.compact(store, "bench", part_rows=part_rows)
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "seconds": seconds, "rows": report.rows, "parts": report.parts_written,
        "warmup_s": warmup,
        "rss_before_mb": before_kb / 1024,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "arrow_pool_peak_mb": pa.default_memory_pool().max_memory() / 2**20,
        "pool": pa.default_memory_pool().backend_name,
    }))


def measure(runs: int, rows_per_run: int, shard_rows: int, part_rows: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="s3exp-bench-") as d:
        info = stage(Path(d) / "store", runs, rows_per_run, shard_rows)
        out = subprocess.run([sys.executable, __file__, "--compact-only", str(Path(d) / "store"),
                              "--part-rows", str(part_rows)],
                             capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["rows"] == info["rows"], (got, info)
    return {**info, **got, "runs": runs, "rows_per_s": got["rows"] / got["seconds"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200, help="runs in the 1x input (default 200)")
    ap.add_argument("--rows-per-run", type=int, default=10_000)
    ap.add_argument("--shard-rows", type=int, default=5_000)
    ap.add_argument("--part-rows", type=int, default=1_000_000)
    ap.add_argument("--scales", default="1,10", help="input sizes as multiples of --runs")
    ap.add_argument("--compact-only", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compact_only:
        compact_child(args.compact_only, args.part_rows)
        return 0

    cmd = (f"python benchmarks/compaction.py --runs {args.runs} --rows-per-run {args.rows_per_run} "
           f"--shard-rows {args.shard_rows} --part-rows {args.part_rows} --scales {args.scales}")
    results = [measure(args.runs * int(k), args.rows_per_run, args.shard_rows, args.part_rows)
               for k in args.scales.split(",")]
    print(cmd)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"s3exp {s3exp.__version__}, pyarrow {pa.__version__} (pool: {results[0]['pool']}), "
          f"directory store on {Path(tempfile.gettempdir())}")
    print(f"\n{'input rows':>11} {'runs':>6} {'shards':>7} {'staged MB':>10} {'parts':>6} "
          f"{'seconds':>8} {'rows/s':>11} {'peak RSS MB':>12} {'RSS before':>11} {'arrow peak MB':>14} "
          f"{'warm-up s':>10}")
    for r in results:
        print(f"{r['rows']:>11,} {r['runs']:>6} {r['shards']:>7} {r['staged_mb']:>10.1f} {r['parts']:>6} "
              f"{r['seconds']:>8.2f} {r['rows_per_s']:>11,.0f} {r['peak_rss_mb']:>12.0f} "
              f"{r['rss_before_mb']:>11.0f} {r['arrow_pool_peak_mb']:>14.0f} {r['warmup_s']:>10.2f}")
    slowest = min(r["rows_per_s"] for r in results)
    growth = [r["peak_rss_mb"] - r["rss_before_mb"] for r in results]
    print(f"\nslowest: {slowest:,.0f} rows/s ({'meets' if slowest >= TARGET_ROWS_PER_S else 'MISSES'} "
          f"the target of {TARGET_ROWS_PER_S:,}); peak RSS growth over the interpreter: "
          + ", ".join(f"{g:.0f} MB" for g in growth))
    return 0


if __name__ == "__main__":
    sys.exit(main())
