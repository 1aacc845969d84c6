"""``file:///dir`` (or a bare path): the embedded default store, a plain directory.

How the conditional writes stay atomic across processes:

* Every body is first written to a temp file under ``<root>/.s3exp/tmp`` (same
  filesystem) and fsynced, so a reader never sees half an object.
* ``put_if_absent`` publishes it with ``os.link(tmp, final)``, which fails atomically
  with EEXIST if the key exists: exactly one creator wins, without any lock.
* ``put_if_match`` and ``delete_if_match`` hold an exclusive ``flock`` on a lock file per
  key while they compare the ETag and ``os.replace`` / ``os.unlink``.  A creator never
  needs that lock: it can only succeed when the key is absent, and making a key absent
  takes the lock.
* The ETag is ``inode-mtime_ns-size`` of the file, read by ``fstat`` on the open file, so
  it changes with every publish (each publish is a new inode) and always describes the
  bytes that were read.
* The server clock is the filesystem's: a private file is touched and its mtime read.  On
  NFS that is the file server's clock, the same clock that stamped the objects.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import uuid
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from s3exp.core import AlreadyExists, ConfigError, Conflict, ObjectNotFound, StoreError
from s3exp.stores._base import (
    Blob,
    ObjectMeta,
    RequestCounter,
    Store,
    check_key,
    prefix_matches_nothing,
)

__all__ = ["FileStore"]

_INTERNAL = ".s3exp"


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'


def _meta(key: str, st: os.stat_result) -> ObjectMeta:
    return ObjectMeta(key, _etag(st), st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))


class FileStore(Store):
    """A directory as a store.  Safe for many processes on one machine, and on a shared
    filesystem whose ``link``, ``rename`` and ``flock`` are atomic (local disks, NFSv4)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self._root_str = str(self.root)
        self.url = f"file://{self.root}"
        self.requests = RequestCounter()
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"store path {str(self.root)!r} exists and is not a directory")
        self._tmp = self.root / _INTERNAL / "tmp"
        self._locks = self.root / _INTERNAL / "locks"
        self._clock_file: Path | None = None
        self._clock_cleanup: weakref.finalize[[Path], FileStore] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its root: a copy in another process opens the same directory."""
        return (FileStore, (str(self.root),))

    def _ensure_dirs(self) -> None:
        if not self._tmp.is_dir():
            try:
                self._tmp.mkdir(parents=True, exist_ok=True)
                self._locks.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot create store directory {str(self.root)!r}: {e.strerror}") from e

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _write_temp(self, data: bytes) -> Path:
        self._ensure_dirs()
        tmp = self._tmp / uuid.uuid4().hex
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    def _lock(self, key: str) -> int:
        self._ensure_dirs()
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        fd = os.open(self._locks / name, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def get(self, key: str) -> Blob:
        # A string path, not _path()'s Path: compaction GETs thousands of small shards,
        # and pathlib's parsing was a third of the cost of each.
        path = os.path.join(self._root_str, *check_key(key).split("/"))
        self.requests.add("GET")
        try:
            with open(path, "rb", buffering=0) as f:
                st = os.fstat(f.fileno())
                data = f.readall()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object at {key!r}", key) from None
        except IsADirectoryError:
            raise ObjectNotFound(f"no object at {key!r}", key) from None
        return Blob(data, _meta(key, st))

    def head(self, key: str) -> ObjectMeta:
        path = self._path(key)
        self.requests.add("HEAD")
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object at {key!r}", key) from None
        if not path.is_file():
            raise ObjectNotFound(f"no object at {key!r}", key)
        return _meta(key, st)

    def put_if_absent(self, key: str, data: bytes) -> ObjectMeta:
        path = self._path(key)
        self.requests.add("PUT")
        if os.path.lexists(path):
            # It exists now, so a create fails now: no need to write and fsync a body
            # first (a lost claim race is the common case).
            raise AlreadyExists(f"{key!r} already exists", key)
        tmp = self._write_temp(data)
        try:
            try:
                os.link(tmp, path)
            except FileNotFoundError:
                # The key's directory does not exist yet (making it first, every time, cost
                # five mkdir calls per run).
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise StoreError(f"{key!r} collides with another key", key) from e
                os.link(tmp, path)
            # The published inode is the temp file's: same ETag, mtime of the write.
            return _meta(key, os.stat(tmp))
        except FileExistsError:
            raise AlreadyExists(f"{key!r} already exists", key) from None
        except NotADirectoryError as e:  # a file where one of the key's directories would be
            raise StoreError(f"{key!r} collides with another key", key) from e
        finally:
            tmp.unlink(missing_ok=True)

    def put_if_match(self, key: str, data: bytes, etag: str) -> ObjectMeta:
        path = self._path(key)
        self.requests.add("PUT")
        tmp = self._write_temp(data)
        fd = self._lock(key)
        try:
            try:
                current = _etag(path.stat())
            except FileNotFoundError:
                current = None
            if current != etag:
                raise Conflict(f"{key!r} changed or is gone (expected ETag {etag})", key)
            st = os.stat(tmp)
            os.replace(tmp, path)
            return _meta(key, st)
        finally:
            os.close(fd)  # closing releases the flock
            tmp.unlink(missing_ok=True)

    def delete_if_match(self, key: str, etag: str) -> None:
        path = self._path(key)
        self.requests.add("DELETE")
        fd = self._lock(key)
        try:
            try:
                current = _etag(path.stat())
            except FileNotFoundError:
                current = None
            if current != etag:
                raise Conflict(f"{key!r} changed or is gone (expected ETag {etag})", key)
            path.unlink()
        finally:
            os.close(fd)

    def list(self, prefix: str) -> Iterator[ObjectMeta]:
        self.requests.add("LIST")
        # Walk only the deepest directory that the prefix fully names.
        if prefix_matches_nothing(prefix):
            return iter([])  # and never walk outside the root ("../")
        head, _, _ = prefix.rpartition("/")
        base = self.root.joinpath(*head.split("/")) if head else self.root
        found: list[ObjectMeta] = []
        # A scandir walk that builds keys as it goes (os.walk plus relpath per directory
        # cost three times as much CPU: a claimer's LIST of 2,000 runs took 50 ms).  As
        # os.walk did: symlinked directories are not entered, and files are stat()ed.
        stack = [(str(base), f"{head}/" if head else "")]
        while stack:
            dirpath, rel_dir = stack.pop()
            try:
                entries = os.scandir(dirpath)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while we walked, or a file where a directory would be
            with entries:
                for entry in entries:
                    key = rel_dir + entry.name
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        continue
                    if is_dir:
                        sub = key + "/"
                        # Prune directories that cannot hold a matching key.
                        if (not rel_dir and entry.name == _INTERNAL) or entry.is_symlink() or not (
                                sub.startswith(prefix) or prefix.startswith(sub)):
                            continue
                        stack.append((entry.path, sub))
                    elif key.startswith(prefix):
                        try:
                            found.append(_meta(key, entry.stat()))
                        except FileNotFoundError:
                            pass  # deleted while we walked
        found.sort(key=lambda m: m.key.encode())
        return iter(found)

    def server_time(self) -> datetime:
        self._ensure_dirs()
        if self._clock_file is None:
            self._clock_file = self._tmp / f"clock-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self._clock_file.touch()
            # Removed by close(), or when the store is collected or the process exits:
            # a CLI command that ends in an error must not leave it behind.
            self._clock_cleanup = weakref.finalize(self, _remove, self._clock_file)
        os.utime(self._clock_file, None)  # "now" as the filesystem (server) sees it
        return datetime.fromtimestamp(self._clock_file.stat().st_mtime, UTC)

    def close(self) -> None:
        if self._clock_cleanup is not None:
            self._clock_cleanup()
            self._clock_cleanup = None
        self._clock_file = None
