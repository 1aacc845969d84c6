"""Experiment status over HTTP (Function URL with AWS_IAM auth, or HTTP API payload 2.0).

Environment: ``S3EXP_STORE`` (``s3://bucket/prefix``).  Read-only.
"""

from __future__ import annotations

import os
from typing import Any

from s3exp import open_store
from s3exp.serverless import parse_http_event, status_app

STORE = open_store(os.environ["S3EXP_STORE"])  # one client per container, reused


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return status_app(STORE, parse_http_event(event)).to_lambda()
