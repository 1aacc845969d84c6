"""A fault-injecting HTTP/1.1 proxy for the chaos suite, standard library only.

It sits between S3 clients and a real S3 server (SeaweedFS in the tests) and forwards
requests byte for byte: the request line, every header as sent (``Host`` too, since SigV4
signs it), and the body, whether framed by ``Content-Length`` or
``Transfer-Encoding: chunked`` (``aws-chunked`` bodies carry a Content-Length and are
forwarded the same way).  Client connections are kept alive, each with its own upstream
connection.  ``Expect: 100-continue`` is answered by the proxy itself and any interim
reply from upstream is dropped.

Faults, chosen per request with a seeded RNG at configurable rates (:class:`FaultConfig`):

``slowdown``      503 SlowDown with an S3 XML error body; the request is not forwarded
``internal``      500 InternalError, likewise
``latency``       a delay, then the request is forwarded normally
``reset_before``  the client's connection is reset (RST) before anything is forwarded:
                  the server never sees the request
``reset_after``   the request is forwarded, the server's whole reply is read, and then the
                  client's connection is reset without a byte of it: the server applied the
                  request, the client cannot know.  For a conditional PUT this is the
                  "applied but unacknowledged" write.
``hold_reply``    the request is forwarded, the server's whole reply is read, and the reply
                  is held for ``hold`` seconds before it is sent: the server applied the
                  write long before the client hears so (a claim whose reply comes back
                  after its lease has expired and been taken over).

Faults may be limited to methods (``methods={"PUT"}``), to paths matching a regular
expression, to requests carrying a header (``If-None-Match: *``: creates), to a number of faults (``limit``), and to the first attempt of each distinct
request (``first_attempt_only``: keyed by method, path, the ``If-Match`` /
``If-None-Match`` headers and the body, so a client's retry of the same request gets
through while every new write, a renewal of the same key say, is faulted again).
Counts of injected faults by kind, and of forwarded requests by method, are kept in the
proxy (``stats()``); the proxy runs in a thread of the test process, so the test reads
them directly even though its clients are other processes.  ``python -m
tests.chaos.fault_proxy UPSTREAM`` runs it standalone, printing its port.
"""

from __future__ import annotations

import hashlib
import random
import re
import select
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Literal
from urllib.parse import urlsplit

__all__ = ["FAULT_KINDS", "FaultConfig", "FaultKind", "FaultProxy", "Request"]

FaultKind = Literal["slowdown", "internal", "latency", "reset_before", "reset_after", "hold_reply"]
FAULT_KINDS: tuple[FaultKind, ...] = ("slowdown", "internal", "latency", "reset_before",
                                      "reset_after", "hold_reply")

_MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class FaultConfig:
    """What to inject.  ``rates`` maps a fault kind to its probability per eligible
    request; at most one fault is injected per request, so the rates must sum to <= 1."""

    rates: dict[FaultKind, float] = field(default_factory=dict)
    methods: frozenset[str] | None = None
    """Only requests with these methods are eligible (None: every method)."""
    path: str | None = None
    """Only requests whose path (with query) matches this regular expression are eligible."""
    header: tuple[str, str] | None = None
    """Only requests with this header (lower-case name) and value are eligible, for example
    ``("if-none-match", "*")`` for creates."""
    limit: int | None = None
    """Stop injecting after this many faults (None: no limit)."""
    first_attempt_only: bool = False
    """Fault only the first of identical requests (method, path, conditions, body)."""
    latency: tuple[float, float] = (0.05, 0.4)
    """Range of the added delay in seconds."""
    hold: float = 6.0
    """How long a ``hold_reply`` fault holds the server's reply, in seconds."""
    hold_methods: frozenset[str] = frozenset({"PUT"})
    """``hold_reply`` is injected only into requests with these methods (writes)."""

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        if sum(self.rates.values()) > 1.0 + 1e-9 or any(r < 0 for r in self.rates.values()):
            raise ValueError(f"fault rates must be >= 0 and sum to at most 1: {self.rates}")

    @classmethod
    def mix(cls, total: float, kinds: Iterable[FaultKind] = FAULT_KINDS, **options: object) -> FaultConfig:
        """``total`` spread evenly over ``kinds``."""
        ks = list(kinds)
        return cls(rates={k: total / len(ks) for k in ks}, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Request:
    """One request as read from the client: its raw bytes and what the proxy needs."""

    method: str
    target: str
    headers: dict[str, str]
    """Lower-cased names; the last value wins (only used to decide, never to re-send)."""
    raw: bytes
    """Request line, headers and body, exactly as received."""
    body: bytes

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """What a client's retry of this request repeats (its date and signature change)."""
        return (self.method, self.target, self.headers.get("if-match", ""),
                self.headers.get("if-none-match", ""), hashlib.sha256(self.body).hexdigest())


class _ClientGone(Exception):
    """The client closed its connection (between requests, or mid-request)."""


def _read_head(f: BinaryIO) -> bytes:
    """Bytes up to and including the blank line that ends an HTTP head."""
    lines: list[bytes] = []
    size = 0
    while True:
        line = f.readline(_MAX_HEAD + 1)
        if not line:
            if lines:
                raise _ClientGone("connection closed inside an HTTP head")
            raise _ClientGone()
        if not lines and line in (b"\r\n", b"\n"):
            continue  # tolerated before a request line (RFC 9112 2.2)
        lines.append(line)
        size += len(line)
        if size > _MAX_HEAD:
            raise ValueError("HTTP head too large")
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def _parse_headers(head: bytes) -> tuple[str, dict[str, str]]:
    text = head.decode("latin-1")
    first, *rest = text.split("\r\n") if "\r\n" in text else text.split("\n")
    headers: dict[str, str] = {}
    for line in rest:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return first, headers


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _ClientGone(f"connection closed after {len(data)} of {n} body bytes")
    return data


def _read_chunked(f: BinaryIO) -> bytes:
    """A chunked body, raw: size lines (with extensions), data, and trailers."""
    out: list[bytes] = []
    while True:
        line = f.readline(_MAX_HEAD)
        if not line:
            raise _ClientGone("connection closed inside a chunked body")
        out.append(line)
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the blank line
                trailer = f.readline(_MAX_HEAD)
                if not trailer:
                    raise _ClientGone("connection closed inside chunk trailers")
                out.append(trailer)
                if trailer in (b"\r\n", b"\n"):
                    return b"".join(out)
        out.append(_read_exact(f, size + 2))


def _read_body(f: BinaryIO, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(f)
    length = int(headers.get("content-length", "0") or 0)
    return _read_exact(f, length) if length else b""


def _error_reply(status: int, reason: str, code: str, message: str, head_only: bool) -> bytes:
    rid = uuid.uuid4().hex[:16].upper()
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>{rid}</RequestId></Error>").encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\nx-amz-request-id: {rid}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}\r\n"
            "Connection: keep-alive\r\n\r\n").encode()
    return head if head_only else head + body


def _reset(sock: socket.socket, f: BinaryIO) -> None:
    """Close with an RST instead of a FIN: SO_LINGER on, timeout 0.  The file made from
    the socket is closed first: the descriptor closes only when both are."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    f.close()
    sock.close()


class _Upstream:
    """One keep-alive connection to the real server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.file: BinaryIO | None = None

    def _connect(self) -> None:
        self.close()
        self.sock = socket.create_connection((self.host, self.port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def _usable(self) -> bool:
        if self.sock is None:
            return False
        readable, _, _ = select.select([self.sock], [], [], 0)
        return not readable  # readable while idle means EOF (or junk): do not reuse

    def exchange(self, req: Request) -> tuple[bytes, bool]:
        """Send ``req`` and read the complete final reply; (raw reply, keep-alive?)."""
        if not self._usable():
            self._connect()
        assert self.sock is not None and self.file is not None
        self.sock.sendall(req.raw)
        while True:
            head = _read_head(self.file)
            status_line, headers = _parse_headers(head)
            status = int(status_line.split()[1])
            if 100 <= status < 200:
                continue  # 100 Continue: we already sent the body
            break
        if req.method == "HEAD" or status in (204, 304):
            body = b""
            keep = True
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body, keep = _read_chunked(self.file), True
        elif "content-length" in headers:
            body, keep = _read_exact(self.file, int(headers["content-length"])), True
        else:
            body, keep = self.file.read(), False  # delimited by the close
        if headers.get("connection", "").lower() == "close":
            keep = False
        if not keep:
            self.close()
        return head + body, keep

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self.file = None


class FaultProxy:
    """The proxy.  ``start()`` serves on a free 127.0.0.1 port in a daemon thread;
    ``endpoint_url`` is what clients use instead of the upstream's."""

    def __init__(self, upstream: str, config: FaultConfig | None = None, *, seed: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self._config = config or FaultConfig()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._faults: Counter[str] = Counter()
        self._faults_by_method: Counter[tuple[str, str]] = Counter()
        self._requests: Counter[str] = Counter()
        self._seen: set[tuple[str, str, str, str, str]] = set()
        self._injected_under_config = 0
        self.log: list[tuple[float, str, str, str]] = []
        """(time, kind, method, target) of every injected fault."""
        self.upstream_errors = 0
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration and statistics ------------------------------------------------

    def configure(self, config: FaultConfig | None = None, **changes: object) -> None:
        """Replace the fault configuration (or change fields of the current one).  Limits
        and first-attempt bookkeeping start afresh."""
        with self._lock:
            base = config if config is not None else self._config
            self._config = replace(base, **changes) if changes else base  # type: ignore[arg-type]
            self._seen.clear()
            self._injected_under_config = 0

    def disable(self) -> None:
        self.configure(FaultConfig())

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(seed)

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def stats(self) -> dict[str, int]:
        """Injected faults by kind (every kind present, zero if none)."""
        with self._lock:
            return {k: self._faults[k] for k in FAULT_KINDS}

    def faults_by_method(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._faults_by_method)

    def requests(self) -> dict[str, int]:
        """Requests received, by method (faulted ones included)."""
        with self._lock:
            return dict(self._requests)

    # -- deciding ------------------------------------------------------------------

    def _decide(self, req: Request) -> FaultKind | None:
        with self._lock:
            self._requests[req.method] += 1
            cfg = self._config
            if not cfg.rates:
                return None
            if cfg.methods is not None and req.method not in cfg.methods:
                return None
            if cfg.path is not None and not re.search(cfg.path, req.target):
                return None
            if cfg.header is not None and req.headers.get(cfg.header[0]) != cfg.header[1]:
                return None
            if cfg.limit is not None and self._injected_under_config >= cfg.limit:
                return None
            if cfg.first_attempt_only:
                if req.identity in self._seen:
                    return None
                self._seen.add(req.identity)
            u = self._rng.random()
            chosen: FaultKind | None = None
            acc = 0.0
            for kind in FAULT_KINDS:
                acc += cfg.rates.get(kind, 0.0)
                if u < acc:
                    chosen = kind
                    break
            if chosen is None or (chosen == "hold_reply" and req.method not in cfg.hold_methods):
                return None
            self._injected_under_config += 1
            self._faults[chosen] += 1
            self._faults_by_method[(chosen, req.method)] += 1
            self.log.append((time.time(), chosen, req.method, req.target))
            return chosen

    def _latency(self) -> float:
        lo, hi = self.config.latency
        with self._lock:
            return self._rng.uniform(lo, hi)

    # -- serving -------------------------------------------------------------------

    def _serve_connection(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = sock.makefile("rb")
        up = _Upstream(*self.upstream)
        try:
            while True:
                head = _read_head(f)
                line, headers = _parse_headers(head)
                method, target, _ = line.split(" ", 2)
                if headers.get("expect", "").lower() == "100-continue":
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = _read_body(f, headers)
                req = Request(method, target, headers, head + body, body)
                fault = self._decide(req)
                if fault == "reset_before":
                    _reset(sock, f)
                    return
                if fault in ("slowdown", "internal"):
                    reply = (_error_reply(503, "Slow Down", "SlowDown", "Please reduce your request rate.",
                                          method == "HEAD") if fault == "slowdown" else
                             _error_reply(500, "Internal Server Error", "InternalError",
                                          "We encountered an internal error. Please try again.",
                                          method == "HEAD"))
                    sock.sendall(reply)
                    continue
                if fault == "latency":
                    time.sleep(self._latency())
                try:
                    reply, keep = up.exchange(req)
                except (OSError, _ClientGone, ValueError):
                    with self._lock:
                        self.upstream_errors += 1
                    _reset(sock, f)
                    return
                if fault == "reset_after":
                    _reset(sock, f)  # the server applied it; the client never hears so
                    return
                if fault == "hold_reply":
                    time.sleep(self.config.hold)  # applied; the client hears so much later
                sock.sendall(reply)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (_ClientGone, ConnectionError, TimeoutError, ValueError):
            return
        except OSError:
            return
        finally:
            up.close()
            try:
                f.close()
                sock.close()
            except OSError:
                pass

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve_connection(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

            def shutdown_request(self, request: object) -> None:
                pass  # the handler closes (or resets) the socket itself

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        return int(self._server.server_address[1])

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.chaos.fault_proxy UPSTREAM [RATE] [SEED]``: serve until killed,
    printing the endpoint and, every 10 s, the fault counts."""
    import sys

    args = argv if argv is not None else sys.argv[1:]
    if not args:
        print(main.__doc__, file=sys.stderr)
        return 2
    rate = float(args[1]) if len(args) > 1 else 0.05
    seed = int(args[2]) if len(args) > 2 else 0
    with FaultProxy(args[0], FaultConfig.mix(rate), seed=seed) as proxy:
        print(proxy.endpoint_url, flush=True)
        while True:
            time.sleep(10)
            print(proxy.stats(), proxy.requests(), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
