"""``s3://bucket/prefix``: AWS S3 and S3-compatible servers (SeaweedFS, MinIO, R2) via boto3.

botocore never crosses this module's boundary: every botocore error is translated by
:func:`s3exp.stores._s3_replies.translate` (one table) into an s3exp error with the original as ``__cause__``.

Retries live in :meth:`S3Store._call` alone.  botocore's own retries are switched off
(``max_attempts=1``), so a 412 is never retried by anyone; 5xx, SlowDown and connection
errors are retried here with capped exponential backoff and full jitter.

A conditional write whose reply was lost may have been applied.  Every conditional PUT
therefore carries a write id in its user metadata (``x-amz-meta-s3exp-write``, a random
UUID per logical write, the same on each retry of it).  When a retry of such a write
then fails its condition, one HEAD tells: if the stored object carries the write's id,
the write was its own and counts as a success; anything else, equal bytes included, is
another writer's.  A write whose retries all ended without a reply raises Unavailable and
is remembered with its id: the next write of that key with the same body reuses the id
(a heartbeat retries the very same body), so the HEAD after its condition fails
recognises the earlier write.  See "Recognising our own write" in docs/design.md.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar

import boto3
import botocore.config
import botocore.exceptions
import botocore.parsers
import botocore.session
import botocore.utils

from s3exp.core import (
    AlreadyExists,
    ConfigError,
    Conflict,
    ObjectNotFound,
    StoreError,
    Unavailable,
)
from s3exp.stores._base import (
    Blob,
    ObjectMeta,
    RequestCounter,
    Store,
    check_key,
    prefix_matches_nothing,
)
from s3exp.stores._s3_replies import (
    CONDITION_FAILED,
    THROTTLED,
    NotS3,
    check_s3_reply,
    error_code,
    http_status,
    parse_timestamp,
    translate,
)
from s3exp.stores._s3_writes import UnresolvedWrites

__all__ = ["RetryPolicy", "S3Store"]

T = TypeVar("T")

# The user-metadata name (``x-amz-meta-s3exp-write``) of the write id that every
# conditional PUT carries; S3 returns user metadata lower-cased, so it is lower case.
_WRITE_ID = "s3exp-write"
class RetryPolicy:
    """Capped exponential backoff with full jitter for transient store failures."""

    def __init__(self, attempts: int = 6, base: float = 0.05, cap: float = 5.0) -> None:
        self.attempts = attempts
        self.base = base
        self.cap = cap

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


class _Ambiguous(Exception):
    """Internal: a write may or may not have been applied (the reply was lost)."""


class S3Store(Store):
    """A bucket and key prefix on S3 or an S3-compatible server.

    Thread-safe (boto3 clients are).  ``endpoint_url`` ``None`` lets boto3 take it from
    ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` or use AWS; ``path_style`` defaults to
    path-style addressing whenever an endpoint is given, as local servers need.
    """

    parallel_gets = 16  # each GET is a round trip: keep several in flight

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        path_style: bool | None = None,
        region: str | None = None,
        credentials: tuple[str, str] | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_pool_connections: int = 32,
    ) -> None:
        # What rebuilds this store in another process (see __reduce__).
        self._options: dict[str, Any] = {
            "endpoint_url": endpoint_url, "path_style": path_style, "region": region,
            "credentials": credentials, "retry": retry, "connect_timeout": connect_timeout,
            "read_timeout": read_timeout, "max_pool_connections": max_pool_connections}
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.requests = RequestCounter()
        self.retry = retry or RetryPolicy()
        core = botocore.session.get_session()
        core.get_component("response_parser_factory").set_parser_defaults(
            timestamp_parser=parse_timestamp)
        session = boto3.session.Session(
            aws_access_key_id=credentials[0] if credentials else None,
            aws_secret_access_key=credentials[1] if credentials else None,
            botocore_session=core,
        )

        def client(style: Literal["auto", "path", "virtual"]) -> Any:
            config = botocore.config.Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_pool_connections=max_pool_connections,
                s3={"addressing_style": style},
            )
            try:
                return session.client(
                    "s3",
                    endpoint_url=endpoint_url,
                    region_name=region or session.region_name or "us-east-1",
                    config=config,
                )
            except botocore.exceptions.InvalidRegionError as e:
                raise ConfigError(f"invalid AWS region: {e}") from e
            except ValueError as e:  # botocore rejects malformed endpoint URLs with ValueError
                raise ConfigError(f"invalid endpoint URL {endpoint_url!r}: {e}") from e

        self._client: Any = client("path" if path_style else "auto")
        self.endpoint: str = self._client.meta.endpoint_url
        if path_style is None and not self.endpoint.split("/")[2].endswith("amazonaws.com"):
            # A custom endpoint (from the argument or AWS_ENDPOINT_URL*): local servers
            # rarely resolve virtual-hosted bucket names, so use path-style.
            self._client = client("path")
        self._clock_lock = threading.Lock()
        self._clock_anchor: tuple[datetime, float] | None = None
        # Writes that ended in Unavailable after a try that may have been applied: key ->
        # body digest and write id.  A later write of the key with the same body reuses
        # the id, and if its condition fails, a HEAD looks for the id (see
        # _earlier_write_landed).  Bounded; oldest forgotten first.
        self._unresolved = UnresolvedWrites()
        # Some servers (SeaweedFS) create a missing bucket on the first PUT.  Before the
        # first write, one HEAD makes sure the bucket exists, unless a request already
        # succeeded (then it does).  Workers read the spec first, so they never pay it.
        self._bucket_seen = False
        events = self._client.meta.events
        events.register("before-send.s3", self._count_request)
        events.register("after-call.s3", self._note_date)
        events.register("after-call.s3", check_s3_reply)

    # -- request accounting and the server clock ------------------------------------

    def _count_request(self, request: Any, **_: Any) -> None:
        method = request.method
        if method == "GET" and "list-type=" in request.url:
            self.requests.add("LIST")
        else:
            self.requests.add(method)

    def _note_date(self, http_response: Any = None, **_: Any) -> None:
        date = http_response.headers.get("Date") if http_response is not None else None
        if date:
            try:
                server = parsedate_to_datetime(date)
            except (TypeError, ValueError):
                return
            with self._clock_lock:
                self._clock_anchor = (server.astimezone(UTC), time.monotonic())

    def server_time(self) -> datetime:
        """The server's clock, from the ``Date`` header of its latest reply plus the time
        elapsed since (monotonic).  Resolution is one second, as the header's."""
        with self._clock_lock:
            anchor = self._clock_anchor
        if anchor is None or time.monotonic() - anchor[1] > 60:
            self._probe_bucket()  # any reply carries Date
            with self._clock_lock:
                anchor = self._clock_anchor
            if anchor is None:
                raise StoreError("the S3 server sent no Date header; cannot read its clock")
        return anchor[0] + timedelta(seconds=time.monotonic() - anchor[1])

    # -- the one retry wrapper and the one error table ------------------------------

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, fn: Callable[[], T], key: str | None, *, write: bool = False) -> T:
        """Run ``fn`` with retries on transient failures; translate every error.

        For writes, a transient failure is ambiguous (the server may have applied it), so
        a later condition failure is reported as :class:`_Ambiguous` for the caller to
        resolve by its write id.  A condition failure is never retried: a 412 is the
        server's answer, and a 409 (ConditionalRequestConflict: a conflicting write of the
        key was in flight) is reported like one, as a write that was not applied.
        """
        ambiguous = False
        for attempt in range(self.retry.attempts):
            try:
                result = fn()
                self._bucket_seen = True
                return result
            except botocore.exceptions.ClientError as e:
                code, status = error_code(e), http_status(e)
                if code in CONDITION_FAILED or status in (409, 412):
                    if ambiguous:
                        raise _Ambiguous() from e
                    raise
                if ambiguous and status == 404 and code != "NoSuchBucket":
                    # If-Match on a key that is gone (AWS says 404, not 412): our own
                    # earlier try may be what removed it.  Resolved by the caller too.
                    raise _Ambiguous() from e
                if (code in THROTTLED or status >= 500) and attempt + 1 < self.retry.attempts:
                    ambiguous = ambiguous or write
                    time.sleep(self.retry.delay(attempt))
                    continue
                raise translate(e, key, self) from e
            except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError,
                    botocore.exceptions.IncompleteReadError) as e:
                # EndpointConnectionError (nothing listening) can never have been applied.
                if not isinstance(e, botocore.exceptions.EndpointConnectionError):
                    ambiguous = ambiguous or write
                if attempt + 1 < self.retry.attempts:
                    time.sleep(self.retry.delay(attempt))
                    continue
                raise Unavailable(f"cannot reach S3 endpoint {self.endpoint}: {e}", key) from e
            except NotS3 as e:
                raise ConfigError(f"the endpoint {self.endpoint} does not answer like an S3 server "
                                  f"({e}); check --endpoint-url / AWS_ENDPOINT_URL") from None
            except botocore.parsers.ResponseParserError as e:
                # A reply that is not S3's XML: a proxy or a cut connection.  Retried like a
                # connection error, since a write's reply that is lost may have been applied.
                ambiguous = ambiguous or write
                if attempt + 1 < self.retry.attempts:
                    time.sleep(self.retry.delay(attempt))
                    continue
                raise Unavailable(f"the endpoint {self.endpoint} kept sending replies that are "
                                  "not S3 XML (is it an S3 server?)", key) from e
            except botocore.exceptions.NoCredentialsError as e:
                raise ConfigError(f"no AWS credentials found for {self.url} (set AWS_ACCESS_KEY_ID "
                                  "and AWS_SECRET_ACCESS_KEY, or a profile)") from e
            except botocore.exceptions.ParamValidationError as e:
                raise ConfigError(f"invalid request for {self.url}: {e}") from e
            except botocore.exceptions.BotoCoreError as e:
                raise StoreError(f"S3 request failed for {self.url}: {e}", key) from e
        raise AssertionError("unreachable")  # pragma: no cover

    # -- recognising our own write (see "Recognising our own write" in docs/design.md) --

    def _is_own_write(self, key: str, data: bytes, write_id: str) -> ObjectMeta | None:
        """One HEAD: the stored object's metadata if it carries ``write_id``, else None.

        Only this store's write of ``data`` can carry the id, so a match means that write
        is the one stored; another writer's object, even with equal bytes, never matches.
        If the HEAD itself raises Unavailable, the write stays unresolved (remembered)."""
        try:
            meta, stored_id = self._head(key)
        except ObjectNotFound:
            self._unresolved.forget(key)
            return None
        except Unavailable:
            self._unresolved.note(key, data, write_id)
            raise
        self._unresolved.forget(key)  # resolved, whichever way: nothing left to repeat
        return meta if stored_id == write_id else None

    def _earlier_write_landed(self, key: str, data: bytes, write_id: str) -> ObjectMeta | None:
        """After a plain condition failure of a write of ``key`` with id ``write_id``: if
        an earlier write of the key ended in Unavailable (its replies lost, its retries
        spent), it may have been applied, and be what this write's condition now fails
        on.  It counts as this write only if this write repeats it (same body, so the
        same id, see :meth:`UnresolvedWrites.write_id`) and the stored object carries
        that id.  The memory of the key is spent, unless the HEAD raises Unavailable."""
        if not self._unresolved.take(key, write_id):
            return None  # nothing pending, or a different body: a real condition failure
        return self._is_own_write(key, data, write_id)

    # -- the store interface --------------------------------------------------------

    def get(self, key: str) -> Blob:
        full = self._full(key)
        def fetch() -> tuple[Any, bytes]:
            # The body is read inside the retried call: a connection cut mid-body is
            # retried like any other transient failure.
            r = self._client.get_object(Bucket=self.bucket, Key=full)
            return r, r["Body"].read()

        try:
            r, data = self._call(fetch, key)
        except botocore.exceptions.ClientError as e:  # pragma: no cover - conditions unused
            raise translate(e, key, self) from e
        return Blob(data, ObjectMeta(key, r["ETag"], len(data), r["LastModified"].astimezone(UTC)))

    def head(self, key: str) -> ObjectMeta:
        return self._head(key)[0]

    def _head(self, key: str) -> tuple[ObjectMeta, str | None]:
        """HEAD ``key``: its metadata and the write id it was stored with (None if the
        writer gave none: an s3exp older than write ids, or another tool)."""
        full = self._full(key)
        r = self._call(lambda: self._client.head_object(Bucket=self.bucket, Key=full), key)
        meta = ObjectMeta(key, r["ETag"], int(r["ContentLength"]), r["LastModified"].astimezone(UTC))
        user: dict[str, str] = r.get("Metadata") or {}
        return meta, user.get(_WRITE_ID)

    def _probe_bucket(self) -> None:
        """The cheapest request that needs the bucket: a one-key LIST of our own prefix,
        or HeadBucket at the bucket's root.  Not HeadBucket under a prefix: the
        least-privilege policies (s3exp infra policy) grant s3:ListBucket only under an
        s3:prefix condition, which a HeadBucket never satisfies."""
        if self.prefix:
            self._call(lambda: self._client.list_objects_v2(
                Bucket=self.bucket, Prefix=f"{self.prefix}/", MaxKeys=1), None)
        else:
            self._call(lambda: self._client.head_bucket(Bucket=self.bucket), None)

    def _check_bucket(self) -> None:
        """Raise ConfigError if the bucket does not exist (see ``_bucket_seen``)."""
        try:
            self._probe_bucket()
        except ObjectNotFound:  # HEAD replies have no body, so no NoSuchBucket code
            raise ConfigError(f"bucket {self.bucket!r} does not exist at {self.endpoint}") from None

    def _put(self, key: str, data: bytes, write_id: str, **condition: str) -> ObjectMeta:
        """One logical conditional write: every retry sends the same ``write_id``."""
        full = self._full(key)
        if not self._bucket_seen:
            self._check_bucket()
        metadata = {_WRITE_ID: write_id}
        try:
            r = self._call(
                lambda: self._client.put_object(Bucket=self.bucket, Key=full, Body=data,
                                                Metadata=metadata, **condition),
                key,
                write=True,
            )
        except Unavailable:
            # It may have been applied: nobody can tell yet.
            self._unresolved.note(key, data, write_id)
            raise
        self._unresolved.forget(key)
        # PutObject returns no Last-Modified; the Date of its reply is the server's write time.
        return ObjectMeta(key, r["ETag"], len(data), self._reply_time(r))

    def _reply_time(self, r: dict[str, Any]) -> datetime:
        date = r.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        return parsedate_to_datetime(date).astimezone(UTC) if date else self.server_time()

    def put_if_absent(self, key: str, data: bytes) -> ObjectMeta:
        """Create ``key``; raise AlreadyExists if it exists.  A create whose reply was
        lost and whose retry then found the key is a success if the key holds this
        create (its write id); Unavailable if that cannot be known."""
        write_id = self._unresolved.write_id(key, data)
        try:
            return self._put(key, data, write_id, IfNoneMatch="*")
        except _Ambiguous:
            own = self._is_own_write(key, data, write_id)
            if own is not None:
                return own
            raise AlreadyExists(f"{key!r} already exists", key) from None
        except botocore.exceptions.ClientError as e:
            own = self._earlier_write_landed(key, data, write_id)
            if own is not None:
                return own
            raise AlreadyExists(f"{key!r} already exists", key) from e

    def put_if_match(self, key: str, data: bytes, etag: str) -> ObjectMeta:
        """Replace ``key`` if its ETag is ``etag``; raise Conflict otherwise or if missing.
        Lost replies are resolved by write id as in :meth:`put_if_absent`."""
        write_id = self._unresolved.write_id(key, data)
        try:
            return self._put(key, data, write_id, IfMatch=etag)
        except _Ambiguous:
            own = self._is_own_write(key, data, write_id)
            if own is not None:
                return own
            raise Conflict(f"{key!r} changed or is gone (expected ETag {etag})", key) from None
        except botocore.exceptions.ClientError as e:
            own = self._earlier_write_landed(key, data, write_id)
            if own is not None:
                return own
            raise Conflict(f"{key!r} changed or is gone (expected ETag {etag})", key) from e
        except ObjectNotFound as e:  # some servers answer 404 for If-Match on a missing key
            raise Conflict(f"{key!r} is gone (expected ETag {etag})", key) from e

    def delete_if_match(self, key: str, etag: str) -> None:
        full = self._full(key)
        try:
            self._call(
                lambda: self._client.delete_object(Bucket=self.bucket, Key=full, IfMatch=etag),
                key,
                write=True,
            )
        except _Ambiguous:
            try:
                self.head(key)
            except ObjectNotFound:
                return  # our delete was applied before its reply was lost
            raise Conflict(f"{key!r} changed (expected ETag {etag})", key) from None
        except botocore.exceptions.ClientError as e:
            raise Conflict(f"{key!r} changed or is gone (expected ETag {etag})", key) from e
        except ObjectNotFound as e:
            raise Conflict(f"{key!r} is gone (expected ETag {etag})", key) from e

    def list(self, prefix: str) -> Iterator[ObjectMeta]:
        if prefix_matches_nothing(prefix):
            return iter([])  # SeaweedFS would read "a//" as "a/"
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        token: str | None = None
        found: list[ObjectMeta] = []
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
            if token:
                kwargs["ContinuationToken"] = token
            r = self._call(lambda: self._client.list_objects_v2(**kwargs), None)
            for o in r.get("Contents", []):
                found.append(ObjectMeta(o["Key"][strip:], o["ETag"], int(o["Size"]),
                                        o["LastModified"].astimezone(UTC)))
            token = r.get("NextContinuationToken")
            if not r.get("IsTruncated") or not token:
                break
        # AWS lists in binary key order, but SeaweedFS lists directory by directory
        # ("a/b/x" before "a/b-1"), so sort here to keep the Store contract everywhere.
        found.sort(key=lambda m: m.key.encode())
        return iter(found)

    # -- administration -------------------------------------------------------------

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (used by the dev server and tests)."""
        try:
            self._call(lambda: self._client.create_bucket(Bucket=self.bucket), None)
        except botocore.exceptions.ClientError as e:
            # A 409 comes back untranslated from _call (it reads as a failed condition).
            if error_code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise translate(e, None, self) from e
            self._bucket_seen = True

    def close(self) -> None:
        self._client.close()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as the arguments that made it (explicit credentials included; those from
        the environment or a profile are found again where it is unpickled), not as its
        client: an Optuna storage is pickled to reach other processes."""
        return (functools.partial(S3Store, **self._options), (self.bucket, self.prefix))
