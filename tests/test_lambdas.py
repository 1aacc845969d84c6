"""The Lambda handlers in ``lambdas/``, fed the real event shapes saved in tests/events/.

They run against a real SeaweedFS server: the handler modules are imported fresh with
``S3EXP_STORE`` and the endpoint in their environment, exactly as Lambda would start them.
Exactly-once is checked afterwards by counting rows in the compacted tables.
"""

from __future__ import annotations

import importlib.util
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

import s3exp
from s3exp.devserver._seaweed import SeaweedServer
from s3exp.stores import S3Store

from .conftest import AWS_ENV, REPO, unique_bucket

pytestmark = pytest.mark.seaweed

EVENTS = Path(__file__).parent / "events"
FIXTURE_BUCKET = "s3exp-lab"
PREFIX = "team"
STEPS, NAMES = 10, ("loss", "acc")


def load_event(name: str, bucket: str) -> dict[str, Any]:
    """A saved event, with the fixture's bucket name replaced by the test's bucket."""
    text = (EVENTS / name).read_text()
    event: dict[str, Any] = json.loads(text.replace(f'"{FIXTURE_BUCKET}"', json.dumps(bucket))
                                       .replace(f":::{FIXTURE_BUCKET}", f":::{bucket}"))
    return event


def load_handler(name: str) -> types.ModuleType:
    """Import lambdas/<name>.py as a fresh module, as a new Lambda container would."""
    spec = importlib.util.spec_from_file_location(f"lambda_{name}", REPO / "lambdas" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SPEC_A = {"name": "expA", "runs_per_pair": 2, "metric": {"name": "acc", "goal": "maximize"},
          "definition": {"data_groups": {"g": ["ds0", "ds1"]},
                         "model_groups": {"m0": {"model": "sgd", "hype": {
                             "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1}}},
                                          "m1": {"model": "tree", "hype": {
                                              "depth": {"distribution": "int_uniform", "min": 1, "max": 9}}}},
                         "applications": {"g": ["m0", "m1"]}}}
SPEC_B = {"name": "exp+b", "method": "grid", "runs_per_pair": 1,
          "parameters": {"lr": {"values": [0.1, 0.01, 0.001]}}}


def run_some(store: S3Store, exp: str, n: int) -> int:
    """Complete n runs of exp, each logging STEPS steps of NAMES; returns rows logged."""
    done = 0
    for run in s3exp.Worker(store, exp, max_runs=n, wait=False, handle_signals=False):
        with run:
            for step in range(STEPS):
                run.log({k: 1.0 / (step + 1) for k in NAMES}, step=step)
            run.complete({"acc": 0.5 + 0.01 * run.replicate, "loss": 0.1})
        done += 1
    assert done == n
    return n * STEPS * len(NAMES)


@pytest.fixture
def lab(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Store, str]]:
    """A bucket with expA and exp+b submitted, and the handler environment set."""
    bucket = unique_bucket()
    store = seaweed.bucket_store(bucket, PREFIX)
    store.create_bucket()
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    for k, v in seaweed.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("S3EXP_STORE", f"s3://{bucket}/{PREFIX}")
    s3exp.submit(store, s3exp.parse_spec(SPEC_A))
    s3exp.submit(store, s3exp.parse_spec(SPEC_B))
    yield store, bucket
    store.close()


def counts(store: S3Store) -> tuple[int, int, int]:
    """(metric rows, duplicate (run, step, name) keys, result rows) over both experiments."""
    t = s3exp.query(store, "SELECT count(*) AS n, count(*) - count(DISTINCT (experiment, run_id, step, name)) "
                           "AS dup FROM metrics").to_pylist()[0]
    r = s3exp.query(store, "SELECT count(*) AS n FROM results").to_pylist()[0]
    return int(t["n"]), int(t["dup"]), int(r["n"])


def athena_style_rows(seaweed: SeaweedServer, bucket: str) -> int:
    """Rows a reader sees that lists metrics/ under the prefix, as Athena does."""
    fs = pafs.S3FileSystem(access_key=seaweed.credentials.access_key,
                           secret_key=seaweed.credentials.secret_key,
                           endpoint_override=seaweed.endpoint_url, scheme="http", region="us-east-1")
    ds = pads.dataset(f"{bucket}/{PREFIX}/metrics", filesystem=fs, format="parquet", partitioning="hive")
    return int(ds.count_rows())


def test_compact_handler_is_exactly_once_under_duplicate_and_late_events(
        lab: tuple[S3Store, str], seaweed: SeaweedServer) -> None:
    store, bucket = lab
    rows = run_some(store, "expA", 5) + run_some(store, "exp+b", 2)
    compact = load_handler("compact")

    several = load_event("s3_put_several.json", bucket)
    first = compact.handler(several, None)
    assert first["source"] == "s3"
    assert sorted(first["compacted"]) == ["exp+b", "expA"]  # "exp%2Bb" decoded as S3 encodes it
    # runs/ key, another bucket, and an encoded "../" experiment are ignored, not compacted
    assert first["ignored_records"] == 3
    assert first["compacted"]["expA"]["runs_compacted"] == 5
    assert first["compacted"]["exp+b"]["runs_compacted"] == 2
    assert counts(store) == (rows, 0, 7)

    compact.STORE.requests.reset()
    again = compact.handler(several, None)  # a duplicate delivery
    assert all(r["runs_compacted"] == 0 and r["rows"] == 0 for r in again["compacted"].values())
    # ...and cheap: no LIST of the shards and no write; per experiment a GET of the spec and
    # of the manifest, a HEAD per part of the newest generation (here one metrics and one
    # results part) and a LIST of the runs
    spent = compact.STORE.requests.snapshot()
    assert spent.get("PUT", 0) == 0 and spent.get("LIST", 0) == 2, spent
    assert sum(spent.values()) <= 5 * 2, spent
    assert counts(store) == (rows, 0, 7)

    rows += run_some(store, "expA", 3) + run_some(store, "exp+b", 1)
    scheduled = compact.handler(load_event("eventbridge_schedule.json", bucket), None)
    assert scheduled["source"] == "schedule"
    assert scheduled["compacted"]["expA"]["runs_compacted"] == 3
    assert scheduled["compacted"]["exp+b"]["runs_compacted"] == 1

    late = compact.handler(several, None)  # the first event, delivered late and out of order
    assert sum(r["runs_compacted"] for r in late["compacted"].values()) == 0
    assert counts(store) == (rows, 0, 11)
    assert athena_style_rows(seaweed, bucket) == rows


def test_compact_handler_skips_an_experiment_that_is_not_there(lab: tuple[S3Store, str]) -> None:
    store, bucket = lab
    event = load_event("s3_put_several.json", bucket)
    event["Records"][0]["s3"]["object"]["key"] = "team/staging/ghost/r__m__r00/0001/000000.parquet"
    out = load_handler("compact").handler(event, None)
    assert "ghost" in out["skipped"] and "ghost" not in out["compacted"]
    assert not list(store.list("metrics/experiment=ghost/"))


def call(status: types.ModuleType, name: str, bucket: str) -> tuple[int, dict[str, str], str]:
    resp = status.handler(load_event(name, bucket), None)
    assert resp["isBase64Encoded"] is False
    return int(resp["statusCode"]), resp["headers"], str(resp["body"])


def test_status_handler_answers_function_url_requests(lab: tuple[S3Store, str]) -> None:
    store, bucket = lab
    run_some(store, "expA", 3)
    status = load_handler("status")

    code, headers, body = call(status, "furl_list.json", bucket)
    assert code == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"experiments": ["exp+b", "expA"]}

    code, _, body = call(status, "furl_status.json", bucket)
    st = json.loads(body)
    assert code == 200 and st["experiment"] == "expA" and st["total"] == 8
    assert st["counts"]["done"] == 3 and st["counts"]["pending"] == 5

    code, headers, body = call(status, "furl_status_html.json", bucket)
    assert code == 200 and headers["content-type"].startswith("text/html")
    assert "<span id='finished'>3</span>/<span id='total'>8</span>" in body
    assert "Best so far (maximize acc)" in body

    code, headers, body = call(status, "furl_results_csv.json", bucket)
    lines = body.splitlines()
    assert code == 200 and headers["content-type"].startswith("text/csv")
    assert "run_id" in lines[0].split(",") and len(lines) == 1 + 3

    code, _, body = call(status, "furl_unknown_experiment.json", bucket)
    assert code == 404 and "noSuchExp" in json.loads(body)["error"]

    for traversal in ("furl_traversal_encoded.json", "furl_traversal_dots.json"):
        code, headers, body = call(status, traversal, bucket)
        assert code in (400, 404) and headers["content-type"] == "application/json", traversal
        assert "error" in json.loads(body) and "experiments" not in json.loads(body)

    code, headers, _ = call(status, "furl_post.json", bucket)
    assert code == 405 and headers["allow"] == "GET"
