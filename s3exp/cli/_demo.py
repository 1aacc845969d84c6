"""``s3exp demo``: a small, real version of the use case s3exp was built for.

scikit-learn's bundled datasets (no network), grouped by task, times model families with
real hyperparameter spaces, a few replicates per pair, drained by local worker processes
through the same public API a researcher uses.  Every run logs its train and test score
per epoch with ``run.log``; at the end the demo compacts the metrics and shows the best run
per (dataset, model) from the results table and one learning curve per model family from
the metrics table (in the terminal, and as a PNG in the store directory when matplotlib
is installed).
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s3exp.core import ConfigError
from s3exp.ops import experiment_status, render_status
from s3exp.specs import parse_spec, submit
from s3exp.stores import open_store

__all__ = ["DEMO_SPEC", "ascii_chart", "run_demo", "train_one"]

SGD_EPOCHS = 30

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


def train_one(dataset: str, model: str, params: dict[str, Any], seed: int,
              log: Callable[[dict[str, float], int], None] | None = None) -> dict[str, float]:
    """Fit one model on one bundled dataset, calling ``log(metrics, step)`` once per epoch
    (SGD: a ``partial_fit`` pass; forest: one more tree; boosting: one more stage; ridge:
    one more tenth of the training set), and return the final test metrics (score:
    accuracy, or R^2 for regression)."""
    import numpy as np
    from sklearn import datasets, ensemble, linear_model
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    loaders = {"iris": datasets.load_iris, "wine": datasets.load_wine,
               "breast_cancer": datasets.load_breast_cancer, "digits": datasets.load_digits,
               "diabetes": datasets.load_diabetes}
    X, y = loaders[dataset](return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=seed)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    emit = log or (lambda metrics, step: None)
    t0 = time.perf_counter()
    curve: list[tuple[float, float]] = []

    def epoch(step: int, train: float, test: float) -> None:
        curve.append((train, test))
        emit({"score": test, "train_score": train}, step)

    if model == "SGDClassifier":
        sgd = linear_model.SGDClassifier(random_state=seed, **params)
        classes = np.unique(y)
        for step in range(SGD_EPOCHS):
            sgd.partial_fit(X_tr, y_tr, classes=classes)
            epoch(step, sgd.score(X_tr, y_tr), sgd.score(X_te, y_te))
    elif model == "RandomForestClassifier":
        forest = ensemble.RandomForestClassifier(random_state=seed, **params).fit(X_tr, y_tr)
        p_tr = np.zeros((len(X_tr), len(forest.classes_)))
        p_te = np.zeros((len(X_te), len(forest.classes_)))
        for step, tree in enumerate(forest.estimators_):  # the forest of the first k trees
            p_tr += tree.predict_proba(X_tr)
            p_te += tree.predict_proba(X_te)
            epoch(step, accuracy_score(y_tr, forest.classes_[p_tr.argmax(1)]),
                  accuracy_score(y_te, forest.classes_[p_te.argmax(1)]))
    elif model == "GradientBoostingRegressor":
        gbr = ensemble.GradientBoostingRegressor(random_state=seed, **params).fit(X_tr, y_tr)
        stages = zip(gbr.staged_predict(X_tr), gbr.staged_predict(X_te), strict=True)
        for step, (q_tr, q_te) in enumerate(stages):
            epoch(step, r2_score(y_tr, q_tr), r2_score(y_te, q_te))
    elif model == "Ridge":
        order = np.random.default_rng(seed).permutation(len(X_tr))
        for step in range(10):  # a learning curve over the amount of training data
            part = order[: max(2, len(order) * (step + 1) // 10)]
            ridge = linear_model.Ridge(**params).fit(X_tr[part], y_tr[part])
            epoch(step, ridge.score(X_tr, y_tr), ridge.score(X_te, y_te))
    else:
        raise ConfigError(f"the demo has no model {model!r}")
    train, test = curve[-1]
    return {"score": float(test), "train_score": float(train), "epochs": float(len(curve)),
            "best_epoch_score": float(max(t for _, t in curve)),
            "fit_seconds": time.perf_counter() - t0}


def _worker_main(url: str, endpoint_url: str | None) -> None:
    import warnings

    from s3exp.runs import Worker

    warnings.filterwarnings("ignore", module="sklearn")  # convergence chatter on toy data
    store = open_store(url, endpoint_url=endpoint_url)
    for run in Worker(store, "demo"):
        with run:
            assert run.dataset is not None and run.model is not None
            final = train_one(run.dataset, run.model, run.params, seed=run.replicate,
                              log=lambda metrics, step: run.log(metrics, step=step))
            run.complete(final)


def _best_per_pair(results: Any) -> tuple[str, dict[str, str]]:
    """The best run per (dataset, model) from the results table, as text; and the best
    run id per model family (for its learning curve)."""
    rows = [r for r in results.to_pylist() if r.get("metric_score") is not None]
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["dataset"], r["model"])
        if key not in best or r["metric_score"] > best[key]["metric_score"]:
            best[key] = r
    lines = [f"  {'dataset':<14} {'model':<26} {'score':>7} {'epochs':>6}  params"]
    for (ds, model), r in sorted(best.items()):
        params = ", ".join(f"{k[6:]}={v:.3g}" if isinstance(v, float) else f"{k[6:]}={v}"
                           for k, v in sorted(r.items()) if k.startswith("param_") and v is not None)
        lines.append(f"  {ds:<14} {model:<26} {r['metric_score']:>7.3f} "
                     f"{int(r.get('metric_epochs') or 0):>6}  {params}")
    family: dict[str, dict[str, Any]] = {}
    for r in rows:  # one curve per family: its run with the best score on digits, if any
        key = r["model"]
        rank = (r["dataset"] == "digits", r["metric_score"])
        if key not in family or rank > (family[key]["dataset"] == "digits", family[key]["metric_score"]):
            family[key] = r
    return "\n".join(lines), {m: r["run_id"] for m, r in sorted(family.items())}


def ascii_chart(series: list[float], *, width: int = 60, height: int = 8,
                low: float | None = None, high: float | None = None) -> list[str]:
    """A terminal line chart of ``series`` (one value per step), ``height`` rows tall."""
    if not series:
        return ["  (no points)"]
    lo = min(series) if low is None else low
    hi = max(series) if high is None else high
    if hi - lo < 1e-12:
        hi = lo + 1.0
    cols = width
    # The series at ``cols`` evenly spaced steps (short series are stretched).
    picked = [series[round(i * (len(series) - 1) / max(1, cols - 1))] for i in range(cols)]
    levels = [round((v - lo) / (hi - lo) * (height - 1)) for v in picked]
    out = []
    for row in range(height - 1, -1, -1):
        label = lo + (hi - lo) * row / (height - 1)
        line = "".join("*" if lv == row else ("." if lv > row else " ") for lv in levels)
        out.append(f"  {label:>7.3f} |{line}")
    out.append(f"  {'':>7} +{'-' * cols}")
    last = f"step {len(series) - 1}"
    out.append(f"  {'':>7}  step 0{last:>{max(len(last) + 1, cols - 6)}}")
    return out


def _curves(metrics: Any, runs: dict[str, str]) -> tuple[str, dict[str, list[float]]]:
    """Text charts of the test score per step of one run per model family."""
    by_run: dict[str, dict[int, float]] = {rid: {} for rid in runs.values()}
    import pyarrow.compute as pc

    scores = metrics.filter(pc.equal(metrics["name"], "score"))
    for r in scores.select(["run_id", "step", "value"]).to_pylist():
        if r["run_id"] in by_run:
            by_run[r["run_id"]][r["step"]] = r["value"]
    blocks = []
    curves: dict[str, list[float]] = {}
    for model, rid in runs.items():
        steps = by_run[rid]
        series = [steps[k] for k in sorted(steps)]
        curves[f"{model} ({rid})"] = series
        unit = {"SGDClassifier": "partial_fit epoch", "RandomForestClassifier": "trees",
                "GradientBoostingRegressor": "boosting stage",
                "Ridge": "tenths of the training set"}.get(model, "step")
        blocks.append(f"\n  {model}, run {rid}: test score by {unit}")
        blocks.extend(ascii_chart(series))
    return "\n".join(blocks), curves


def _save_png(path: Path, curves: dict[str, list[float]]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3), squeeze=False)
    for ax, (title, series) in zip(axes[0], curves.items(), strict=True):
        ax.plot(range(len(series)), series)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("test score")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def run_demo(url: str, *, processes: int = 3, runs_per_pair: int = 3,
             endpoint_url: str | None = None) -> int:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError("the demo needs scikit-learn: pip install 's3exp[demo]'") from None
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

    from s3exp.ops import compact_and_record
    from s3exp.tables import metrics, results

    report = compact_and_record(store, "demo")
    print(f"\ncompacted: {report.runs_compacted} runs, {report.rows} metric rows from "
          f"{report.shards_read} shards into metrics/experiment=demo/ and results/experiment=demo/")
    table = results(store, "demo")
    best, families = _best_per_pair(table)
    print(f"\nbest run per (dataset, model) by test score (accuracy; R^2 for diabetes), "
          f"from the results table ({table.num_rows} finished runs):")
    print(best)
    text, curves = _curves(metrics(store, "demo"), families)
    print("\nlearning curves, one run per model family (from the metrics table):")
    print(text)
    local = Path(url[len("file://"):] if url.startswith("file://") else url)
    if "://" not in url or url.startswith("file://"):
        png = local / "demo-learning-curves.png"
        if _save_png(png, curves):
            print(f"\n(also saved as {png})")
    print(f"\nall results:  s3exp results demo --store {url} --format csv")
    print(f"your own SQL: s3exp query \"SELECT model, name, max(step) FROM metrics GROUP BY ALL\" "
          f"--store {url}")
    return 0


def _progress(store: Any, total: int, elapsed: float) -> None:
    from s3exp.bucket import list_runs

    listing = list_runs(store, "demo")
    done = sum(1 for objs in listing.runs.values() if objs.result is not None)
    width = 30
    filled = int(width * done / total) if total else width
    sys.stdout.write(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} runs done, {elapsed:5.1f}s")
    sys.stdout.flush()
