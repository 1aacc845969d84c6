"""Where a result came from: host, interpreter, package versions, git state."""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from typing import Any

from s3exp._version import __version__

__all__ = ["KEY_PACKAGES", "provenance"]

KEY_PACKAGES = (
    "numpy", "pandas", "scikit-learn", "scipy", "torch", "jax", "tensorflow", "xgboost",
    "lightgbm", "catboost", "pyarrow",
)


def _versions(packages: tuple[str, ...]) -> dict[str, str]:
    out = {"s3exp": __version__}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _git(cwd: str) -> dict[str, Any] | None:
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()

    try:
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


@functools.lru_cache(maxsize=8)
def provenance(cwd: str | None = None, packages: tuple[str, ...] = KEY_PACKAGES) -> dict[str, Any]:
    """Facts about this process that do not change between runs; computed once."""
    cwd = cwd or os.getcwd()
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": _versions(packages),
        "cwd": cwd,
        "git": _git(cwd),
    }
