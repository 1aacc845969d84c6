"""Fixtures of the chaos suite: a fault proxy in front of the session's SeaweedFS, and
pairs of stores on one bucket, one through the proxy and one straight to the server (the
test's own eyes, which no fault touches)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from s3exp.devserver._seaweed import SeaweedServer
from s3exp.stores import S3Store

from ..conftest import MakeS3Store
from .fault_proxy import FaultProxy


@pytest.fixture
def proxy(seaweed: SeaweedServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of SeaweedFS, injecting nothing until configured."""
    with FaultProxy(seaweed.endpoint_url, seed=1234) as p:
        yield p


@dataclass
class Stores:
    """One bucket and prefix seen two ways."""

    direct: S3Store
    """Straight to SeaweedFS: what the test reads its verdicts from."""
    proxied: S3Store
    """Through the fault proxy: what the code under test uses."""
    where: dict[str, str]
    """How a child process reaches the bucket through the proxy (tests/_run_workers style)."""


def proxied_store(seaweed: SeaweedServer, proxy: FaultProxy, bucket: str, prefix: str) -> S3Store:
    return S3Store(bucket, prefix, endpoint_url=proxy.endpoint_url, path_style=True,
                   credentials=(seaweed.credentials.access_key, seaweed.credentials.secret_key))


@pytest.fixture
def stores(seaweed: SeaweedServer, seaweed_bucket: MakeS3Store, proxy: FaultProxy) -> Iterator[Stores]:
    direct = seaweed_bucket("lab")
    through = proxied_store(seaweed, proxy, direct.bucket, "lab")
    where = {"kind": "s3", "endpoint": proxy.endpoint_url, "bucket": direct.bucket,
             "prefix": "lab", "access_key": seaweed.credentials.access_key,
             "secret_key": seaweed.credentials.secret_key}
    yield Stores(direct, through, where)
    through.close()
