"""The fault proxy itself, and targeted faults against the store and the worker.

Part 1 checks the proxy against a scripted upstream that records the raw bytes it
receives: forwarding is byte for byte (Content-Length, chunked with extensions and
trailers, Expect: 100-continue, keep-alive), and each fault kind does what it says.

Part 2 puts the proxy between s3exp and a real SeaweedFS (signature checks on, so a
forwarded request that changed by one byte would be refused) and injects one kind of
fault at a time, on 100% of eligible requests:

* 503 SlowDown, 500 InternalError and resets before forwarding are retried and succeed;
* a reset after the server applied a conditional write (the reply is lost) is recognised
  as the writer's own write by its write id, with one HEAD and no GET, and another
  writer's identical body is not: for a lease claim, a heartbeat renewal, a metric shard
  and a result, with no orphaned lease, no second attempt and no RunAlreadyCompleted
  against the worker's own result;
* a claim whose create was applied but whose every retry lost its reply raises
  Unavailable: the worker never executes the run, the lease it cannot know it holds
  expires after the TTL and is taken over, and the run completes once.

Every verdict is read straight from SeaweedFS, not through the proxy.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import s3exp
from s3exp.bucket._records import Lease
from s3exp.core._errors import AlreadyExists, Conflict, ObjectNotFound, Unavailable
from s3exp.specs._expansion import expand
from s3exp.stores import S3Store, Store

from .conftest import Stores
from .fault_proxy import FAULT_KINDS, FaultConfig, FaultProxy

EXP = "proxied"
PUT = frozenset({"PUT"})


# -- part 1: the proxy against a scripted upstream -------------------------------------


class Upstream:
    """An HTTP/1.1 server that records each request's raw bytes and answers with their
    SHA-256 (``/chunked...`` answers chunked; a HEAD gets headers only).  It sends
    ``100 Continue`` when asked to, as real servers do."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.connections = 0
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                while True:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = self.rfile.readline()
                        if not line:
                            return
                        head += line
                    lines = head.decode("latin-1").split("\r\n")
                    method, target, _ = lines[0].split(" ")
                    hdrs = {k.strip().lower(): v.strip() for k, _, v in
                            (ln.partition(":") for ln in lines[1:] if ln)}
                    if hdrs.get("expect") == "100-continue":
                        self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    body = b""
                    if hdrs.get("transfer-encoding") == "chunked":
                        while True:
                            size_line = self.rfile.readline()
                            body += size_line
                            size = int(size_line.split(b";")[0], 16)
                            if size == 0:
                                while True:
                                    t = self.rfile.readline()
                                    body += t
                                    if t == b"\r\n":
                                        break
                                break
                            body += self.rfile.read(size + 2)
                    elif "content-length" in hdrs:
                        body = self.rfile.read(int(hdrs["content-length"]))
                    outer.received.append(head + body)
                    digest = hashlib.sha256(head + body).hexdigest().encode()
                    if target.startswith("/chunked"):
                        half = len(digest) // 2
                        reply = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 + b"%x;ext=1\r\n%s\r\n" % (half, digest[:half])
                                 + b"%x\r\n%s\r\n" % (len(digest) - half, digest[half:])
                                 + b"0\r\nX-Trailer: t\r\n\r\n")
                    else:
                        reply = b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: %d\r\n\r\n" % len(digest)
                        if method != "HEAD":
                            reply += digest
                    self.wfile.write(reply)
                    self.wfile.flush()

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.close()


@pytest.fixture
def local_proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.url, seed=7) as p:
        yield p


def _connect(proxy: FaultProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _exchange(sock: socket.socket, raw: bytes, method: str = "GET") -> http.client.HTTPResponse:
    sock.sendall(raw)
    r = http.client.HTTPResponse(sock, method=method)
    r.begin()
    return r


def _req(method: str, target: str, body: bytes = b"", extra: str = "") -> bytes:
    head = (f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:1\r\nX-Amz-Date: 20260101T000000Z\r\n"
            f"x-odd-CASE:  kept  as sent \r\n{extra}")
    if body or method == "PUT":
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def test_forwards_every_byte_over_one_kept_alive_connection(upstream: Upstream,
                                                             local_proxy: FaultProxy) -> None:
    binary = bytes(range(256)) * 3 + b"\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
    chunked = (b"PUT /b/chunky HTTP/1.1\r\nHost: 127.0.0.1:1\r\nTransfer-Encoding: chunked\r\n"
               b"Content-Encoding: aws-chunked\r\n\r\n"
               b"5;chunk-signature=abc\r\nhello\r\n"
               b"6\r\n world\r\n"
               b"0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n")
    requests = [
        (_req("GET", "/b?list-type=2&prefix=a%2Fb&max-keys=1"), "GET"),
        (_req("PUT", "/b/key", binary, "If-None-Match: *\r\n"), "PUT"),
        (chunked, "PUT"),
        (_req("HEAD", "/b/key"), "HEAD"),
        (_req("PUT", "/b/empty"), "PUT"),
        (_req("GET", "/chunked/reply"), "GET"),
    ]
    sock = _connect(local_proxy)
    for raw, method in requests:
        r = _exchange(sock, raw, method)
        body = r.read()
        assert r.status == 200
        if method == "HEAD":
            assert body == b""
        else:
            assert body == hashlib.sha256(raw).hexdigest().encode()

    # Expect: 100-continue: the proxy says "continue" itself, then forwards head and body
    # together and drops the upstream's interim 100.
    head = _req("PUT", "/b/expect", b"", "Expect: 100-continue\r\nContent-Length: 4\r\n")
    head = head.replace(b"Content-Length: 0\r\n", b"")
    sock.sendall(head)
    interim = b""
    while not interim.endswith(b"\r\n\r\n"):  # (HTTPResponse would skip a 100)
        interim += sock.recv(1)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"data")
    r = http.client.HTTPResponse(sock, method="PUT")
    r.begin()
    assert r.status == 200 and r.read() == hashlib.sha256(head + b"data").hexdigest().encode()
    sock.close()

    assert upstream.received == [raw for raw, _ in requests] + [head + b"data"]
    assert upstream.connections == 1  # kept alive upstream as well
    assert local_proxy.stats() == dict.fromkeys(FAULT_KINDS, 0)
    assert local_proxy.requests() == {"GET": 2, "PUT": 4, "HEAD": 1}


def _reset_seen(sock: socket.socket) -> bool:
    """True if the peer reset the connection (RST), False on an orderly close (FIN)."""
    try:
        sock.recv(1)
    except ConnectionResetError:
        return True
    return False


def test_each_fault_kind(upstream: Upstream, local_proxy: FaultProxy) -> None:
    put = _req("PUT", "/b/k", b"body")

    local_proxy.configure(FaultConfig(rates={"slowdown": 1.0}))
    sock = _connect(local_proxy)
    r = _exchange(sock, put, "PUT")
    assert r.status == 503 and b"<Code>SlowDown</Code>" in r.read()
    local_proxy.configure(FaultConfig(rates={"internal": 1.0}))
    r = _exchange(sock, put, "PUT")  # same connection: an error reply keeps it alive
    assert r.status == 500 and b"<Code>InternalError</Code>" in r.read()
    r = _exchange(sock, _req("HEAD", "/b/k"), "HEAD")
    assert r.status == 500 and r.read() == b""
    assert upstream.received == []

    local_proxy.configure(FaultConfig(rates={"reset_before": 1.0}))
    sock = _connect(local_proxy)
    sock.sendall(put)
    assert _reset_seen(sock)
    assert upstream.received == []  # never reached the server

    local_proxy.configure(FaultConfig(rates={"reset_after": 1.0}))
    sock = _connect(local_proxy)
    sock.sendall(put)
    assert _reset_seen(sock)
    assert upstream.received == [put]  # applied, and the reply was dropped

    local_proxy.configure(FaultConfig(rates={"latency": 1.0}, latency=(0.3, 0.35)))
    sock = _connect(local_proxy)
    t = time.monotonic()
    r = _exchange(sock, put, "PUT")
    assert r.status == 200 and time.monotonic() - t >= 0.3
    r.read()

    # hold_reply: applied at once, the reply held; only for writes, so a GET goes through
    local_proxy.configure(FaultConfig(rates={"hold_reply": 1.0}, hold=0.5))
    sock = _connect(local_proxy)
    before = len(upstream.received)
    t = time.monotonic()
    r = _exchange(sock, put, "PUT")
    assert r.status == 200 and time.monotonic() - t >= 0.5
    r.read()
    assert upstream.received[before:] == [put]
    t = time.monotonic()
    r = _exchange(sock, _req("GET", "/b/k"), "GET")
    assert r.status == 200 and time.monotonic() - t < 0.5
    r.read()

    assert local_proxy.stats() == {"slowdown": 1, "internal": 2, "latency": 1,
                                   "reset_before": 1, "reset_after": 1, "hold_reply": 1}


def test_hold_reply_applies_the_write_before_it_answers(upstream: Upstream,
                                                          local_proxy: FaultProxy) -> None:
    """The server has the write while the client still waits: what a claim whose reply
    comes late looks like to every other worker."""
    local_proxy.configure(FaultConfig(rates={"hold_reply": 1.0}, hold=1.0))
    sock = _connect(local_proxy)
    put = _req("PUT", "/b/held", b"body")
    sock.sendall(put)
    deadline = time.monotonic() + 0.8
    while put not in upstream.received:
        assert time.monotonic() < deadline, "the write did not reach the server at once"
        time.sleep(0.01)
    t = time.monotonic()
    reply = http.client.HTTPResponse(sock, method="PUT")
    reply.begin()
    assert reply.status == 200 and time.monotonic() - t >= 0.15  # answered only now


def test_header_filter_picks_creates(upstream: Upstream, local_proxy: FaultProxy) -> None:
    local_proxy.configure(FaultConfig(rates={"internal": 1.0}, header=("if-none-match", "*")))
    sock = _connect(local_proxy)
    assert _exchange(sock, _req("PUT", "/b/k", b"x"), "PUT").status == 200
    create = _req("PUT", "/b/k", b"x", "If-None-Match: *\r\n")
    assert _exchange(sock, create, "PUT").status == 500


def test_filters_limit_and_first_attempt_only(upstream: Upstream, local_proxy: FaultProxy) -> None:
    sock = _connect(local_proxy)
    local_proxy.configure(FaultConfig(rates={"internal": 1.0}, methods=PUT, path=r"/lease\.json$"))
    assert _exchange(sock, _req("GET", "/b/lease.json"), "GET").status == 200
    assert _exchange(sock, _req("PUT", "/b/result.json", b"x"), "PUT").status == 200
    assert _exchange(sock, _req("PUT", "/b/lease.json", b"x"), "PUT").status == 500

    local_proxy.configure(FaultConfig(rates={"internal": 1.0}, limit=2))
    assert [_exchange(sock, _req("GET", "/b/x"), "GET").status for _ in range(4)] == [500, 500, 200, 200]

    # One fault per distinct request: a retry (same method, path and conditions) passes,
    # a new conditional write of the same key does not.
    local_proxy.configure(FaultConfig(rates={"internal": 1.0}, first_attempt_only=True))
    statuses = [_exchange(sock, raw, "PUT").status for raw in (
        _req("PUT", "/b/l", b"1", "If-None-Match: *\r\n"),
        _req("PUT", "/b/l", b"1", "If-None-Match: *\r\n"),
        _req("PUT", "/b/l", b"2", 'If-Match: "e1"\r\n'),
        _req("PUT", "/b/l", b"2", 'If-Match: "e1"\r\n'),
        _req("PUT", "/b/l", b"3", 'If-Match: "e2"\r\n'))]
    assert statuses == [500, 200, 500, 200, 500]
    assert local_proxy.stats()["internal"] == 6


def test_decisions_follow_the_seed(upstream: Upstream) -> None:
    def kinds(seed: int) -> list[str]:
        with FaultProxy(upstream.url, FaultConfig.mix(0.5, ("slowdown", "internal")), seed=seed) as p:
            sock = _connect(p)
            for _ in range(40):
                _exchange(sock, _req("GET", "/b/x"), "GET").read()
            return [k for _, k, _, _ in p.log]

    first = kinds(1)
    assert kinds(1) == first
    assert kinds(2) != first
    assert 5 < len(first) < 35 and {"slowdown", "internal"} == set(first)


def test_rates_must_be_a_distribution() -> None:
    with pytest.raises(ValueError):
        FaultConfig(rates={"slowdown": 0.7, "internal": 0.7})
    with pytest.raises(ValueError):
        FaultConfig(rates={"gremlins": 0.1})  # type: ignore[dict-item]


# -- part 2: against SeaweedFS ---------------------------------------------------------


def _every_first_attempt(kind: str, **options: Any) -> FaultConfig:
    return FaultConfig(rates={kind: 1.0}, first_attempt_only=True, **options)  # type: ignore[dict-item]


@pytest.mark.seaweed
@pytest.mark.parametrize("kind", ["slowdown", "internal", "reset_before", "reset_after", "latency"])
def test_store_operations_survive_each_fault(stores: Stores, proxy: FaultProxy, kind: str) -> None:
    """Every distinct request's first try is faulted; every operation still gives exactly
    the answer it gives without faults."""
    s = stores.proxied
    proxy.configure(_every_first_attempt(kind, latency=(0.01, 0.05)))
    m = s.put_if_absent("a/k", b"one")
    assert stores.direct.get("a/k").data == b"one" and stores.direct.head("a/k").etag == m.etag
    with pytest.raises(AlreadyExists):
        s.put_if_absent("a/k", b"two")
    m2 = s.put_if_match("a/k", b"three", m.etag)
    assert stores.direct.get("a/k").data == b"three" and stores.direct.head("a/k").etag == m2.etag
    with pytest.raises(Conflict):
        s.put_if_match("a/k", b"four", m.etag)
    assert s.get("a/k").data == b"three"
    assert s.head("a/k").etag == m2.etag
    assert [x.key for x in s.list("a/")] == ["a/k"]
    with pytest.raises(ObjectNotFound):
        s.get("a/missing")
    s.delete_if_match("a/k", m2.etag)
    with pytest.raises(ObjectNotFound):
        stores.direct.head("a/k")
    with pytest.raises(Conflict):
        s.delete_if_match("a/k", m2.etag)
    injected = proxy.stats()
    assert injected[kind] >= 9, injected  # one per distinct request above
    assert sum(injected.values()) == injected[kind]


@pytest.mark.seaweed
def test_lost_reply_of_a_write_is_told_from_another_writers_write(stores: Stores, proxy: FaultProxy) -> None:
    """Reset after apply: the retry's condition fails; the write id on a HEAD decides."""
    s, d = stores.proxied, stores.direct
    proxy.configure(_every_first_attempt("reset_after", methods=frozenset({"PUT", "DELETE"})))
    own = s.put_if_absent("k", b"mine-" + b"1" * 32)
    assert d.head("k").etag == own.etag

    # Another writer's object: our create reaches the server, is refused (412), its reply
    # is dropped, and the retry's 412 is resolved by a HEAD: not our id, so AlreadyExists.
    d.put_if_absent("theirs", b"theirs")
    with pytest.raises(AlreadyExists):
        s.put_if_absent("theirs", b"mine")

    swapped = s.put_if_match("k", b"mine-2", own.etag)
    assert d.get("k").data == b"mine-2" and d.head("k").etag == swapped.etag
    # Someone else swapped first: our CAS fails for real.
    theirs = d.put_if_match("k", b"theirs-3", swapped.etag)
    with pytest.raises(Conflict):
        s.put_if_match("k", b"mine-4", swapped.etag)
    assert d.get("k").data == b"theirs-3"

    s.delete_if_match("k", theirs.etag)  # applied, reply lost, retry finds it gone
    with pytest.raises(ObjectNotFound):
        d.head("k")
    assert proxy.stats()["reset_after"] == 5


@pytest.mark.seaweed
def test_write_whose_every_retry_lost_its_reply_is_recognised_when_repeated(
        stores: Stores, proxy: FaultProxy) -> None:
    """Retries spent, Unavailable raised, yet the write was applied.  Repeating the same
    write (as a heartbeat does) must find it, not report a conflict."""
    s, d = stores.proxied, stores.direct
    first = s.put_if_absent("lease", b"v1-token")
    proxy.configure(FaultConfig(rates={"reset_after": 1.0}, methods=PUT))
    with pytest.raises(Unavailable):
        s.put_if_match("lease", b"v2-token", first.etag)
    assert proxy.stats()["reset_after"] == s.retry.attempts
    assert d.get("lease").data == b"v2-token"  # it was applied
    proxy.disable()
    again = s.put_if_match("lease", b"v2-token", first.etag)
    assert again.etag == d.head("lease").etag
    # Only for that key and that body: a different body still conflicts.
    with pytest.raises(Conflict):
        s.put_if_match("lease", b"v3-token", first.etag)


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


@pytest.mark.seaweed
@pytest.mark.parametrize("op", ["put_if_absent", "put_if_match"])
def test_lost_reply_costs_one_head_not_a_get_of_the_body(stores: Stores, proxy: FaultProxy,
                                                          op: str) -> None:
    """The first try is applied and its reply lost; the retry fails its condition.  The
    store tells that it was its own write with one HEAD, never a GET of the body (a
    compaction part is ~10 MB), and returns the stored object's ETag and Last-Modified.
    The condition failure of the retry is not retried: two PUTs in all."""
    s, d = stores.proxied, stores.direct
    body = b"part " * 200_000  # 1 MB
    current = d.put_if_absent("k", b"v1") if op == "put_if_match" else None
    list(s.list("k"))  # the store has seen the bucket: no probe before the first write
    s.requests.reset()
    seen = proxy.requests()
    proxy.configure(_every_first_attempt("reset_after", methods=PUT))
    if current is None:
        meta = s.put_if_absent("k", body)
    else:
        meta = s.put_if_match("k", body, current.etag)
    assert proxy.stats()["reset_after"] == 1
    assert s.requests.snapshot() == {"PUT": 2, "HEAD": 1}
    assert _delta(proxy.requests(), seen) == {"PUT": 2, "HEAD": 1}
    stored = d.head("k")
    assert d.get("k").data == body
    assert (meta.etag, meta.size, meta.last_modified) == (stored.etag, len(body), stored.last_modified)

    # A plain lost race costs nothing extra: one PUT, no HEAD.
    proxy.disable()
    s.requests.reset()
    with pytest.raises(AlreadyExists):
        s.put_if_absent("k", body)
    with pytest.raises(Conflict):
        s.put_if_match("k", body, '"0123456789abcdef0123456789abcdef"')
    assert s.requests.snapshot() == {"PUT": 2}


@pytest.mark.seaweed
def test_another_writers_identical_body_is_not_taken_for_ours(stores: Stores, proxy: FaultProxy) -> None:
    """Equal bytes are not the same writer: another writer stored exactly the body we
    send, our first try reaches the server and is refused, its reply is lost, and the
    retry's refusal is resolved by the write id, which is not ours."""
    s, d = stores.proxied, stores.direct
    body = b""  # what every sealer writes; any body would do
    d.put_if_absent("sealed", body)
    proxy.configure(_every_first_attempt("reset_after", methods=PUT))
    with pytest.raises(AlreadyExists):
        s.put_if_absent("sealed", body)

    v1 = d.put_if_absent("cas", b"v1")
    theirs = d.put_if_match("cas", b"v2", v1.etag)
    with pytest.raises(Conflict):
        s.put_if_match("cas", b"v2", v1.etag)  # the same swap, made by someone else
    assert d.head("cas").etag == theirs.etag
    assert proxy.stats()["reset_after"] == 2

    # And a write remembered as unresolved (every try failed, none was applied) is not
    # taken for ours when another writer then stores the same body.
    proxy.configure(FaultConfig(rates={"internal": 1.0}, methods=PUT))
    with pytest.raises(Unavailable):
        s.put_if_match("cas", b"v3", theirs.etag)
    proxy.disable()
    d.put_if_match("cas", b"v3", theirs.etag)
    with pytest.raises(Conflict):
        s.put_if_match("cas", b"v3", theirs.etag)


# -- the worker, through the proxy -----------------------------------------------------


def _submit(store: Store, runs: int, ttl: float) -> list[str]:
    spec = s3exp.parse_spec({"name": EXP, "runs_per_pair": runs, "lease_seconds": ttl,
                             "max_attempts": 3,
                             "parameters": {"lr": {"min": 0.1, "max": 0.2}}})
    s3exp.submit(store, spec)
    return [slot.run_id for slot in expand(spec)]


def _run_keys(store: Store, run_id: str) -> list[str]:
    prefix = f"runs/{EXP}/{run_id}/"
    return sorted(m.key[len(prefix):] for m in store.list(prefix))


def _drain(store: S3Store, seconds: float, steps: int = 3, **options: Any) -> tuple[s3exp.Worker, dict[str, int]]:
    """Run an in-process worker to the end; each run logs ``steps`` steps, sleeps
    ``seconds`` and completes.  Returns the worker and how often each run's body ran."""
    executed: dict[str, int] = {}
    worker = s3exp.Worker(store, EXP, wait=False, handle_signals=False, raise_errors=True,
                          **options)
    for run in worker:
        with run:
            executed[run.run_id] = executed.get(run.run_id, 0) + 1
            for step in range(steps):
                run.log({"loss": 1.0 / (step + 1)}, step=step)
            time.sleep(seconds)
            body = run.complete({"attempt": run.attempt})
            assert body["attempt"] == run.attempt  # our own result, never RunAlreadyCompleted
    return worker, executed


def _check_completed_once(store: Store, run_ids: list[str], steps: int) -> None:
    for rid in run_ids:
        assert _run_keys(store, rid) == ["lease.json", "result-0001.json"]  # no error record
        lease = Lease.from_bytes(store.get(f"runs/{EXP}/{rid}/lease.json").data, f"runs/{EXP}/{rid}/lease.json")
        result = json.loads(store.get(f"runs/{EXP}/{rid}/result-0001.json").data)
        assert (lease.attempt, lease.failures, lease.state) == (1, 0, "running")
        assert (result["attempt"], result["token"]) == (1, lease.token)
    rows = s3exp.metrics(store, EXP)
    assert rows.num_rows == len(run_ids) * steps
    assert set(rows.column("attempt").to_pylist()) == {1}


@pytest.mark.seaweed
def test_worker_recognises_its_own_claim_renewal_shard_and_result(stores: Stores, proxy: FaultProxy) -> None:
    """Every PUT's first try is applied and its reply lost: the claim, each heartbeat
    renewal, the metric shard and the result.  Each is recognised as the worker's own."""
    ttl = 3.0
    run_ids = _submit(stores.direct, 2, ttl)
    proxy.configure(_every_first_attempt("reset_after", methods=PUT))
    worker, executed = _drain(stores.proxied, seconds=0.75 * ttl)  # heartbeats at ttl/3

    assert executed == dict.fromkeys(run_ids, 1)
    assert (worker.stats.claimed, worker.stats.completed, worker.stats.lost,
            worker.stats.failed) == (2, 2, 0, 0)
    _check_completed_once(stores.direct, run_ids, 3)
    for rid in run_ids:
        renewals = Lease.from_bytes(stores.direct.get(f"runs/{EXP}/{rid}/lease.json").data, f"runs/{EXP}/{rid}/lease.json").renewals
        assert renewals >= 1
        faulted = [t for _, kind, _, t in proxy.log if kind == "reset_after" and f"/{rid}/" in t]
        # the claim and every renewal of the lease, one shard, the result
        assert sum(t.endswith("/lease.json") for t in faulted) == 1 + renewals
        assert sum(t.endswith("/result-0001.json") for t in faulted) == 1
        assert sum(t.endswith(".parquet") for t in faulted) == 1


@pytest.mark.seaweed
def test_heartbeat_whose_renewal_ended_unavailable_keeps_its_lease(stores: Stores,
                                                                    proxy: FaultProxy) -> None:
    """A renewal is applied but all its retries lose their replies (Unavailable).  The
    heartbeat tries again at its next beat with the same body and the old ETag; that
    must be recognised as the renewal already in place, not read as a takeover."""
    ttl = 4.5
    (run_id,) = _submit(stores.direct, 1, ttl)
    key = f"runs/{EXP}/{run_id}/lease.json"
    attempts = stores.proxied.retry.attempts
    worker = s3exp.Worker(stores.proxied, EXP, wait=False, handle_signals=False)
    for run in worker:
        with run:
            proxy.configure(FaultConfig(rates={"reset_after": 1.0}, methods=PUT,
                                        path=r"/lease\.json$", limit=attempts))
            deadline = time.monotonic() + 30
            # Past the failed renewal, its repetition, and one more renewal after that.
            while Lease.from_bytes(stores.direct.get(key).data, key).renewals < 2:
                assert time.monotonic() < deadline, "the heartbeat stopped renewing"
                time.sleep(0.05)
            run.complete({})
    assert proxy.stats()["reset_after"] == attempts
    assert (worker.stats.completed, worker.stats.lost) == (1, 0)
    assert _run_keys(stores.direct, run_id) == ["lease.json", "result-0001.json"]


@pytest.mark.seaweed
@pytest.mark.parametrize("kind", ["slowdown", "internal", "reset_before", "latency"])
def test_worker_retries_through_each_fault(stores: Stores, proxy: FaultProxy, kind: str) -> None:
    run_ids = _submit(stores.direct, 2, 30.0)
    proxy.configure(_every_first_attempt(kind, latency=(0.01, 0.05)))
    worker, executed = _drain(stores.proxied, seconds=0.0)
    assert executed == dict.fromkeys(run_ids, 1)
    assert (worker.stats.completed, worker.stats.lost, worker.stats.failed) == (2, 0, 0)
    _check_completed_once(stores.direct, run_ids, 3)
    by_method = proxy.faults_by_method()
    assert by_method.get((kind, "PUT"), 0) >= 6 and by_method.get((kind, "GET"), 0) >= 2


@pytest.mark.seaweed
def test_claim_applied_but_never_acknowledged_expires_and_is_taken_over(
        stores: Stores, proxy: FaultProxy) -> None:
    """The edge: the claim's create lands, every retry's reply is lost, Unavailable.

    The worker cannot know it holds the lease, so it must not run the run: the error
    propagates out of its loop.  The lease it left is an ordinary lease that nobody
    renews: no worker may claim the run before the TTL (a fresh worker through the proxy
    finds nothing to claim), and after it the run is taken over like a dead worker's, as
    attempt 2, with a "lease expired" record for attempt 1."""
    ttl = 1.5
    (run_id,) = _submit(stores.direct, 1, ttl)
    proxy.configure(FaultConfig(rates={"reset_after": 1.0}, methods=PUT, path=r"/lease\.json$"))
    executed: list[str] = []
    ghost = s3exp.Worker(stores.proxied, EXP, wait=False, handle_signals=False,
                         worker_id="ghost")
    with pytest.raises(Unavailable):
        for run in ghost:
            executed.append(run.run_id)
    assert executed == []
    assert proxy.stats()["reset_after"] == stores.proxied.retry.attempts
    proxy.disable()

    orphan = Lease.from_bytes(stores.direct.get(f"runs/{EXP}/{run_id}/lease.json").data, f"runs/{EXP}/{run_id}/lease.json")
    assert (orphan.worker.id, orphan.attempt, orphan.state) == ("ghost", 1, "running")
    assert _run_keys(stores.direct, run_id) == ["lease.json"]
    # Within the TTL it is a live lease: nobody may take it.
    again, ran = _drain(stores.proxied, seconds=0.0, worker_id="early")
    assert ran == {} and again.stats.claimed == 0

    taker = s3exp.Worker(stores.direct, EXP, wait=True, poll_seconds=0.2, handle_signals=False,
                         worker_id="taker")
    started = time.monotonic()
    for run in taker:
        with run:
            executed.append(run.run_id)
            assert run.attempt == 2
    assert executed == [run_id]
    assert time.monotonic() - started < 30
    assert _run_keys(stores.direct, run_id) == ["error-0001.json", "lease.json",
                                                "result-0001.json", "result-0002.json"]
    assert stores.direct.head(f"runs/{EXP}/{run_id}/result-0001.json").size == 0  # the seal
    record = json.loads(stores.direct.get(f"runs/{EXP}/{run_id}/error-0001.json").data)
    assert record["reason"] == "lease expired" and "ghost" in record["error"]
    result = json.loads(stores.direct.get(f"runs/{EXP}/{run_id}/result-0002.json").data)
    assert (result["attempt"], result["worker"]) == (2, "taker")
    lease = Lease.from_bytes(stores.direct.get(f"runs/{EXP}/{run_id}/lease.json").data, f"runs/{EXP}/{run_id}/lease.json")
    assert (lease.attempt, lease.failures) == (2, 1)  # an expired lease counts as a failure
