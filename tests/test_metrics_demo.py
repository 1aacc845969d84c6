"""``s3exp demo``: real per-epoch metrics, compaction, the best run per pair from the
results table and one learning curve per model family."""

from __future__ import annotations

from pathlib import Path

import pytest

import s3exp
from s3exp.cli._demo import SGD_EPOCHS, ascii_chart, run_demo, train_one
from s3exp.tables._compaction import read_manifest

pytest.importorskip("sklearn")


@pytest.mark.parametrize(("dataset", "model", "params", "epochs"), [
    ("iris", "SGDClassifier", {"alpha": 1e-3, "loss": "log_loss"}, SGD_EPOCHS),
    ("wine", "RandomForestClassifier", {"n_estimators": 12, "max_depth": 4}, 12),
    ("diabetes", "GradientBoostingRegressor",
     {"learning_rate": 0.1, "n_estimators": 25, "max_depth": 2}, 25),
    ("diabetes", "Ridge", {"alpha": 1.0}, 10),
])
def test_every_model_family_logs_one_row_set_per_epoch(dataset: str, model: str,
                                                       params: dict[str, object], epochs: int) -> None:
    logged: list[tuple[int, dict[str, float]]] = []
    final = train_one(dataset, model, params, seed=0, log=lambda m, step: logged.append((step, m)))
    assert [step for step, _ in logged] == list(range(epochs))
    assert all(set(m) == {"score", "train_score"} for _, m in logged)
    assert final["score"] == logged[-1][1]["score"] and final["epochs"] == epochs
    assert final["best_epoch_score"] == max(m["score"] for _, m in logged)
    assert len({m["score"] for _, m in logged}) > 1  # a curve, not a constant


def test_ascii_chart_draws_the_series_between_its_bounds() -> None:
    assert ascii_chart([0.0, 0.5, 1.0], width=9, height=3) == [
        "    1.000 |      ***",
        "    0.500 |   ***...",
        "    0.000 |***......",
        "          +---------",
        "           step 0 step 2",
    ]


def test_the_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = str(tmp_path / "demo-store")
    assert run_demo(url, processes=2, runs_per_pair=1) == 0
    out = capsys.readouterr().out
    assert "best run per (dataset, model)" in out
    for family in ("SGDClassifier", "RandomForestClassifier", "GradientBoostingRegressor", "Ridge"):
        assert f"  {family}, run " in out  # one learning curve each
    manifest = read_manifest(s3exp.open_store(url), "demo")
    assert len(manifest.runs) == 10 and manifest.metric_rows > 10 * 2 * 10
    assert s3exp.metrics(url, "demo").num_rows == manifest.metric_rows
