"""The command line: submit, list, show, every way a user can get the input wrong, the
exit statuses, the command line after ``--``, and what ``-v`` and ``-q`` let through.

Cheap cases run in-process through ``s3exp.cli.main`` (an uncaught exception there fails
the test, so "no traceback" is checked too); cases where the real process matters (exit
status, stderr, environment, credentials) run ``python -m s3exp`` as a subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import s3exp
from s3exp import (
    ConfigError,
    Conflict,
    DamagedObject,
    NotFoundError,
    S3ExpError,
    SpecConflict,
    Unavailable,
    expand,
    load_spec,
)
from s3exp.bucket import keys
from s3exp.cli import build_parser, main
from s3exp.devserver._seaweed import SeaweedServer

from ._specdata import BAD_SPECS, FLAT_GRID, GROUPED, bad_spec, grouped
from .conftest import AWS_ENV, MakeS3Store

REPO = Path(__file__).resolve().parent.parent
SPEC_KEY = keys.spec("testExp0")


# -- helpers -------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m s3exp ARGS`` in a clean environment (plus ``env``)."""
    base = {k: v for k, v in os.environ.items() if k not in AWS_ENV and not k.startswith("AWS_")}
    return subprocess.run([sys.executable, "-m", "s3exp", *args], env={**base, **(env or {})},
                          cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout)


def one_error_line(stderr: str, *needles: str) -> str:
    """Assert ``stderr`` is one ``s3exp: error:`` line that mentions every needle."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert stderr.endswith("\n")
    line = lines[0]
    assert line.startswith("s3exp: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def count_objects(root: Path) -> int:
    """Objects in a file store: every file except the store's private ``.s3exp/``."""
    if not root.exists():
        return 0
    return sum(1 for p in root.rglob("*")
               if p.is_file() and p.relative_to(root).parts[0] != ".s3exp")


def write_spec(path: Path, spec: Any) -> Path:
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def submitted(root: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A file store holding testExp0 (grouped.json)."""
    assert main(["submit", str(GROUPED), "--store", str(root)]) == 0
    capsys.readouterr()
    return root


def seaweed_env(server: SeaweedServer) -> dict[str, str]:
    return server.env()


# -- submit, show, list --------------------------------------------------------------


def test_submit_then_again_is_a_noop(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", str(GROUPED), "--store", str(root)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("submitted testExp0: 90 runs")
    assert out.err == ""
    assert count_objects(root) == 1
    stored = (root / SPEC_KEY).read_bytes()
    record = json.loads(stored)
    assert record["spec_hash"] == load_spec(GROUPED).spec_hash
    assert record["runs"] == 90

    assert main(["submit", str(GROUPED), "--store", str(root)]) == 0
    out = capsys.readouterr()
    assert "already submitted" in out.out and "nothing to do" in out.out
    assert out.err == ""
    assert count_objects(root) == 1
    assert (root / SPEC_KEY).read_bytes() == stored


def test_submit_same_spec_reformatted_is_a_noop(submitted: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    d = grouped()
    d["runs_per_pair"] = 10  # the number instead of the string, keys reordered
    p = write_spec(tmp_path / "again.json", dict(reversed(list(d.items()))))
    assert main(["submit", str(p), "--store", str(submitted)]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_submit_twice_as_real_processes(root: Path) -> None:
    first = run_cli("submit", str(GROUPED), "--store", str(root))
    assert first.returncode == 0, first.stderr
    second = run_cli("submit", str(GROUPED), "--store", str(root))
    assert second.returncode == 0, second.stderr
    assert "already submitted" in second.stdout and "nothing to do" in second.stdout
    assert second.stderr == ""
    assert count_objects(root) == 1


def test_show_lists_the_90_runs(submitted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "testExp0", "--store", str(submitted)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("testExp0: 90 runs, 10 per cell")
    rows = lines[2:]
    assert len(rows) == 90
    slots = expand(load_spec(GROUPED))
    for row, slot in zip(rows, slots, strict=True):
        fields = row.split()
        assert fields[0] == str(slot.index)
        assert fields[1] == slot.run_id
        assert fields[2] == slot.dataset and fields[3] == slot.model
        assert f"learning_rate={slot.params['learning_rate']:.6g}" in row


def test_show_json(submitted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "testExp0", "--json", "--store", str(submitted)]) == 0
    doc = json.loads(capsys.readouterr().out)
    spec = load_spec(GROUPED)
    assert doc["name"] == "testExp0"
    assert doc["spec_hash"] == spec.spec_hash
    assert doc["runs"] == json.loads(json.dumps([s.to_dict() for s in expand(spec)]))


def test_show_a_spec_file_without_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["show", str(FLAT_GRID), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["runs"]) == 12
    assert list(tmp_path.iterdir()) == []  # showing a file writes nothing


def test_show_unknown_experiment(submitted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "nosuchExp", "--store", str(submitted)]) == 2
    one_error_line(capsys.readouterr().err, "nosuchExp")


def test_list(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--store", str(root)]) == 0
    assert capsys.readouterr().out.startswith("no experiments in")
    for spec in (GROUPED, FLAT_GRID):
        assert main(["submit", str(spec), "--store", str(root)]) == 0
    capsys.readouterr()
    assert main(["list", "--store", str(root)]) == 0
    assert capsys.readouterr().out.splitlines() == ["flatGrid", "testExp0"]
    assert main(["list", "--json", "--store", str(root)]) == 0
    assert json.loads(capsys.readouterr().out) == ["flatGrid", "testExp0"]


def test_store_defaults_to_env_then_local_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("S3EXP_STORE", str(tmp_path / "from-env"))
    assert main(["submit", str(GROUPED)]) == 0
    assert count_objects(tmp_path / "from-env") == 1
    monkeypatch.delenv("S3EXP_STORE")
    assert main(["submit", str(FLAT_GRID)]) == 0
    assert count_objects(tmp_path / "s3exp-store") == 1
    assert (tmp_path / "s3exp-store" / "experiments" / "flatGrid.json").is_file()
    capsys.readouterr()


def test_submit_flat_grid_and_yaml(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    y = tmp_path / "flat.yaml"
    y.write_text(yaml.safe_dump(json.loads(FLAT_GRID.read_text())))
    assert main(["submit", str(y), "--store", str(root)]) == 0
    assert "submitted flatGrid: 12 runs" in capsys.readouterr().out
    # the JSON file is the same spec
    assert main(["submit", str(FLAT_GRID), "--store", str(root)]) == 0
    assert "nothing to do" in capsys.readouterr().out


# -- a different spec under the same name ----------------------------------------------


@pytest.mark.parametrize("change, first_difference", [
    (lambda d: d.update(runs_per_pair=11), "runs_per_pair"),
    (lambda d: d["definition"]["data_groups"]["group0"].__setitem__(1, "dataUID9"),
     "definition.data_groups.group0.1"),
    (lambda d: d.update(priority=3), "priority"),
], ids=["runs_per_pair", "dataset", "priority"])
def test_different_spec_same_name_is_refused(submitted: Path, tmp_path: Path, change: Any,
                                             first_difference: str) -> None:
    stored = (submitted / SPEC_KEY).read_bytes()
    d = grouped()
    change(d)
    p = write_spec(tmp_path / "changed.json", d)
    r = run_cli("submit", str(p), "--store", str(submitted))
    assert r.returncode == 2
    assert r.stdout == ""
    old_hash = load_spec(GROUPED).spec_hash[:12]
    new_hash = load_spec(p).spec_hash[:12]
    assert old_hash != new_hash
    one_error_line(r.stderr, "testExp0", old_hash, new_hash, first_difference)
    assert (submitted / SPEC_KEY).read_bytes() == stored
    assert count_objects(submitted) == 1


# -- malformed specs -----------------------------------------------------------------

# (id, file name, text, what the one line must mention)
UNPARSABLE = [
    ("bad-json", "bad.json", '{"name": "testExp0", "runs_per_pair": 2,', ["bad.json", "JSON", "line 1"]),
    ("bad-json-quotes", "quotes.json", "{'name': 'testExp0'}", ["quotes.json", "JSON"]),
    ("bad-yaml", "bad.yaml", "name: [unclosed\nruns_per_pair: {\n", ["bad.yaml", "YAML"]),
    ("nan", "nan.json", '{"name": "x", "parameters": {"a": {"min": NaN, "max": 1.0}}}', ["NaN"]),
    ("not-an-object", "list.json", "[]", ["object"]),
    ("empty-file", "empty.json", "", ["empty.json", "JSON"]),
]

MALFORMED = (
    [pytest.param(name, text, needles, id=i) for i, name, text, needles in UNPARSABLE]
    + [pytest.param("spec.json", json.dumps(bad_spec(m)), [f"{field}: "], id=i)
       for i, m, field in BAD_SPECS]
)


@pytest.mark.parametrize("filename, text, needles", MALFORMED)
def test_malformed_spec_exits_2_with_one_line_and_writes_nothing(
        submitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        filename: str, text: str, needles: list[str]) -> None:
    before = sorted(p.relative_to(submitted) for p in submitted.rglob("*"))
    p = tmp_path / filename
    p.write_text(text)
    assert main(["submit", str(p), "--store", str(submitted)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    one_error_line(out.err, *needles)
    assert count_objects(submitted) == 1
    assert sorted(p.relative_to(submitted) for p in submitted.rglob("*")) == before


def test_malformed_spec_never_creates_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write_spec(tmp_path / "bad.json", bad_spec(lambda d: d.update(name="a/b")))
    assert main(["submit", str(p), "--store", str(tmp_path / "new-store")]) == 2
    one_error_line(capsys.readouterr().err, "name")
    assert not (tmp_path / "new-store").exists()


@pytest.mark.parametrize("case", ["bad-json", "name-newline", "unknown-distribution", "model-control"])
def test_malformed_spec_as_a_real_process(submitted: Path, tmp_path: Path, case: str) -> None:
    if case == "bad-json":
        p = tmp_path / "bad.json"
        p.write_text('{"name": ')
        needles = ["bad.json", "JSON"]
    else:
        (mutation, field), = [(m, f) for i, m, f in BAD_SPECS if i == case]
        p = write_spec(tmp_path / "spec.json", bad_spec(mutation))
        needles = [f"{field}: "]
    r = run_cli("submit", str(p), "--store", str(submitted))
    assert r.returncode == 2
    assert r.stdout == ""
    line = one_error_line(r.stderr, *needles)
    if case == "name-newline":
        assert "\\n" in line  # escaped, so the message stays one line
    assert count_objects(submitted) == 1


def test_missing_spec_file(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["submit", str(root / "nope.json"), "--store", str(root)]) == 2
    one_error_line(capsys.readouterr().err, "nope.json", "does not exist")
    assert not root.exists()


def test_usage_error_is_one_line_exit_2() -> None:
    r = run_cli("submit")
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("s3exp submit: error: "), r.stderr
    assert "spec" in lines[0]


# -- bad store URLs ------------------------------------------------------------------


@pytest.mark.parametrize("url, needle", [
    ("ftp://x", "ftp"),
    ("s3://Bad_Bucket", "Bad_Bucket"),
    ("s3://bucket/../x", ".."),
    ("s3://b", "'b'"),
    ("s3://bucket/ok/.hidden", ".hidden"),
    ("s3://bucket?versionId=1", "query"),
    ("file://otherhost/dir", "host"),
    ("", "empty"),
])
def test_bad_store_url(url: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    assert main(["submit", str(GROUPED), "--store", url]) == 2
    one_error_line(capsys.readouterr().err, needle)
    assert list(tmp_path.iterdir()) == []


def test_bad_store_url_as_a_real_process(tmp_path: Path) -> None:
    r = run_cli("submit", str(GROUPED), "--store", "s3://Bad_Bucket", cwd=tmp_path)
    assert r.returncode == 2
    one_error_line(r.stderr, "Bad_Bucket")
    assert list(tmp_path.iterdir()) == []


def test_bad_endpoint_url(tmp_path: Path) -> None:
    r = run_cli("submit", str(GROUPED), "--store", "s3://bucket", "--endpoint-url", "localhost:9000",
                cwd=tmp_path)
    assert r.returncode == 2
    one_error_line(r.stderr, "localhost:9000")


# -- against SeaweedFS ---------------------------------------------------------------


def _objects(store: Any) -> list[str]:
    return [m.key for m in store.list("")]


@pytest.mark.seaweed
def test_submit_to_seaweed_and_again(seaweed: SeaweedServer, seaweed_bucket: MakeS3Store) -> None:
    bucket = seaweed_bucket("")
    url = f"s3://{bucket.bucket}/proj"
    r = run_cli("submit", str(GROUPED), "--store", url, env=seaweed.env())
    assert r.returncode == 0, r.stderr
    assert _objects(bucket) == ["proj/" + SPEC_KEY]
    r = run_cli("submit", str(GROUPED), "--store", url, env=seaweed.env())
    assert r.returncode == 0, r.stderr
    assert "nothing to do" in r.stdout
    r = run_cli("list", "--store", url, env=seaweed.env())
    assert r.returncode == 0 and r.stdout.split() == ["testExp0"]
    # the endpoint can come from the flag instead of the environment
    env = seaweed.env()
    endpoint = env.pop("AWS_ENDPOINT_URL")
    r = run_cli("show", "testExp0", "--json", "--store", url, "--endpoint-url", endpoint, env=env)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["runs"]) == 90


@pytest.mark.seaweed
@pytest.mark.parametrize("case", ["runs-per-pair-abc", "dataset-dotdot"])
def test_malformed_spec_writes_nothing_to_seaweed(seaweed: SeaweedServer, seaweed_bucket: MakeS3Store,
                                                  tmp_path: Path, case: str) -> None:
    bucket = seaweed_bucket("")
    url = f"s3://{bucket.bucket}"
    assert run_cli("submit", str(FLAT_GRID), "--store", url, env=seaweed.env()).returncode == 0
    before = _objects(bucket)
    (mutation, field), = [(m, f) for i, m, f in BAD_SPECS if i == case]
    p = write_spec(tmp_path / "spec.json", bad_spec(mutation))
    r = run_cli("submit", str(p), "--store", url, env=seaweed.env())
    assert r.returncode == 2
    one_error_line(r.stderr, f"{field}: ")
    assert _objects(bucket) == before == ["experiments/flatGrid.json"]


@pytest.mark.seaweed
def test_conflicting_spec_on_seaweed(seaweed: SeaweedServer, seaweed_bucket: MakeS3Store,
                                     tmp_path: Path) -> None:
    bucket = seaweed_bucket("")
    url = f"s3://{bucket.bucket}"
    assert run_cli("submit", str(GROUPED), "--store", url, env=seaweed.env()).returncode == 0
    stored = bucket.get(SPEC_KEY)
    p = write_spec(tmp_path / "g.json", grouped() | {"seed": 4})
    r = run_cli("submit", str(p), "--store", url, env=seaweed.env())
    assert r.returncode == 2
    one_error_line(r.stderr, "seed", load_spec(p).spec_hash[:12])
    after = bucket.get(SPEC_KEY)
    assert after.data == stored.data and after.etag == stored.etag
    assert _objects(bucket) == [SPEC_KEY]


@pytest.mark.seaweed
def test_missing_credentials(seaweed: SeaweedServer, seaweed_bucket: MakeS3Store, tmp_path: Path) -> None:
    bucket = seaweed_bucket("")
    home = tmp_path / "home"
    home.mkdir()
    r = run_cli("submit", str(GROUPED), "--store", f"s3://{bucket.bucket}",
                env={"HOME": str(home), "AWS_ENDPOINT_URL": seaweed.endpoint_url}, cwd=tmp_path)
    assert r.returncode == 2
    one_error_line(r.stderr, "credentials")
    assert _objects(bucket) == []


@pytest.mark.seaweed
def test_wrong_credentials(seaweed: SeaweedServer, seaweed_bucket: MakeS3Store, tmp_path: Path) -> None:
    bucket = seaweed_bucket("")
    env = seaweed.env() | {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    r = run_cli("submit", str(GROUPED), "--store", f"s3://{bucket.bucket}", env=env, cwd=tmp_path)
    assert r.returncode == 2
    one_error_line(r.stderr, "credentials")
    env = seaweed.env() | {"AWS_ACCESS_KEY_ID": "nobody"}
    r = run_cli("list", "--store", f"s3://{bucket.bucket}", env=env, cwd=tmp_path)
    assert r.returncode == 2
    one_error_line(r.stderr, "credentials")
    assert _objects(bucket) == []


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port that was free a moment ago; nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "k",
           "AWS_SECRET_ACCESS_KEY": "s", "HOME": str(tmp_path)}
    r = run_cli("submit", str(GROUPED), "--store", "s3://bucket", env=env, cwd=tmp_path, timeout=30)
    assert r.returncode == 3  # not the user's input: the store cannot be reached
    assert r.stdout == ""
    one_error_line(r.stderr, "cannot reach S3 endpoint", f"127.0.0.1:{port}")
    assert list(tmp_path.iterdir()) == []


# -- concurrent submits --------------------------------------------------------------

_GATED_CLI = """
import os, sys, time
import s3exp.cli
gate = sys.argv[1]
while not os.path.exists(gate):
    time.sleep(0.005)
sys.exit(s3exp.cli.main(sys.argv[2:]))
"""


@pytest.mark.seaweed
def test_eight_concurrent_submits_leave_one_spec(seaweed: SeaweedServer, seaweed_bucket: MakeS3Store,
                                                 tmp_path: Path) -> None:
    bucket = seaweed_bucket("")
    gate = tmp_path / "go"
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env = base | seaweed.env()
    # Each process imports s3exp first, then all are released at once by the gate file.
    procs = [subprocess.Popen([sys.executable, "-c", _GATED_CLI, str(gate), "submit", str(GROUPED),
                               "--store", f"s3://{bucket.bucket}"],
                              env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for _ in range(8)]
    time.sleep(2.0)  # let them finish importing (not a correctness condition)
    gate.touch()
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    for out, err, code in results:
        assert code == 0, err
        assert err == ""
    created = [out for out, _, _ in results if out.startswith("submitted testExp0")]
    noops = [out for out, _, _ in results if "already submitted" in out]
    assert len(created) == 1 and len(noops) == 7, results
    assert _objects(bucket) == [SPEC_KEY]
    assert json.loads(bucket.get(SPEC_KEY).data)["spec_hash"] == load_spec(GROUPED).spec_hash


def test_worker_processes_run_every_run_once_under_numbered_worker_ids(root: Path) -> None:
    spec = root.parent / "fan.json"
    spec.write_text(json.dumps({"name": "fan", "runs_per_pair": 12,
                                "parameters": {"lr": {"min": 0.0, "max": 1.0}}}))
    assert run_cli("submit", str(spec), "--store", str(root)).returncode == 0
    proc = run_cli("worker", "fan", "--store", str(root), "--processes", "2", "--worker-id", "lab",
                   "--", sys.executable, "-c", "import time; time.sleep(0.05)", timeout=120)
    assert proc.returncode == 0, proc.stderr
    bodies = [json.loads(p.read_text()) for p in (root / "runs" / "fan").glob("*/result-0001.json")]
    assert len(bodies) == 12 and len({b["run_id"] for b in bodies}) == 12
    assert {b["worker"] for b in bodies} <= {"lab-1", "lab-2"}
    assert "s3exp worker lab-1:" in proc.stderr and "s3exp worker lab-2:" in proc.stderr
    # A worker id that cannot name N processes is refused before any process starts.
    bad = run_cli("worker", "fan", "--store", str(root), "--processes", "2",
                  "--worker-id", "x" * 200, "--", "true")
    assert bad.returncode == 2
    one_error_line(bad.stderr, "worker id")


# -- exit statuses ---------------------------------------------------------------------


def _submit_flat(root: Path, name: str, runs: int, **fields: Any) -> None:
    spec = root.parent / f"{name}.json"
    write_spec(spec, {"name": name, "runs_per_pair": runs, **fields,
                      "parameters": {"x": {"min": 0.0, "max": 1.0}}})
    r = run_cli("submit", str(spec), "--store", str(root))
    assert r.returncode == 0, r.stderr


def _leases(root: Path, exp: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((root / "runs" / exp).glob("*/lease.json"))]


def test_worker_exits_1_when_runs_fail_and_0_when_they_complete(root: Path) -> None:
    _submit_flat(root, "doomed", 3, max_attempts=2)
    r = run_cli("worker", "doomed", "--store", str(root), "--",
                sys.executable, "-c", "import sys; sys.exit(1)", timeout=120)
    assert r.returncode == 1, r.stderr
    assert "0 completed, 6 failed" in r.stderr
    assert [(x["state"], x["attempt"]) for x in _leases(root, "doomed")] == [("failed", 2)] * 3

    # A run whose first attempt fails and whose retry completes counts as completed.
    _submit_flat(root, "flaky", 2, max_attempts=2)
    r = run_cli("worker", "flaky", "--store", str(root), "--", sys.executable, "-c",
                "import sys; sys.exit(0 if sys.argv[1] == '2' else 1)", "{attempt}", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 completed, 2 failed" in r.stderr

    _submit_flat(root, "fine", 3)
    r = run_cli("worker", "fine", "--store", str(root), "--", sys.executable, "-c", "pass",
                timeout=120)
    assert r.returncode == 0, r.stderr
    assert "3 completed, 0 failed" in r.stderr
    assert len(list((root / "runs" / "fine").glob("*/result-0001.json"))) == 3


def test_worker_processes_exit_1_when_runs_fail(root: Path) -> None:
    _submit_flat(root, "doomed", 2, max_attempts=1)
    r = run_cli("worker", "doomed", "--store", str(root), "--processes", "2", "--",
                sys.executable, "-c", "import sys; sys.exit(1)", timeout=120)
    assert r.returncode == 1, r.stderr
    assert [x["state"] for x in _leases(root, "doomed")] == ["failed"] * 2


@pytest.mark.parametrize("error, code", [
    (DamagedObject("experiments/x.json", "not JSON"), 4),
    (Unavailable("S3 kept failing for s3://b (503)"), 3),
    (Conflict("the lease changed"), 3),
    (NotFoundError("no experiment 'x' in ./s3exp-store"), 2),
    (SpecConflict("x", "a" * 64, "b" * 64, "seed"), 2),
    (ConfigError("bucket 'b' does not exist"), 2),
    (S3ExpError("anything else"), 2),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v))
def test_error_classes_map_to_exit_statuses(submitted: Path, error: S3ExpError, code: int,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # The records that raise DamagedObject are read by library code; here only the
    # mapping is under test, so the library call raises it.
    def experiment_status(store: Any, exp: str, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr("s3exp.ops.experiment_status", experiment_status)  # where the CLI looks
    assert main(["status", "testExp0", "--store", str(submitted)]) == code
    out = capsys.readouterr()
    assert out.out == ""
    one_error_line(out.err, str(error))


def test_damaged_object_is_one_escaped_line(submitted: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def experiment_status(store: Any, exp: str, **kwargs: Any) -> Any:
        raise DamagedObject("experiments/x.json", "not JSON:\n\x1b[2J{")

    monkeypatch.setattr("s3exp.ops.experiment_status", experiment_status)  # where the CLI looks
    assert main(["status", "testExp0", "--store", str(submitted)]) == 4
    line = one_error_line(capsys.readouterr().err)
    assert line == "s3exp: error: damaged object experiments/x.json: not JSON:\\n\\x1b[2J{"


def test_the_exit_statuses_are_in_the_help() -> None:
    text = build_parser().format_help()
    for code in ("0", "1", "2", "3", "4", "130", "143"):
        assert f"\n  {code} " in text, code
    worker = run_cli("worker", "--help")
    assert worker.returncode == 0
    assert "-- COMMAND ..." in worker.stdout
    assert "exits with 1 when the last attempt" in " ".join(worker.stdout.split())


# -- "--" is only for a command line -----------------------------------------------------


def test_double_dash_after_a_command_without_a_command_line(submitted: Path) -> None:
    # tests/bad_inputs/ has more commands; this is one with no positional argument and a
    # bare "--" at the end, which argparse alone would have accepted.
    r = run_cli("list", "--store", str(submitted), "--")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines == ["s3exp list: error: s3exp list takes no command line after '--' "
                     "(only s3exp worker does) (see s3exp list --help)"], r.stderr


def test_the_command_line_goes_to_the_worker_as_its_template(root: Path) -> None:
    _submit_flat(root, "echo", 1)
    out = root.parent / "seen.txt"
    # Options after "--" belong to the command line, not to s3exp.
    r = run_cli("worker", "echo", "--store", str(root), "--", sys.executable, "-c",
                "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))",
                str(out), "--store", "{run_id}", "--", "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    (slot,) = expand(load_spec(root.parent / "echo.json"))
    assert out.read_text() == f"--store {slot.run_id} -- -q"


# -- logging: -v and -q ------------------------------------------------------------------


def _logs_every_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """``s3exp list`` whose library call logs one message at each level."""
    def list_experiments(store: Any) -> list[str]:
        log = logging.getLogger("s3exp.specs._experiments")
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
            log.log(level, "%s note", logging.getLevelName(level).lower())
        return []

    # The CLI takes it from the package (which caches what it loaded) or the module.
    monkeypatch.setattr(s3exp, "list_experiments", list_experiments, raising=False)
    monkeypatch.setattr("s3exp.specs._experiments.list_experiments", list_experiments)


@pytest.mark.parametrize("flags, shown", [
    ([], ["info", "warning", "error"]),
    (["-v"], ["debug", "info", "warning", "error"]),
    (["--verbose"], ["debug", "info", "warning", "error"]),
    (["-q"], ["error"]),
    (["--quiet"], ["error"]),
], ids=["default", "-v", "--verbose", "-q", "--quiet"])
def test_verbose_and_quiet_choose_what_the_s3exp_logger_lets_through(
        root: Path, flags: list[str], shown: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _logs_every_level(monkeypatch)
    logger = logging.getLogger("s3exp")
    before = (logger.level, logger.propagate, list(logger.handlers))
    assert main([*flags, "list", "--store", str(root)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("no experiments in")  # results stay on stdout
    assert out.err.splitlines() == [f"s3exp: {level} note" for level in shown]
    # main may be called in-process: the logger is left as it was found.
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_a_library_warning_reaches_stderr_unless_quiet(root: Path) -> None:
    _submit_flat(root, "fine", 1)
    # A cost record that is not one: compaction succeeds, but recording its requests
    # fails, and the library logs a warning rather than raising.
    record = root / "costs" / "fine" / "compactor.json"
    record.parent.mkdir(parents=True)
    record.write_text("not a cost record")
    r = run_cli("compact", "fine", "--store", str(root))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("fine: generation ")
    assert r.stderr.splitlines() == [
        "s3exp: could not record the compaction's request counts for fine: damaged object "
        "costs/fine/compactor.json: not JSON (Expecting value: line 1 column 1 (char 0))"]
    assert record.read_text() == "not a cost record"  # a damaged record is not overwritten
    quiet = run_cli("-q", "compact", "fine", "--store", str(root))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.startswith("fine: generation")
    assert quiet.stderr == ""
