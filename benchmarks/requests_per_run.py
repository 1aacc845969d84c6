"""S3 requests per finished run, by type, for N runs drained by W worker processes.

    python benchmarks/requests_per_run.py            # 500 runs, 8 workers, SeaweedFS
    python benchmarks/requests_per_run.py --runs 2000 --workers 8 --store file

Each worker process counts the HTTP requests its own store client sends (botocore's
``before-send`` event, retries included) and reports them at the end; the parent adds the
submit and a final check.  Also printed: the dollar cost per 1,000 runs at S3 Standard
request prices (PUT/LIST $0.005 per 1,000, GET/HEAD $0.0004 per 1,000, DELETE free).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import s3exp
from s3exp.bucket import keys
from s3exp.devserver._seaweed import SeaweedServer
from s3exp.ops._costs import OTHER_PRICE_PER_1000, PRICE_PER_1000
from s3exp.runs._worker import Worker
from s3exp.stores import FileStore, S3Store, Store


def _open(cfg: dict[str, Any]) -> Store:
    if cfg["kind"] == "file":
        return FileStore(cfg["path"])
    return S3Store(cfg["bucket"], "bench", endpoint_url=cfg["endpoint"], path_style=True,
                   credentials=(cfg["ak"], cfg["sk"]))


def _worker(cfg: dict[str, Any], go: Any, out: Any) -> None:
    store = _open(cfg)
    go.wait()
    rng = random.Random()
    t0 = time.perf_counter()
    n = 0
    for run in Worker(store, "bench", handle_signals=False):
        with run:
            if cfg["sleep_ms"]:
                time.sleep(rng.uniform(0, cfg["sleep_ms"]) / 1000)
            run.complete({"loss": rng.random()})
            n += 1
    out.put((n, store.requests.snapshot(), time.perf_counter() - t0))


def bench(kind: str, runs: int, workers: int, sleep_ms: float) -> dict[str, Any]:
    spec = s3exp.parse_spec({"name": "bench", "runs_per_pair": runs,
                             "parameters": {"x": {"min": 0.0, "max": 1.0}}})
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if kind == "file":
            cfg: dict[str, Any] = {"kind": "file", "path": str(Path(tmp) / "store")}
        else:
            server = SeaweedServer(data_dir=Path(tmp) / "weed").start()
            cfg = {"kind": "s3", "bucket": "bench", "endpoint": server.endpoint_url,
                   "ak": server.credentials.access_key, "sk": server.credentials.secret_key}
            server.bucket_store("bench").create_bucket()
        cfg["sleep_ms"] = sleep_ms
        try:
            store = _open(cfg)
            s3exp.submit(store, spec)
            ctx = mp.get_context("spawn")
            go, out = ctx.Event(), ctx.Queue()
            procs = [ctx.Process(target=_worker, args=(cfg, go, out)) for _ in range(workers)]
            for p in procs:
                p.start()
            time.sleep(1.0)  # let every worker import and connect
            t0 = time.perf_counter()
            go.set()
            results = [out.get(timeout=600) for _ in procs]
            wall = time.perf_counter() - t0
            for p in procs:
                p.join()
            done = sum(1 for m in store.list(keys.runs_prefix("bench"))
                       if "/result-" in m.key and m.size > 0)
        finally:
            if server is not None:
                server.stop()
    total: Counter[str] = Counter()
    for _, counts, _ in results:
        total.update(counts)
    return {"kind": kind, "runs": runs, "workers": workers, "done": done,
            "claimed": sum(r[0] for r in results), "wall_s": wall, "requests": dict(total)}


def report(r: dict[str, Any]) -> str:
    done = max(r["done"], 1)
    kinds = sorted(r["requests"])
    lines = [f"{r['kind']}: {r['runs']} runs, {r['workers']} workers, {r['done']} done, "
             f"{r['wall_s']:.1f} s, {r['done'] / r['wall_s']:.0f} runs/s",
             f"  {'request':<8} {'total':>8} {'per run':>8}"]
    dollars = 0.0
    for k in kinds:
        n = r["requests"][k]
        dollars += n / 1000 * PRICE_PER_1000.get(k, OTHER_PRICE_PER_1000)
        lines.append(f"  {k:<8} {n:>8} {n / done:>8.2f}")
    total = sum(r["requests"].values())
    lines.append(f"  {'all':<8} {total:>8} {total / done:>8.2f}")
    lines.append(f"  cost: ${dollars / done * 1000:.4f} per 1,000 runs at S3 Standard request prices")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--sleep-ms", type=float, default=0.0, help="run time drawn from [0, this]")
    ap.add_argument("--store", choices=("seaweed", "file", "both"), default="seaweed")
    args = ap.parse_args()
    kinds = ["seaweed", "file"] if args.store == "both" else [args.store]
    for kind in kinds:
        r = bench(kind, args.runs, args.workers, args.sleep_ms)
        print(report(r))
        if r["done"] != args.runs or r["claimed"] != args.runs:
            print(f"  MISMATCH: {r['done']} results, {r['claimed']} claims", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
