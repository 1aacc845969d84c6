"""`s3exp serve`: the status Lambda's app behind a local HTTP server, seen by a browser.

The page is loaded in headless Chromium (Debian's ``chromium``, which ``.ci/run``
installs); a screenshot is kept in ``out/`` (ignored by git) as a CI artifact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import s3exp
from s3exp.devserver._seaweed import SeaweedServer

from .conftest import AWS_ENV, REPO, unique_bucket

SPEC = {"name": "live", "runs_per_pair": 3, "metric": {"name": "acc", "goal": "maximize"},
        "definition": {"data_groups": {"g": ["iris", "wine"]},
                       "model_groups": {"sgd": {"model": "SGDClassifier", "hype": {
                           "alpha": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1}}}},
                       "applications": {"g": ["sgd"]}}}


def start_serve(store_url: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "s3exp", "serve", "--store", store_url, "--port", "0"],
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if not m:
        proc.kill()
        pytest.fail(f"s3exp serve printed {line!r}; stderr: {proc.communicate()[1]}")
    return proc, m.group(1)


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(10)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


@pytest.fixture
def live_experiment(tmp_path: Path) -> Iterator[str]:
    """A directory store where 4 of 6 runs are done and one is running (its worker holds
    the lease with a live heartbeat while the test looks at the page)."""
    url = str(tmp_path / "store")
    store = s3exp.open_store(url)
    s3exp.submit(store, s3exp.parse_spec(SPEC))
    for run in s3exp.Worker(store, "live", max_runs=4, wait=False, handle_signals=False):
        with run:
            run.complete({"acc": 0.9 + 0.01 * run.replicate})
    holding = threading.Event()
    release = threading.Event()

    def hold_one() -> None:
        for run in s3exp.Worker(store, "live", max_runs=1, wait=False, handle_signals=False):
            with run:
                holding.set()
                release.wait(60)
                run.complete({"acc": 0.5})

    t = threading.Thread(target=hold_one, daemon=True)
    t.start()
    assert holding.wait(30)
    try:
        yield url
    finally:
        release.set()
        t.join(30)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
    pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")


def browse(url: str, tmp_path: Path, screenshot: Path) -> str:
    """The DOM of ``url`` after Chromium rendered it; also saves a screenshot."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chrome-profile'}", "--window-size=1100,900"]
    exe = chromium()
    dom = subprocess.run([exe, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = subprocess.run([exe, *flags, f"--screenshot={screenshot}", url],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.stat().st_size > 1000, shot.stderr[-2000:]
    return dom.stdout


def test_status_page_in_a_browser(live_experiment: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in AWS_ENV}
    proc, base = start_serve(live_experiment, env)
    try:
        out = REPO / "out"
        out.mkdir(exist_ok=True)
        dom = browse(f"{base}experiments/live?format=html", tmp_path, out / "status-page.png")
        assert "<h1>live</h1>" in dom
        assert "<span id=\"finished\">4</span>/<span id=\"total\">6</span>" in dom
        assert re.search(r"id=\"count-running\">1<", dom) and re.search(r"id=\"count-pending\">1<", dom)
        assert "iris / sgd" in dom and "wine / sgd" in dom
        assert "Best so far (maximize acc)" in dom

        index = browse(base, tmp_path, tmp_path / "index.png")
        assert "experiments/live?format=html" in index
    finally:
        stop(proc)


@pytest.mark.seaweed
def test_serve_against_seaweed(seaweed: SeaweedServer, tmp_path: Path) -> None:
    bucket = unique_bucket()
    store = seaweed.bucket_store(bucket, "lab")
    store.create_bucket()
    s3exp.submit(store, s3exp.parse_spec(SPEC))
    for run in s3exp.Worker(store, "live", max_runs=2, wait=False, handle_signals=False):
        with run:
            run.complete({"acc": 0.7})
    env = {**{k: v for k, v in os.environ.items() if k not in AWS_ENV}, **seaweed.env()}
    proc, base = start_serve(f"s3://{bucket}/lab", env)
    try:
        code, body = get(f"{base}experiments/live")
        assert code == 200 and json.loads(body)["counts"]["done"] == 2
        code, body = get(f"{base}experiments/live/results?format=csv")
        assert code == 200 and len(body.splitlines()) == 3
        code, body = get(f"{base}experiments/%2E%2E%2Fexperiments")
        assert code == 400 and "error" in json.loads(body)
        code, body = get(f"{base}experiments/nope")
        assert code == 404
    finally:
        stop(proc)


def test_serve_with_a_bad_store_is_one_line_exit_2(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "s3exp", "serve", "--store", "gs://nope", "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("s3exp: error:")
