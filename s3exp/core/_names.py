"""Which names may become part of an object key.

Experiment, group, dataset and model names end up as key segments, Hive partition values
and file names, so they are held to a small safe alphabet.  Validation is the first line of
defence; :func:`s3exp.stores._base.check_key` is the second.
"""

from __future__ import annotations

import re

__all__ = ["MAX_NAME_BYTES", "name_problem", "param_name_problem", "safe_name"]

MAX_NAME_BYTES = 128
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+@:-]*$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_RESERVED_PARAMS = {"dataset", "model", "run_id", "attempt", "experiment", "replicate"}


def name_problem(name: object) -> str | None:
    """Return why ``name`` is not a safe key segment, or None if it is."""
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name:
        return "must not be empty"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if ".." in name:
        return "contains '..'"
    if name.startswith("."):
        return "starts with a dot"
    if "__" in name:
        return "contains '__' (reserved as the run id separator)"
    if not _NAME.match(name):
        return "may only use letters, digits and _ . + @ : - (starting with a letter, digit or _)"
    return None


_UNSAFE = re.compile(r"[^A-Za-z0-9_.+@:-]+")


def safe_name(text: str) -> str:
    """``text`` made into a name :func:`name_problem` accepts (for default ids built from
    a host name): runs of other characters become ``-``, ``..`` and ``__`` are collapsed."""
    out = _UNSAFE.sub("-", text)
    while ".." in out or "__" in out:
        out = out.replace("..", ".").replace("__", "_")
    out = out.lstrip(".+@:-") or "x"
    return out.encode()[:MAX_NAME_BYTES].decode(errors="ignore")


def param_name_problem(name: str) -> str | None:
    """Return why ``name`` cannot be a hyperparameter name, or None if it can."""
    if not _PARAM.match(name):
        return "parameter names must match [A-Za-z_][A-Za-z0-9_.-]* (at most 64 characters)"
    if name in _RESERVED_PARAMS:
        return f"{name!r} is reserved (it is a run field)"
    return None
