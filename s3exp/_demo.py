"""``s3exp demo``: a small, real version of the use case s3exp was built for.

scikit-learn's bundled datasets (no network), grouped by task, times model families with
real hyperparameter spaces, a few replicates per pair, drained by local worker processes
through the same public API a researcher uses.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from typing import Any

from s3exp._errors import ConfigError
from s3exp._experiments import submit
from s3exp._specs import parse_spec
from s3exp._status import experiment_status, render_status
from s3exp.stores import open_store

__all__ = ["DEMO_SPEC", "run_demo", "train_one"]

DEMO_SPEC: dict[str, Any] = {
    "name": "demo",
    "description": "scikit-learn toy datasets x model families",
    "runs_per_pair": 3,
    "metric": {"name": "score", "goal": "maximize"},
    "definition": {
        "data_groups": {
            "classification": ["iris", "wine", "breast_cancer", "digits"],
            "regression": ["diabetes"],
        },
        "model_groups": {
            "sgd": {"model": "SGDClassifier", "hype": {
                "alpha": {"distribution": "log_uniform_values", "min": 1e-6, "max": 1e-1},
                "loss": {"values": ["hinge", "log_loss", "modified_huber"]}}},
            "forest": {"model": "RandomForestClassifier", "hype": {
                "n_estimators": {"distribution": "int_uniform", "min": 10, "max": 80},
                "max_depth": {"distribution": "int_uniform", "min": 2, "max": 12}}},
            "ridge": {"model": "Ridge", "hype": {
                "alpha": {"distribution": "log_uniform_values", "min": 1e-3, "max": 1e3}}},
            "boosting": {"model": "GradientBoostingRegressor", "hype": {
                "learning_rate": {"distribution": "log_uniform_values", "min": 0.01, "max": 0.3},
                "n_estimators": {"distribution": "int_uniform", "min": 30, "max": 150},
                "max_depth": {"distribution": "int_uniform", "min": 2, "max": 4}}},
        },
        "applications": {"classification": ["sgd", "forest"], "regression": ["ridge", "boosting"]},
    },
}


def train_one(dataset: str, model: str, params: dict[str, Any], seed: int) -> dict[str, float]:
    """Fit one model on one bundled dataset; return test metrics (score: accuracy or R^2)."""
    from sklearn import datasets, ensemble, linear_model
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    loaders = {"iris": datasets.load_iris, "wine": datasets.load_wine,
               "breast_cancer": datasets.load_breast_cancer, "digits": datasets.load_digits,
               "diabetes": datasets.load_diabetes}
    X, y = loaders[dataset](return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed)
    estimators = {
        "SGDClassifier": lambda: linear_model.SGDClassifier(random_state=seed, max_iter=200, tol=1e-4, **params),
        "RandomForestClassifier": lambda: ensemble.RandomForestClassifier(random_state=seed, **params),
        "Ridge": lambda: linear_model.Ridge(**params),
        "GradientBoostingRegressor": lambda: ensemble.GradientBoostingRegressor(random_state=seed, **params),
    }
    est = make_pipeline(StandardScaler(), estimators[model]())
    t0 = time.perf_counter()
    est.fit(X_tr, y_tr)
    return {"score": float(est.score(X_te, y_te)), "train_score": float(est.score(X_tr, y_tr)),
            "fit_seconds": time.perf_counter() - t0}


def _worker_main(url: str, endpoint_url: str | None) -> None:
    import warnings

    from s3exp._worker import Worker

    warnings.filterwarnings("ignore", module="sklearn")  # convergence chatter on toy data
    store = open_store(url, endpoint_url=endpoint_url)
    for run in Worker(store, "demo"):
        with run:
            assert run.dataset is not None and run.model is not None
            run.complete(train_one(run.dataset, run.model, run.params, seed=run.replicate))


def _best_per_pair(records: list[dict[str, Any]]) -> str:
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (r["dataset"], r["model"])
        if key not in best or r["metrics"]["score"] > best[key]["metrics"]["score"]:
            best[key] = r
    lines = [f"  {'dataset':<14} {'model':<26} {'score':>7}  params"]
    for (ds, model), r in sorted(best.items()):
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in r["params"].items())
        lines.append(f"  {ds:<14} {model:<26} {r['metrics']['score']:>7.3f}  {params}")
    return "\n".join(lines)


def run_demo(url: str, *, processes: int = 3, runs_per_pair: int = 3,
             endpoint_url: str | None = None) -> int:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError("the demo needs scikit-learn: pip install 's3exp[demo]'") from None
    from s3exp._operations import read_results

    spec = parse_spec({**DEMO_SPEC, "runs_per_pair": runs_per_pair})
    store = open_store(url, endpoint_url=endpoint_url)
    res = submit(store, spec)
    print(f"{'submitted' if res.created else 'resuming'} experiment 'demo' ({res.runs} runs) in {store.url}")
    print(f"starting {processes} worker processes ...")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(url, endpoint_url)) for _ in range(processes)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            _progress(store, res.runs, time.monotonic() - t0)
            time.sleep(0.5)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()  # SIGTERM: each worker releases its run as interrupted
        for p in procs:
            p.join()
        print("\ninterrupted; run `s3exp demo` again to resume")
        return 130
    _progress(store, res.runs, time.monotonic() - t0)
    print("\n")
    print(render_status(experiment_status(store, "demo")))
    records = read_results(store, "demo")
    print(f"\nbest run per (dataset, model) by score (accuracy; R^2 for diabetes), "
          f"{len(records)} finished runs:")
    print(_best_per_pair(records))
    print(f"\nall results:  s3exp results demo --store {url} --format csv")
    return 0


def _progress(store: Any, total: int, elapsed: float) -> None:
    from s3exp import _keys

    done = sum(1 for m in store.list(_keys.runs_prefix("demo")) if m.key.endswith("/result.json"))
    width = 30
    filled = int(width * done / total) if total else width
    sys.stdout.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} runs done, {elapsed:5.1f}s")
    sys.stdout.flush()
