"""One compaction as every caller runs it: the CLI's ``compact``, the compact Lambda and
the demo."""

from __future__ import annotations

import logging

from s3exp.core._errors import S3ExpError
from s3exp.ops._costs import record_requests
from s3exp.stores import Store
from s3exp.tables._compaction import CompactionReport, compact

__all__ = ["compact_and_record"]

log = logging.getLogger(__name__)


def compact_and_record(store: Store, exp: str, *, housekeeping: bool = True,
                       record_noop: bool = True) -> CompactionReport:
    """Compact ``exp`` and add the requests it made to ``costs/<exp>/compactor.json``.

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
