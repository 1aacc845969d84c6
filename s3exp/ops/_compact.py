"""Compaction as every caller runs it: ``s3exp.compact`` (the tables, then the status
rollup), and ``compact_and_record`` (that, and its requests added to the cost records),
which the CLI's ``compact``, the compact Lambda and the demo use."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from s3exp.core import S3ExpError
from s3exp.ops._costs import record_requests
from s3exp.ops._rollup import write_status_rollup
from s3exp.stores import Store
from s3exp.tables import ORPHAN_AGE, CompactionReport, compact_tables

__all__ = ["compact", "compact_and_record"]

log = logging.getLogger(__name__)


def compact(store: Store, exp: str, *, part_rows: int = 1_000_000,
            retention: timedelta = timedelta(days=7), orphan_age: timedelta = ORPHAN_AGE,
            read_ahead: int | None = None, inject: Callable[[str], None] | None = None,
            housekeeping: bool = True) -> CompactionReport:
    """Compact newly finished runs of ``exp`` (:func:`s3exp.tables._compaction.compact_tables`,
    which documents the arguments); with ``housekeeping``, then rewrite the status rollup
    from the listing the compaction worked from.  Safe to run concurrently and to kill."""
    report = compact_tables(store, exp, part_rows=part_rows, retention=retention,
                            orphan_age=orphan_age, read_ahead=read_ahead, inject=inject,
                            housekeeping=housekeeping)
    if housekeeping:
        write_status_rollup(store, exp, spec=report.spec, listing=report.listing)
    return report


def compact_and_record(store: Store, exp: str, *, housekeeping: bool = True,
                       record_noop: bool = True) -> CompactionReport:
    """:func:`compact`, and the requests it made added to ``costs/<exp>/compactor.json``.

    ``record_noop=False`` records nothing when nothing was compacted (S3 events arrive
    for every shard and most find nothing to do: recording each would double its cost
    and make every event contend for one record).  A failure to record is logged, never
    raised: the compaction itself succeeded.
    """
    before = store.requests.snapshot()
    report = compact(store, exp, housekeeping=housekeeping)
    if record_noop or report.runs_compacted:
        try:
            record_requests(store, exp, before)
        except S3ExpError as e:
            log.warning("could not record the compaction's request counts for %s: %s", exp, e)
    return report
