"""How a stored record is encoded: one JSON object with a ``format`` tag, and how a body
is read back, every mistake a :class:`~s3exp.DamagedObject` naming the key.

The records themselves are defined in :mod:`s3exp.bucket._records`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from s3exp.core import DamagedObject

__all__ = ["Body", "decode", "encode", "parse"]

R = TypeVar("R")
_MISSING: Any = object()


class Body:
    """Reads the fields of one parsed body; every mistake is a DamagedObject of ``key``."""

    __slots__ = ("key", "raw")

    def __init__(self, raw: dict[str, Any], key: str) -> None:
        self.raw, self.key = raw, key

    def get(self, name: str, kind: type[Any] | tuple[type[Any], ...], default: Any = _MISSING) -> Any:
        if name not in self.raw:
            if default is _MISSING:
                raise DamagedObject(self.key, f"no field {name!r}")
            return default
        value = self.raw[name]
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind in (int, float, (int, float)))
        if not ok and not (value is None and default is None):
            raise DamagedObject(self.key, f"field {name!r} is {type(value).__name__}, "
                                          f"not {getattr(kind, '__name__', kind)}")
        return value

    def number(self, name: str, default: Any = _MISSING) -> float:
        return float(self.get(name, (int, float), default))


def decode(data: bytes, key: str, fmt: str) -> Body:
    if not data:
        raise DamagedObject(key, "empty")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise DamagedObject(key, f"not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise DamagedObject(key, f"not a JSON object but {type(raw).__name__}")
    tag = raw.get("format", fmt)
    if tag != fmt:
        raise DamagedObject(key, f"format {tag!r}; this version of s3exp reads {fmt!r}")
    return Body(raw, key)


def encode(fmt: str, body: dict[str, Any], *, indent: int | None = None) -> bytes:
    # No indent on hot paths: with one, json falls back to its pure-Python encoder.
    text = json.dumps({"format": fmt, **body}, separators=(",", ":") if indent is None else None,
                      indent=indent, default=str, allow_nan=True, ensure_ascii=False)
    return (text + "\n").encode()


def parse(cls: type[R], data: bytes, key: str, fmt: str, build: Callable[[Body], R]) -> R:
    body = decode(data, key, fmt)
    try:
        return build(body)
    except DamagedObject:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise DamagedObject(key, f"not a {cls.__name__}: {e}") from None
