"""What the Lambda handlers in ``lambdas/`` are written against.

Each handler parses its event into a model, calls one function here and returns a model::

    compact:  parse_compact_event -> compact_for_request -> CompactSummary.to_dict()
    status:   parse_http_event    -> status_app          -> HttpResponse.to_lambda()

``s3exp serve`` runs :func:`status_app` behind a local HTTP server.
"""

from s3exp.serving import (
    CompactRequest,
    CompactSummary,
    HttpRequest,
    HttpResponse,
    compact_for_request,
    parse_compact_event,
    parse_http_event,
    status_app,
)

__all__ = [
    "CompactRequest",
    "CompactSummary",
    "HttpRequest",
    "HttpResponse",
    "compact_for_request",
    "parse_compact_event",
    "parse_http_event",
    "status_app",
]
