"""A loopback HTTP server that is not S3: it answers every request with an HTML page.

Started per case by the bad-input corpus, to play a web server, a captive portal or a
proxy's error page sitting where the S3 endpoint was expected.  It counts requests by
method, so a case can assert that the CLI gave up at the first reply instead of
retrying, writing, or reading the page as an empty bucket.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = ["HtmlEndpoint", "free_port"]

PAGE = b"""<!DOCTYPE html>
<html><head><title>Welcome</title></head>
<body><h1>It works!</h1><p>This is not an S3 server.</p></body></html>
"""


def free_port() -> int:
    """A loopback port that was free a moment ago (nothing listens there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HtmlEndpoint:
    """``with HtmlEndpoint(404) as ep: ep.url``: every request gets ``status`` and PAGE."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.methods: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                outer.methods[self.command] += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(outer.status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(PAGE)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HtmlEndpoint:
        self._thread.start()
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
