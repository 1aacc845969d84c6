"""Run the bad-input corpus (``cases.py``) through the real CLI, one subprocess per case.

For every case: its exit status (2 unless the case says otherwise), exactly one
``s3exp: error: ...`` line on stderr that names the problem (the case's needles), no
traceback, nothing on stdout, and nothing written anywhere: the store, the working
directory and the scratch directory are unchanged, and a SeaweedFS bucket holds exactly
the objects it held before.

Each case is its own test item (``test_bad_input[spec/min-gt-max]``), but the
subprocesses of all selected cases are started together in a small thread pool by a
module fixture, so the corpus costs a few seconds of wall time rather than one CLI
start-up per case in series.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from s3exp import load_spec
from s3exp.core._errors import ConfigError
from s3exp.devserver._seaweed import SeaweedServer
from s3exp.specs._experiments import submit
from s3exp.stores import FileStore, S3Store

from ._fake_endpoint import HtmlEndpoint, free_port
from .cases import CASES, HTML_KINDS, SEAWEED_KINDS, Case

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SPECS = HERE / "specs"
EXAMPLES = REPO / "examples"
GROUPED = EXAMPLES / "grouped.json"
POOL = 4
TIMEOUT = 60.0
ERROR_LINE = re.compile(r"^s3exp(?: [a-z][a-z-]*)*: error: \S")  # "s3exp worker: error: ..." too

LOCAL = [c for c in CASES if not c.needs_seaweed]
SEAWEED = [c for c in CASES if c.needs_seaweed]


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    needles: tuple[str, ...]
    before: dict[str, str]
    after: dict[str, str]
    requests: int  # requests the fake HTML endpoint received (html-* stores only)
    seconds: float


# -- running one case -----------------------------------------------------------------


def _tree(root: Path) -> dict[str, str]:
    """Every file and directory under ``root``, with a hash of each file's bytes."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "symlink -> " + os.readlink(p)
        elif p.is_dir():
            out[rel] = "directory"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    return out


def _bucket(admin: S3Store | None) -> dict[str, str]:
    """The objects of an S3 store as ``{"s3:key": etag}``, or a marker if there is no bucket."""
    if admin is None:
        return {}
    try:
        return {f"s3:{m.key}": m.etag for m in admin.list("")}
    except ConfigError as e:
        return {"s3:": f"no bucket ({e})"}


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "S3EXP_"))}
    return env | {
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",  # never wait for an instance metadata service
    }


def run_case(case: Case, base: Path, seaweed: SeaweedServer | None) -> Outcome:
    tmp = base / re.sub(r"[^A-Za-z0-9_.-]", "_", case.id)
    cwd, home = tmp / "cwd", tmp / "home"
    for d in (cwd, home):
        d.mkdir(parents=True)
    (tmp / "regular-file").write_text("I am a file, not a store.\n")
    env = _base_env(home)
    endpoint = bucket = ""
    admin: S3Store | None = None
    with ExitStack() as stack:
        html: HtmlEndpoint | None = None
        if case.store == "dir":
            store_url = str(tmp / "store")
            if case.seeded:
                submit(FileStore(store_url), load_spec(GROUPED))
        elif case.store in SEAWEED_KINDS:
            assert seaweed is not None, "a SeaweedFS case needs the seaweed fixture"
            bucket = f"bad-{uuid.uuid4().hex[:12]}"
            admin = seaweed.bucket_store(bucket, "proj")
            stack.callback(admin.close)
            if case.store == "s3":
                admin.create_bucket()
                if case.seeded:
                    submit(admin, load_spec(GROUPED))
            store_url = f"s3://{bucket}/proj"
            endpoint = seaweed.endpoint_url
            env |= seaweed.env()
        else:
            if case.store in HTML_KINDS:
                html = stack.enter_context(HtmlEndpoint(int(case.store.rsplit("-", 1)[1])))
                endpoint = html.url
            else:  # refused
                endpoint = f"http://127.0.0.1:{free_port()}"
            store_url = "s3://bucket"
            env |= {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                    "AWS_SECRET_ACCESS_KEY": "not-a-secret", "AWS_REGION": "us-east-1"}

        subs = {"{store}": store_url, "{specs}": str(SPECS), "{examples}": str(EXAMPLES),
                "{tmp}": str(tmp), "{file}": str(tmp / "regular-file"), "{endpoint}": endpoint,
                "{bucket}": bucket}

        def fill(text: str) -> str:
            for k, v in subs.items():
                text = text.replace(k, v)
            return text

        for k, v in case.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = fill(v)
        argv = [sys.executable, "-m", "s3exp", *(fill(a) for a in case.argv)]

        before = _tree(tmp) | _bucket(admin)
        t0 = time.monotonic()
        r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        seconds = time.monotonic() - t0
        after = _tree(tmp) | _bucket(admin)
        requests = sum(html.methods.values()) if html is not None else 0
    return Outcome(r.returncode, r.stdout, r.stderr, tuple(fill(n) for n in case.needles),
                   before, after, requests, seconds)


def _run_all(cases: list[Case], base: Path, seaweed: SeaweedServer | None) -> dict[str, Outcome | BaseException]:
    with ThreadPoolExecutor(POOL) as pool:
        futures = {c.id: pool.submit(run_case, c, base, seaweed) for c in cases}
    results: dict[str, Outcome | BaseException] = {}
    for cid, f in futures.items():
        exc = f.exception()
        results[cid] = exc if exc is not None else f.result()
    return results


def _selected(request: pytest.FixtureRequest, test: str) -> list[Case]:
    """The cases of ``test`` that this session will run (after -k, -m, --lf ...)."""
    chosen: list[Case] = []
    for item in request.session.items:
        if isinstance(item, pytest.Function) and item.originalname == test and item.module is request.module:
            case = item.callspec.params["case"]
            assert isinstance(case, Case)
            chosen.append(case)
    return chosen


Outcomes = dict[str, "Outcome | BaseException"]


@pytest.fixture(scope="module")
def local_outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcomes]:
    yield _run_all(_selected(request, "test_bad_input"), tmp_path_factory.mktemp("bad-local"), None)


@pytest.fixture(scope="module")
def seaweed_outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                     seaweed: SeaweedServer) -> Iterator[Outcomes]:
    yield _run_all(_selected(request, "test_bad_input_s3"), tmp_path_factory.mktemp("bad-s3"), seaweed)


# -- the assertions ---------------------------------------------------------------------


def _diff(before: dict[str, str], after: dict[str, str]) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return f"added {added}, removed {removed}, changed {changed}"


def check(case: Case, outcome: Outcome | BaseException) -> None:
    if isinstance(outcome, BaseException):
        raise outcome
    out = outcome
    report = (f"{case.id}: exit status {out.returncode} after {out.seconds:.1f}s\n"
              f"--- stderr ---\n{out.stderr}--- stdout ---\n{out.stdout}")
    assert "Traceback" not in out.stderr, report
    assert out.returncode == case.exit_status, report
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and out.stderr.endswith("\n"), f"not exactly one line\n{report}"
    line = lines[0]
    assert ERROR_LINE.match(line), f"not an 's3exp: error:' line\n{report}"
    missing = [n for n in out.needles if n not in line]
    assert not missing, f"the error does not name the problem: missing {missing}\n{report}"
    assert out.stdout == "", report
    assert out.after == out.before, f"something was written: {_diff(out.before, out.after)}\n{report}"
    if case.store in HTML_KINDS:
        assert out.requests == 1, f"{out.requests} requests to a server that is not S3\n{report}"


@pytest.mark.parametrize("case", LOCAL, ids=[c.id for c in LOCAL])
def test_bad_input(case: Case, local_outcomes: Outcomes, tmp_path: Path) -> None:
    # A case the fixture did not foresee (an unusual plugin's selection) runs here, alone.
    check(case, local_outcomes.get(case.id) or run_case(case, tmp_path, None))


@pytest.mark.seaweed
@pytest.mark.parametrize("case", SEAWEED, ids=[c.id for c in SEAWEED])
def test_bad_input_s3(case: Case, seaweed_outcomes: Outcomes, tmp_path: Path,
                      seaweed: SeaweedServer) -> None:
    check(case, seaweed_outcomes.get(case.id) or run_case(case, tmp_path, seaweed))


# -- the corpus itself ------------------------------------------------------------------


def test_corpus_covers_every_category() -> None:
    by_category: dict[str, int] = {}
    for c in CASES:
        by_category[c.category] = by_category.get(c.category, 0) + 1
    assert len(CASES) >= 40
    for category in ("spec", "name", "url", "creds", "endpoint", "cli"):
        assert by_category.get(category, 0) >= 5, by_category
    assert {c.store for c in CASES} >= {"dir", "s3", "s3-no-bucket", "html-200", "html-404", "refused"}


def test_only_an_unreachable_store_is_not_the_users_input() -> None:
    # Exit status 3 says "try again later", 2 "fix what you typed": a case that expects
    # one where the other belongs would teach the CLI the wrong answer.
    for c in CASES:
        assert c.exit_status == (3 if c.store == "refused" else 2), c.id


def test_every_spec_file_has_a_case() -> None:
    used = {a.removeprefix("{specs}/") for c in CASES for a in c.argv if a.startswith("{specs}/")}
    files = {p.name for p in SPECS.iterdir()}
    assert files - used == set(), "spec files no case uses"
    assert used - files == {"no-such-spec.json"}, "cases naming spec files that do not exist"
