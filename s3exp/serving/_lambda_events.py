"""Lambda events parsed into small models, and the one library call behind each handler.

The compact handler is triggered by S3 ``ObjectCreated`` notifications on the staging
prefix (several records, several experiments, in one event) and by an EventBridge
schedule.  Delivery is at least once, possibly late and out of order; that is harmless
because :func:`s3exp.compact` is idempotent: it compacts whatever finished runs the
manifest does not hold yet, whichever event asked for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from s3exp.bucket import keys
from s3exp.core import NotFoundError, name_problem
from s3exp.ops import compact_and_record
from s3exp.serving._app import HttpRequest
from s3exp.specs import list_experiments
from s3exp.stores import S3Store, Store

__all__ = ["CompactRequest", "CompactSummary", "compact_for_request", "parse_compact_event",
           "parse_http_event"]


@dataclass(frozen=True, slots=True)
class CompactRequest:
    """What an event asks the compactor to do: some experiments, or all (``None``)."""

    source: str
    experiments: tuple[str, ...] | None
    ignored_records: int = 0


@dataclass(slots=True)
class CompactSummary:
    """The compact handler's reply."""

    source: str
    compacted: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    ignored_records: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _location(store: Store) -> tuple[str | None, str]:
    """(bucket, key prefix) that S3 event keys of this store carry."""
    if isinstance(store, S3Store):
        return store.bucket, f"{store.prefix}/" if store.prefix else ""
    return None, ""


def parse_compact_event(event: Mapping[str, Any], store: Store) -> CompactRequest:
    """Read an S3 notification, an EventBridge "Object Created" event or a scheduled event.

    Records for another bucket, outside the store's staging prefix, or naming an invalid
    experiment are counted in ``ignored_records`` and otherwise ignored.
    """
    bucket, prefix = _location(store)
    staging = f"{prefix}{keys.STAGING}"
    if event.get("detail-type") == "Scheduled Event" or event.get("source") == "aws.events":
        return CompactRequest("schedule", None)
    pairs: list[tuple[str, str]] = []  # (bucket, key)
    if event.get("detail-type") == "Object Created":
        detail = event.get("detail") or {}
        pairs.append((str((detail.get("bucket") or {}).get("name", "")),
                      str((detail.get("object") or {}).get("key", ""))))
        source = "eventbridge"
    elif isinstance(event.get("Records"), list):
        for rec in event["Records"]:
            s3 = rec.get("s3") or {} if isinstance(rec, Mapping) else {}
            # Notification keys are URL-encoded, with "+" for a space.
            pairs.append((str((s3.get("bucket") or {}).get("name", "")),
                          unquote_plus(str((s3.get("object") or {}).get("key", "")))))
        source = "s3"
    else:
        return CompactRequest("unknown", (), ignored_records=1)
    names: list[str] = []
    ignored = 0
    for b, key in pairs:
        exp = key[len(staging):].split("/", 1)[0] if key.startswith(staging) else ""
        if (bucket is not None and b != bucket) or name_problem(exp) is not None:
            ignored += 1
        elif exp not in names:
            names.append(exp)
    return CompactRequest(source, tuple(names), ignored)


def compact_for_request(store: Store, request: CompactRequest) -> CompactSummary:
    """Compact each experiment the request names (all, for a schedule).

    Only the schedule does housekeeping (staging expiry, orphan collection, the status
    rollup): S3 events arrive for every shard upload and most find nothing to do, which
    then costs a GET of the spec and of the manifest and a LIST of the runs, not a LIST of
    every shard.  Such a no-op is not added to the cost records either (that would double
    its cost and make every event contend for one record); the schedule's and every
    productive compaction's requests are.
    """
    summary = CompactSummary(request.source, ignored_records=request.ignored_records)
    schedule = request.experiments is None
    names = list_experiments(store) if request.experiments is None else request.experiments
    for name in names:
        try:
            report = compact_and_record(store, name, housekeeping=schedule, record_noop=schedule)
        except NotFoundError as e:
            summary.skipped[name] = str(e)  # shards of an experiment that is not (or no longer) there
            continue
        summary.compacted[name] = report.to_dict()
    return summary


def parse_http_event(event: Mapping[str, Any]) -> HttpRequest:
    """A Function URL or API Gateway HTTP API (payload 2.0) event as an HttpRequest."""
    http = (event.get("requestContext") or {}).get("http") or {}
    method = str(http.get("method") or event.get("httpMethod") or "GET")
    path = str(event.get("rawPath") or http.get("path") or "/")
    query = {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
    return HttpRequest(method, path, query)
