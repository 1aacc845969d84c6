"""``s3exp serve``: the status app of the Lambda behind a local HTTP server (stdlib)."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from s3exp.serving._app import HttpRequest, status_app
from s3exp.stores import Store

__all__ = ["make_server"]


def make_server(store: Store, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """A server answering every request with :func:`status_app` on ``store``; the caller
    runs ``serve_forever()`` and ``server_close()``.  ``port=0`` picks a free port."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "s3exp"

        def _answer(self, head_only: bool) -> None:
            parts = urlsplit(self.path)
            req = HttpRequest(self.command, parts.path, dict(parse_qsl(parts.query)))
            resp = status_app(store, req)
            body = resp.body.encode()
            self.send_response(resp.status)
            self.send_header("content-type", resp.content_type)
            self.send_header("content-length", str(len(body)))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.end_headers()
            if not head_only:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self._answer(False)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(True)

        def do_POST(self) -> None:  # noqa: N802
            self._answer(False)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            sys.stderr.write(f"s3exp serve: {self.address_string()} {format % args}\n")

    return ThreadingHTTPServer((host, port), Handler)
