"""Stores: one small interface (:class:`Store`) and three backends chosen by URL.

=========================  ==============================================
``s3://bucket[/prefix]``   :class:`S3Store` (AWS S3 or any S3-compatible server)
``file:///abs/dir``        :class:`FileStore` (the embedded default)
a bare path                :class:`FileStore`
``memory://[name]``        :class:`MemoryStore` (one per name, per process)
=========================  ==============================================
"""

from __future__ import annotations

import re
import threading
import typing as _typing
from urllib.parse import unquote, urlsplit

from s3exp.core import ConfigError
from s3exp.stores._base import Blob, ObjectMeta, RequestCounter, Store
from s3exp.stores._file import FileStore
from s3exp.stores._memory import MemoryStore

if _typing.TYPE_CHECKING:
    from s3exp.stores._s3 import RetryPolicy, S3Store

__all__ = [
    "Blob",
    "FileStore",
    "MemoryStore",
    "ObjectMeta",
    "RequestCounter",
    "RetryPolicy",
    "S3Store",
    "Store",
    "open_store",
]

# S3's rules for bucket names (the lowercase, DNS-compatible ones every server accepts).
_BUCKET = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=+-]{0,127}$")
_URL_LOOKALIKE = re.compile(r"^(s3|s3a|s3n|file|memory|gs|gcs|az|abfs|abfss|hdfs|http|https|ftp|sftp):",
                            re.IGNORECASE)



def __getattr__(name: str) -> object:
    """``S3Store`` and ``RetryPolicy`` load boto3 (about 0.1 s): only when first used."""
    if name in ("RetryPolicy", "S3Store"):
        from s3exp.stores import _s3

        value = getattr(_s3, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 's3exp.stores' has no attribute {name!r}")


_memory_lock = threading.Lock()
_memory_stores: dict[str, MemoryStore] = {}


def open_store(
    url: str | Store,
    *,
    endpoint_url: str | None = None,
    path_style: bool | None = None,
) -> Store:
    """Open the store that ``url`` names; raise ConfigError for a URL s3exp cannot use.

    Nothing is written by opening a store.  ``endpoint_url`` and ``path_style`` apply to
    ``s3://`` URLs only.
    """
    if isinstance(url, Store):
        return url
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("store URL is empty")
    if any(ord(c) < 32 for c in url):
        raise ConfigError(f"store URL {url!r} contains control characters")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "s3":
        parts = urlsplit(url)
        bucket = parts.netloc
        if not _BUCKET.match(bucket) or re.match(r"^\d+\.\d+\.\d+\.\d+$", bucket):
            raise ConfigError(f"invalid S3 bucket name {bucket!r} in store URL {url!r}")
        if parts.query or parts.fragment:
            raise ConfigError(f"store URL {url!r} must not have a query or fragment")
        prefix = parts.path.strip("/")
        for segment in prefix.split("/") if prefix else []:
            if not _PREFIX_SEGMENT.match(segment):
                raise ConfigError(f"invalid prefix segment {segment!r} in store URL {url!r}")
        if endpoint_url is not None:
            ep = urlsplit(endpoint_url)
            if ep.scheme not in ("http", "https") or not ep.netloc:
                raise ConfigError(f"invalid endpoint URL {endpoint_url!r} (want http(s)://host:port)")
        from s3exp.stores._s3 import S3Store

        return S3Store(bucket, prefix, endpoint_url=endpoint_url, path_style=path_style)
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"file store URL {url!r} names a host; use file:///absolute/path")
        path = unquote(parts.path)
        if not path:
            raise ConfigError(f"file store URL {url!r} has no path")
        return FileStore(path)
    if scheme == "memory":
        name = url.split("://", 1)[1]
        with _memory_lock:
            return _memory_stores.setdefault(name, MemoryStore(name))
    if scheme:
        raise ConfigError(f"unsupported store URL scheme {scheme!r} in {url!r} (use s3://, file:// or a path)")
    lookalike = _URL_LOOKALIKE.match(url)
    if lookalike:  # "s3:bucket" or "file:dir" would otherwise become a directory of that name
        raise ConfigError(f"store URL {url!r} is missing '//' after {lookalike.group(1)!r}: "
                          "use s3://bucket/prefix, file:///absolute/path or a plain path")
    return FileStore(url)
