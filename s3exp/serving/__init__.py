"""Serving: the status app, one function from request to response (``_app``), its local
HTTP server (``_server``), and the Lambda events (``_lambda_events``).  Imports runs and
below (in fact ops and below)."""

import typing as _typing

from s3exp.core import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from s3exp.serving._app import (
        HttpRequest,
        HttpResponse,
        status_app,
    )
    from s3exp.serving._lambda_events import (
        CompactRequest,
        CompactSummary,
        compact_for_request,
        parse_compact_event,
        parse_http_event,
    )
    from s3exp.serving._server import make_server

__getattr__, __dir__ = _lazy_exports(__name__, {
    "CompactRequest": "._lambda_events",
    "CompactSummary": "._lambda_events",
    "HttpRequest": "._app",
    "HttpResponse": "._app",
    "compact_for_request": "._lambda_events",
    "make_server": "._server",
    "parse_compact_event": "._lambda_events",
    "parse_http_event": "._lambda_events",
    "status_app": "._app",
}, globals())

__all__ = [
    "CompactRequest",
    "CompactSummary",
    "HttpRequest",
    "HttpResponse",
    "compact_for_request",
    "make_server",
    "parse_compact_event",
    "parse_http_event",
    "status_app",
]
