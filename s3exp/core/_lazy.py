"""Package-level names loaded on first use (PEP 562), for the packages' ``__init__``.

Each package re-exports its public names from its private modules.  Loading them all on
``import`` would make ``import s3exp`` and every one-line CLI error pay for pyarrow,
boto3 and the rest; so a package's ``__init__`` lists where each name lives, imports them
only under ``TYPE_CHECKING`` (for mypy and for the import graph that import-linter
checks), and resolves a name when it is first read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, str], eager: dict[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``where`` maps each lazy name to the
    submodule (relative, e.g. ``"._reading"``) that defines it; ``eager`` is the package's
    ``globals()``, where a resolved name is stored so that later reads are plain."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        eager[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(eager) | set(where))

    return __getattr__, __dir__
