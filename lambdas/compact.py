"""Compact staged metric shards: triggered by S3 ObjectCreated on staging/ and a schedule.

Environment: ``S3EXP_STORE`` (``s3://bucket/prefix``).  At-least-once delivery is safe:
compaction is idempotent, so a duplicate, late or reordered event finds nothing new.
"""

from __future__ import annotations

import os
from typing import Any

from s3exp import open_store
from s3exp.serverless import compact_for_request, parse_compact_event

STORE = open_store(os.environ["S3EXP_STORE"])  # one client per container, reused


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return compact_for_request(STORE, parse_compact_event(event, STORE)).to_dict()
