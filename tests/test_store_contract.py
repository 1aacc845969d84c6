"""The store contract: one suite, run against every backend (memory, file, moto, SeaweedFS).

Everything above the store is written against these promises, so each one is checked
on each backend with the same code.  Concurrency is not tested here (see test_races.py):
moto is in the list, and moto is not atomic under concurrent requests.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from s3exp import AlreadyExists, Conflict, ObjectNotFound, StoreError, Unavailable
from s3exp.stores import FileStore, ObjectMeta, RetryPolicy, S3Store, Store

from .conftest import MakeS3Store

# Generous: the point is "the same clock", not "a fast server".  S3's Date and
# Last-Modified headers have a resolution of one second.
CLOCK_SLACK = timedelta(seconds=10)

HOSTILE_KEYS = ["../x", "a/../b", "/abs", ".hidden/x", "a/.hidden", "a//b", "a\x00b",
                "a\nb", "a/", "", ".", "..", "a/./b"]


def keys(metas: object) -> list[str]:
    return [m.key for m in metas]  # type: ignore[attr-defined]


def assert_aware_utc(t: datetime) -> None:
    assert t.tzinfo is not None and t.utcoffset() == timedelta(0), t


class TestStoreContract:
    # -- reads of missing keys ----------------------------------------------------

    def test_get_missing_raises_object_not_found(self, store: Store) -> None:
        with pytest.raises(ObjectNotFound) as e:
            store.get("nope/missing.json")
        assert isinstance(e.value, StoreError)
        assert e.value.key == "nope/missing.json"

    def test_head_missing_raises_object_not_found(self, store: Store) -> None:
        with pytest.raises(ObjectNotFound):
            store.head("nope/missing.json")

    # -- create-only ----------------------------------------------------------------

    def test_put_if_absent_then_get_and_head_agree(self, store: Store) -> None:
        data = bytes(range(256)) * 3 + "ünïcødé".encode()
        meta = store.put_if_absent("runs/e/r0/lease.json", data)
        assert isinstance(meta, ObjectMeta)
        assert meta.key == "runs/e/r0/lease.json"
        assert meta.size == len(data)
        blob = store.get("runs/e/r0/lease.json")
        head = store.head("runs/e/r0/lease.json")
        assert blob.data == data
        assert blob.meta.key == head.key == "runs/e/r0/lease.json"
        assert blob.etag == head.etag == meta.etag
        assert blob.meta.size == head.size == len(data)

    def test_empty_body(self, store: Store) -> None:
        meta = store.put_if_absent("empty", b"")
        assert store.get("empty").data == b""
        assert store.head("empty").size == 0
        assert store.head("empty").etag == meta.etag

    def test_second_put_if_absent_raises_already_exists(self, store: Store) -> None:
        first = store.put_if_absent("k.json", b"first")
        with pytest.raises(AlreadyExists) as e:
            store.put_if_absent("k.json", b"second")
        assert e.value.key == "k.json"
        blob = store.get("k.json")
        assert blob.data == b"first"
        assert blob.etag == first.etag

    def test_same_body_again_still_already_exists(self, store: Store) -> None:
        store.put_if_absent("k.json", b"same")
        with pytest.raises(AlreadyExists):
            store.put_if_absent("k.json", b"same")

    # -- compare-and-swap -----------------------------------------------------------

    def test_put_if_match_with_current_etag_replaces(self, store: Store) -> None:
        v1 = store.put_if_absent("c", b"version 1")
        v2 = store.put_if_match("c", b"version 2", v1.etag)
        assert v2.etag != v1.etag
        assert v2.size == len(b"version 2")
        blob = store.get("c")
        assert blob.data == b"version 2"
        assert blob.etag == v2.etag == store.head("c").etag
        # and again, from the etag the last write returned
        v3 = store.put_if_match("c", b"version 3", v2.etag)
        assert store.get("c").data == b"version 3"
        assert v3.etag not in (v1.etag, v2.etag)

    def test_put_if_match_with_stale_etag_conflicts(self, store: Store) -> None:
        v1 = store.put_if_absent("c", b"version 1")
        v2 = store.put_if_match("c", b"version 2", v1.etag)
        with pytest.raises(Conflict) as e:
            store.put_if_match("c", b"version 3", v1.etag)
        assert e.value.key == "c"
        blob = store.get("c")
        assert blob.data == b"version 2"
        assert blob.etag == v2.etag

    def test_put_if_match_with_made_up_etag_conflicts(self, store: Store) -> None:
        store.put_if_absent("c", b"version 1")
        with pytest.raises(Conflict):
            store.put_if_match("c", b"version 2", '"0123456789abcdef0123456789abcdef"')
        assert store.get("c").data == b"version 1"

    def test_put_if_match_on_missing_key_conflicts_and_creates_nothing(self, store: Store) -> None:
        with pytest.raises(Conflict) as e:
            store.put_if_match("missing", b"x", '"0123456789abcdef0123456789abcdef"')
        # "changed or gone" is one condition: never reported as not-found
        assert not isinstance(e.value, ObjectNotFound)
        with pytest.raises(ObjectNotFound):
            store.head("missing")

    def test_put_if_match_on_deleted_key_conflicts(self, store: Store) -> None:
        v1 = store.put_if_absent("c", b"version 1")
        store.delete_if_match("c", v1.etag)
        with pytest.raises(Conflict):
            store.put_if_match("c", b"version 2", v1.etag)
        with pytest.raises(ObjectNotFound):
            store.get("c")

    # -- conditional delete ---------------------------------------------------------

    def test_delete_if_match_with_wrong_etag_conflicts_and_keeps_object(self, store: Store) -> None:
        v1 = store.put_if_absent("d", b"keep me")
        v2 = store.put_if_match("d", b"keep me too", v1.etag)
        with pytest.raises(Conflict):
            store.delete_if_match("d", v1.etag)
        blob = store.get("d")
        assert blob.data == b"keep me too"
        assert blob.etag == v2.etag

    def test_delete_if_match_with_right_etag_deletes(self, store: Store) -> None:
        store.put_if_absent("d/other", b"stays")
        meta = store.put_if_absent("d/gone", b"bye")
        store.delete_if_match("d/gone", meta.etag)
        with pytest.raises(ObjectNotFound):
            store.get("d/gone")
        with pytest.raises(ObjectNotFound):
            store.head("d/gone")
        assert keys(store.list("d/")) == ["d/other"]
        # a deleted key can be created again
        again = store.put_if_absent("d/gone", b"back")
        assert store.get("d/gone").data == b"back"
        assert store.head("d/gone").etag == again.etag

    def test_delete_if_match_on_missing_key_conflicts(self, store: Store) -> None:
        with pytest.raises(Conflict) as e:
            store.delete_if_match("missing", '"0123456789abcdef0123456789abcdef"')
        assert not isinstance(e.value, ObjectNotFound)

    def test_second_delete_with_same_etag_conflicts(self, store: Store) -> None:
        meta = store.put_if_absent("d", b"x")
        store.delete_if_match("d", meta.etag)
        with pytest.raises(Conflict):
            store.delete_if_match("d", meta.etag)

    # -- list -----------------------------------------------------------------------

    def test_list_is_sorted_and_limited_to_the_prefix(self, store: Store) -> None:
        # Written out of order; "-" < "/" < "0" in byte order, which a directory walk
        # that lists a directory's contents at the directory's name would get wrong.
        written = ["b/1", "a/bc/d", "ab", "a/b0", "a/c", "a/b/x", "a/b-1", "a/b/y/z"]
        for i, k in enumerate(written):
            store.put_if_absent(k, f"body {i}".encode())
        assert keys(store.list("")) == sorted(written, key=str.encode)
        assert keys(store.list("a/b")) == ["a/b-1", "a/b/x", "a/b/y/z", "a/b0", "a/bc/d"]
        assert keys(store.list("a/b/")) == ["a/b/x", "a/b/y/z"]
        assert keys(store.list("a/")) == ["a/b-1", "a/b/x", "a/b/y/z", "a/b0", "a/bc/d", "a/c"]
        assert keys(store.list("a")) == ["a/b-1", "a/b/x", "a/b/y/z", "a/b0", "a/bc/d", "a/c", "ab"]
        assert keys(store.list("a/c")) == ["a/c"]
        assert keys(store.list("a/bc/")) == ["a/bc/d"]
        assert keys(store.list("zzz")) == []
        assert keys(store.list("a/q/")) == []
        assert keys(store.list("b/1/")) == []

    def test_list_partial_segment_prefix(self, store: Store) -> None:
        store.put_if_absent("a/bc/d", b"1")
        store.put_if_absent("a/bcd", b"2")
        store.put_if_absent("a/x/bc", b"3")
        assert keys(store.list("a/b")) == ["a/bc/d", "a/bcd"]
        assert keys(store.list("a/bc")) == ["a/bc/d", "a/bcd"]
        assert keys(store.list("a/bc/d")) == ["a/bc/d"]

    def test_list_zero_padded_numbers_in_numeric_order(self, store: Store) -> None:
        numbers = [10, 2, 100, 1, 0, 99, 11, 1000]
        for n in numbers:
            store.put_if_absent(f"staging/e/r/0001/{n:06d}.parquet", str(n).encode())
        listed = keys(store.list("staging/e/r/0001/"))
        assert [int(k.rsplit("/", 1)[1].split(".")[0]) for k in listed] == sorted(numbers)

    def test_list_metadata_matches_head(self, store: Store) -> None:
        store.put_if_absent("m/a", b"12345")
        v = store.put_if_absent("m/b", b"1")
        store.put_if_match("m/b", b"123", v.etag)
        listed = {m.key: m for m in store.list("m/")}
        assert set(listed) == {"m/a", "m/b"}
        for k, m in listed.items():
            h = store.head(k)
            assert m.etag == h.etag
            assert m.size == h.size
            assert_aware_utc(m.last_modified)
        assert listed["m/a"].size == 5 and listed["m/b"].size == 3

    def test_list_does_not_show_deleted_objects(self, store: Store) -> None:
        a = store.put_if_absent("l/a", b"a")
        store.put_if_absent("l/b", b"b")
        store.delete_if_match("l/a", a.etag)
        assert keys(store.list("l/")) == ["l/b"]

    def test_list_pages_through_many_objects(self, store: Store) -> None:
        # More than one page would need 1000+ objects; this checks that a listing of a
        # few dozen is complete and ordered (the paging loop runs at least once).
        for n in range(40):
            store.put_if_absent(f"p/{n:04d}", b"x")
        assert keys(store.list("p/")) == [f"p/{n:04d}" for n in range(40)]

    # -- clocks ---------------------------------------------------------------------

    def test_server_time_is_aware_utc_and_moves_forward(self, store: Store) -> None:
        t1 = store.server_time()
        assert_aware_utc(t1)
        store.put_if_absent("tick", b"x")  # an S3 store re-reads the clock from the reply
        # S3's Date header has one-second resolution: wait long enough that even a
        # truncated re-reading must be later than t1.
        time.sleep(1.05 if isinstance(store, S3Store) else 0.02)
        t2 = store.server_time()
        assert_aware_utc(t2)
        assert t2 > t1

    def test_last_modified_is_aware_and_on_the_server_clock(self, store: Store) -> None:
        before = store.server_time()
        put = store.put_if_absent("t", b"x")
        after = store.server_time()
        for t in (put.last_modified, store.head("t").last_modified,
                  store.get("t").meta.last_modified, next(iter(store.list("t"))).last_modified):
            assert_aware_utc(t)
            assert before - CLOCK_SLACK <= t <= after + CLOCK_SLACK

    def test_last_modified_moves_with_a_rewrite(self, store: Store) -> None:
        v1 = store.put_if_absent("t", b"1")
        time.sleep(1.05 if isinstance(store, S3Store) else 0.02)
        store.put_if_match("t", b"2", v1.etag)
        assert store.head("t").last_modified > v1.last_modified

    # -- hostile keys ---------------------------------------------------------------

    def test_hostile_keys_are_refused_and_write_nothing(self, store: Store, tmp_path: Path) -> None:
        store.put_if_absent("real", b"real")
        etag = store.head("real").etag
        for key in HOSTILE_KEYS:
            ops = {
                "get": lambda: store.get(key),
                "head": lambda: store.head(key),
                "put_if_absent": lambda: store.put_if_absent(key, b"evil"),
                "put_if_match": lambda: store.put_if_match(key, b"evil", etag),
                "delete_if_match": lambda: store.delete_if_match(key, etag),
            }
            for op, call in ops.items():
                with pytest.raises(StoreError) as e:
                    call()
                # refused as a bad key, not answered as if it were a real one
                assert not isinstance(e.value, (ObjectNotFound, AlreadyExists, Conflict)), (op, key)
        assert keys(store.list("")) == ["real"]
        assert store.get("real").data == b"real"
        if isinstance(store, FileStore):
            # nothing was written beside or above the store's directory
            assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
            files = [p.relative_to(store.root).as_posix() for p in store.root.rglob("*")
                     if p.is_file() and not p.relative_to(store.root).parts[0] == ".s3exp"]
            assert files == ["real"]

    def test_list_with_hostile_prefix_finds_nothing_outside(self, store: Store, tmp_path: Path) -> None:
        (tmp_path / "outside.txt").write_bytes(b"not in the store")
        store.put_if_absent("in/side", b"x")
        store.server_time()  # the file store keeps a private clock file
        for prefix in ("../", "..", "../outside", "/", ".s3exp/", ".s3exp", "./", "in/../"):
            assert keys(store.list(prefix)) == [], prefix

    # -- request accounting ---------------------------------------------------------

    def test_request_counter_counts_each_request(self, store: Store) -> None:
        store.requests.reset()
        assert store.requests.total == 0
        meta = store.put_if_absent("r", b"1")
        with pytest.raises(AlreadyExists):
            store.put_if_absent("r", b"2")
        store.get("r")
        store.head("r")
        list(store.list("r"))
        meta = store.put_if_match("r", b"3", meta.etag)
        store.delete_if_match("r", meta.etag)
        with pytest.raises(ObjectNotFound):
            store.get("r")
        assert store.requests.snapshot() == {"PUT": 3, "GET": 2, "HEAD": 1, "LIST": 1, "DELETE": 1}
        assert store.requests.total == 8
        store.requests.reset()
        assert store.requests.snapshot() == {}

    def test_a_failed_condition_is_one_request(self, store: Store) -> None:
        """A refused condition is the server's answer, not a transient failure: it is
        never retried, and nothing is read after it (a lost race costs one request)."""
        meta = store.put_if_absent("f", b"1")
        store.requests.reset()
        with pytest.raises(AlreadyExists):
            store.put_if_absent("f", b"1")
        with pytest.raises(Conflict):
            store.put_if_match("f", b"2", '"0123456789abcdef0123456789abcdef"')
        with pytest.raises(Conflict):
            store.put_if_match("missing", b"2", meta.etag)
        with pytest.raises(Conflict):
            store.delete_if_match("f", '"0123456789abcdef0123456789abcdef"')
        assert store.requests.snapshot() == {"PUT": 3, "DELETE": 1}


# -- S3 prefixes --------------------------------------------------------------------


S3_BACKENDS = ["moto", pytest.param("seaweed", marks=pytest.mark.seaweed)]


@pytest.fixture(params=S3_BACKENDS)
def make_s3(request: pytest.FixtureRequest) -> MakeS3Store:
    return request.getfixturevalue(f"{request.param}_bucket")  # type: ignore[no-any-return]


def test_s3_prefix_is_a_private_subtree(make_s3: MakeS3Store) -> None:
    a = make_s3("proj/a")
    b = make_s3("proj/b", bucket=a.bucket)
    ab = make_s3("proj/ab", bucket=a.bucket)
    root = make_s3("", bucket=a.bucket)
    assert a.url == f"s3://{a.bucket}/proj/a"
    assert root.url == f"s3://{a.bucket}"
    a.put_if_absent("experiments/e.json", b"in a")
    b.put_if_absent("experiments/e.json", b"in b")  # same key, other prefix: no conflict
    b.put_if_absent("experiments/f.json", b"only b")
    ab.put_if_absent("experiments/e.json", b"in ab")
    assert keys(a.list("")) == ["experiments/e.json"]  # "proj/a" does not see "proj/ab"
    assert keys(a.list("experiments/")) == ["experiments/e.json"]
    assert keys(b.list("")) == ["experiments/e.json", "experiments/f.json"]
    assert a.get("experiments/e.json").data == b"in a"
    with pytest.raises(ObjectNotFound):
        a.get("experiments/f.json")
    assert keys(root.list("")) == ["proj/a/experiments/e.json", "proj/ab/experiments/e.json",
                                   "proj/b/experiments/e.json", "proj/b/experiments/f.json"]
    assert root.get("proj/a/experiments/e.json").data == b"in a"
    # conditions apply to the prefixed key
    with pytest.raises(AlreadyExists):
        root.put_if_absent("proj/b/experiments/f.json", b"x")
    etag = root.head("proj/a/experiments/e.json").etag
    a.put_if_match("experiments/e.json", b"a2", etag)
    assert root.get("proj/a/experiments/e.json").data == b"a2"


@pytest.mark.xfail(strict=True, raises=StoreError,
                   reason="moto sends no Date header on HeadBucket, GetObject or PutObject "
                          "replies (only on CreateBucket), and S3Store reads the server clock "
                          "from Date; the moto fixture primes the clock with CreateBucket")
def test_moto_sends_no_date(moto_bucket: MakeS3Store) -> None:
    first = moto_bucket("p")
    # No prefix: a prefixed store reads the clock from a LIST, and moto dates those.
    unprimed = S3Store(first.bucket, "", region="us-east-1", credentials=("testing", "testing"))
    unprimed.server_time()


@pytest.mark.parametrize("value", [
    "Wed, 25 Nov 2026 20:20:01 GMT",   # Last-Modified of GET and HEAD (RFC 1123)
    "Wed, 25 Nov 2026 20:20:01 -0000",
    "2026-11-25T20:20:01.123Z",        # LastModified in a ListObjectsV2 page (ISO 8601)
    "2026-11-25T20:20:01+01:00",
    1764100000,                        # anything else: botocore's own parser
])
def test_fast_timestamp_parser_agrees_with_botocore(value: object) -> None:
    import botocore.utils

    from s3exp.stores._s3_replies import parse_timestamp as _parse_timestamp

    ours = _parse_timestamp(value)
    assert ours.tzinfo is not None
    assert ours == botocore.utils.parse_timestamp(value)


# -- S3: the retry rules and recognising our own write ------------------------------
#
# The fault proxy (tests/chaos/test_fault_proxy.py) does this over the wire against
# SeaweedFS; here the client's calls are scripted, so it runs on moto too, and so that
# replies no server of ours sends on demand (409) can be given.


class _Script:
    """Replaces one method of an S3Store's boto3 client with a script, one step per call:
    ``"lose_reply"`` sends the call and then, whatever came back (applied or refused),
    raises a cut connection instead; ``"500"``, ``"412"`` and ``"409"`` raise that error
    without sending anything.  Calls past the script are sent as they are.  ``calls``
    keeps every call's arguments."""

    _CODES = {"500": "InternalError", "412": "PreconditionFailed", "409": "ConditionalRequestConflict"}

    def __init__(self, store: S3Store, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = store
        self.method = method
        self.steps: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self._real: Callable[..., Any] = getattr(store._client, method)
        monkeypatch.setattr(store._client, method, self)

    def then(self, *steps: str) -> _Script:
        """Script the next calls (after those already scripted); forget past calls."""
        self.steps.extend(steps)
        self.calls.clear()
        return self

    def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        step = self.steps.pop(0) if self.steps else "send"
        if step == "send":
            return self._real(**kwargs)
        if step == "lose_reply":
            try:
                self._real(**kwargs)
            except botocore.exceptions.ClientError:
                pass  # refused: the client never hears that either
            raise botocore.exceptions.ConnectionClosedError(endpoint_url=self.store.endpoint)
        reply: Any = {"Error": {"Code": self._CODES[step], "Message": "scripted"},
                      "ResponseMetadata": {"HTTPStatusCode": int(step)}}
        raise botocore.exceptions.ClientError(reply, self.method)

    def write_ids(self) -> list[str]:
        ids = []
        for call in self.calls:
            (name, value), = call["Metadata"].items()
            assert name == "s3exp-write" and re.fullmatch("[0-9a-f]{32}", value), call["Metadata"]
            ids.append(value)
        return ids


def test_s3_lost_reply_is_recognised_by_its_write_id(make_s3: MakeS3Store,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The first try of a write is applied and its reply lost; the retry (the same write
    id) fails its condition.  One HEAD finds the id: the write is ours, with the stored
    object's ETag and Last-Modified.  Another writer's identical body is not ours."""
    s = make_s3("w")
    other = make_s3("w", bucket=s.bucket)
    puts = _Script(s, "put_object", monkeypatch)
    list(s.list(""))  # the bucket is known: no probe before the first write

    for op in ("put_if_absent", "put_if_match"):
        previous = other.head("k") if op == "put_if_match" else None
        puts.then("lose_reply")
        s.requests.reset()
        body = op.encode() * 1000
        meta = (s.put_if_absent("k", body) if previous is None
                else s.put_if_match("k", body, previous.etag))
        stored = other.head("k")
        assert other.get("k").data == body
        assert (meta.etag, meta.size, meta.last_modified) == (stored.etag, len(body),
                                                              stored.last_modified)
        first, retry = puts.write_ids()
        assert first == retry  # one logical write, one id, on every try
        assert s.requests.snapshot() == {"PUT": 2, "HEAD": 1}  # no GET of the body

    # Equal bytes from another writer: an empty seal, and the very swap we send.
    other.put_if_absent("sealed", b"")
    puts.then("lose_reply")
    with pytest.raises(AlreadyExists):
        s.put_if_absent("sealed", b"")
    v1 = other.put_if_absent("cas", b"v1")
    theirs = other.put_if_match("cas", b"v2", v1.etag)
    puts.then("lose_reply")
    with pytest.raises(Conflict):
        s.put_if_match("cas", b"v2", v1.etag)
    assert other.head("cas").etag == theirs.etag


def test_s3_unresolved_write_is_recognised_when_repeated(make_s3: MakeS3Store,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Every try of a renewal is applied and loses its reply: Unavailable.  Repeating it
    (the same body and ETag, as a heartbeat does) reuses its write id, so the repetition's
    condition failure is recognised by one HEAD.  A different body gets a fresh id and
    conflicts without a HEAD."""
    s = make_s3("u")
    other = make_s3("u", bucket=s.bucket)
    s.retry = RetryPolicy(attempts=3, base=0.0)
    v1 = s.put_if_absent("lease", b"v1")
    puts = _Script(s, "put_object", monkeypatch).then(*["lose_reply"] * 3)
    with pytest.raises(Unavailable):
        s.put_if_match("lease", b"v2", v1.etag)
    assert other.get("lease").data == b"v2"  # it was applied
    (lost,) = set(puts.write_ids())

    s.requests.reset()
    puts.then()
    again = s.put_if_match("lease", b"v2", v1.etag)
    assert puts.write_ids() == [lost]
    assert again.etag == other.head("lease").etag
    assert s.requests.snapshot() == {"PUT": 1, "HEAD": 1}

    # The memory is spent; and a different body never reuses an id.
    s.requests.reset()
    with pytest.raises(Conflict):
        s.put_if_match("lease", b"v2", v1.etag)
    puts.then(*["lose_reply"] * 3)
    with pytest.raises(Unavailable):
        s.put_if_match("lease", b"v3", again.etag)
    (remembered,) = set(puts.write_ids())
    puts.then()
    with pytest.raises(Conflict):
        s.put_if_match("lease", b"v4", again.etag)
    assert puts.write_ids()[0] not in (remembered, lost)
    assert s.requests.snapshot() == {"PUT": 5}


@pytest.mark.parametrize("status", ["412", "409"])
def test_s3_a_refused_condition_is_never_retried(make_s3: MakeS3Store, status: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """412 PreconditionFailed and 409 ConditionalRequestConflict are answers: each is one
    call.  After a try that may have been applied (a 500), the retry's refusal is not
    retried either; one HEAD (never a GET) decides whose write is stored."""
    s = make_s3("r")
    other = make_s3("r", bucket=s.bucket)
    held = other.put_if_absent("k", b"theirs")
    list(s.list(""))
    puts = _Script(s, "put_object", monkeypatch)
    deletes = _Script(s, "delete_object", monkeypatch)
    s.requests.reset()

    puts.then(status)
    with pytest.raises(AlreadyExists):
        s.put_if_absent("k", b"mine")
    assert len(puts.calls) == 1
    puts.then(status)
    with pytest.raises(Conflict):
        s.put_if_match("k", b"mine", held.etag)
    assert len(puts.calls) == 1
    deletes.then(status)
    with pytest.raises(Conflict):
        s.delete_if_match("k", held.etag)
    assert len(deletes.calls) == 1
    assert s.requests.snapshot() == {}  # nothing else was sent

    puts.then("500", status)
    with pytest.raises(AlreadyExists):
        s.put_if_absent("k", b"mine")
    assert len(puts.calls) == 2
    puts.then("500", status)
    with pytest.raises(Conflict):
        s.put_if_match("k", b"mine", held.etag)
    assert len(puts.calls) == 2
    assert s.requests.snapshot() == {"HEAD": 2}
    assert other.get("k").data == b"theirs"
