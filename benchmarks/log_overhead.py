"""Cost of one metric-logging call in the training loop: s3exp ``run.log`` against
MLflow's ``log_metric``, on the same machine, in the same invocation.

    python benchmarks/log_overhead.py                 # 200,000 s3exp calls, 300 MLflow calls
    python benchmarks/log_overhead.py --calls 1000000 --mlflow-calls 1000

s3exp: a real run claimed by a real ``Worker`` on a directory store; ``run.log`` buffers
and a background thread writes Parquet shards while the loop goes on (every 5 s or 50,000
rows), so the measured calls include the flusher's competition for the GIL.  Each call is
timed on its own with ``perf_counter_ns`` (the timer's own cost, measured and printed, is
included).  MLflow (``pip install 's3exp[bench]'``): ``mlflow.log_metric`` in an active run,
against its local file store and its SQLite store, synchronous (the default) and with
``synchronous=False``.  MLflow is skipped, with a note, if it is not installed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import s3exp
from s3exp.bucket import keys
from s3exp.stores import FileStore

TARGET_US = 5.0


def timed_calls(fn: Callable[[int], Any], n: int) -> list[int]:
    """Nanoseconds of each of ``n`` calls ``fn(i)``."""
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t = clock()
        fn(i)
        out[i] = clock() - t
    return out


def summary(name: str, ns: list[int]) -> dict[str, Any]:
    ns_sorted = sorted(ns)
    return {"name": name, "calls": len(ns), "median_us": statistics.median(ns_sorted) / 1e3,
            "p99_us": ns_sorted[int(len(ns_sorted) * 0.99) - 1] / 1e3,
            "mean_us": sum(ns_sorted) / len(ns_sorted) / 1e3}


def bench_s3exp(calls: int, metrics: int, tmp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    store = FileStore(tmp / f"store-{metrics}")
    s3exp.submit(store, s3exp.parse_spec({"name": "bench", "runs_per_pair": 1,
                                          "parameters": {"lr": {"value": 0.1}}}))
    run = s3exp.Worker(store, "bench", handle_signals=False).claim()
    assert run is not None
    names = ["loss", "acc", "lr", "grad_norm", "val_loss"][:metrics]
    values = {n: 0.5 for n in names}
    with run:
        ns = timed_calls(lambda i: run.log(values, step=i), calls)
        buf = run._metrics
        assert buf is not None
        shards_during = buf.shards_written
        t = time.perf_counter()
        run.complete({"loss": 0.5})  # flushes the rest synchronously
        final_flush = time.perf_counter() - t
    staged = sum(1 for _ in store.list(keys.STAGING))
    info = {"rows": buf.rows_written, "shards_flushed_during_loop": shards_during,
            "shards": staged, "final_flush_s": final_flush}
    assert buf.rows_written == calls * metrics
    return summary(f"s3exp run.log ({metrics} metrics/call)", ns), info


def bench_mlflow(calls: int, tmp: Path) -> list[dict[str, Any]]:
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    rows = []
    for store_name, uri in (("file store", f"file://{tmp}/mlruns"),
                            ("sqlite", f"sqlite:///{tmp}/mlflow.db")):
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("bench")
        for sync in (True, False):
            n = calls if not (store_name == "sqlite" and sync) else max(30, calls // 10)
            with mlflow.start_run():
                ns = timed_calls(lambda i, s=sync: mlflow.log_metric("loss", 0.5, step=i, synchronous=s), n)
            mode = "synchronous" if sync else "synchronous=False"
            rows.append(summary(f"mlflow log_metric, {store_name}, {mode} (1 metric/call)", ns))
    mlflow.flush_async_logging()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200_000, help="s3exp run.log calls per case")
    ap.add_argument("--mlflow-calls", type=int, default=300, help="MLflow log_metric calls per case")
    args = ap.parse_args()

    timer_ns = statistics.median(timed_calls(lambda i: None, 100_000))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        results = []
        infos = []
        for metrics in (2, 5):
            row, info = bench_s3exp(args.calls, metrics, tmp)
            results.append(row)
            infos.append(info)
        try:
            import mlflow
            mlflow_version = mlflow.__version__
            results += bench_mlflow(args.mlflow_calls, tmp)
        except ImportError:
            mlflow_version = "not installed (pip install 's3exp[bench]')"

    import pyarrow
    print(f"python benchmarks/log_overhead.py --calls {args.calls} --mlflow-calls {args.mlflow_calls}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"s3exp {s3exp.__version__}, pyarrow {pyarrow.__version__}, mlflow {mlflow_version}")
    print(f"timer overhead (empty timed call), included below: {timer_ns / 1e3:.3f} us\n")
    base = results[0]["median_us"]
    print(f"{'call':<66} {'calls':>8} {'median us':>10} {'p99 us':>9} {'mean us':>9} {'x s3exp':>8}")
    for r in results:
        print(f"{r['name']:<66} {r['calls']:>8} {r['median_us']:>10.2f} {r['p99_us']:>9.2f} "
              f"{r['mean_us']:>9.2f} {r['median_us'] / base:>8.0f}")
    for r, info in zip(results, infos, strict=False):
        print(f"\n{r['name']}: {info['rows']} rows staged in {info['shards']} shards "
              f"({info['shards_flushed_during_loop']} flushed in the background during the loop; "
              f"final flush at complete() {info['final_flush_s'] * 1e3:.0f} ms)")
    worst = max(r["median_us"] for r in results[:2])
    verdict = "meets" if worst <= TARGET_US else "MISSES"
    print(f"\nrun.log median {worst:.2f} us per call: {verdict} the target of {TARGET_US} us")
    return 0 if worst <= TARGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
