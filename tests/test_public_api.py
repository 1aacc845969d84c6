"""The public surface is exactly what ``__all__`` lists (httpx's rule)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types

import pytest

import s3exp
import s3exp.serverless
import s3exp.stores


def _public_names(module: types.ModuleType) -> set[str]:
    """Names a module binds that do not start with "_", leaving out submodules."""
    return {n for n, v in vars(module).items()
            if not n.startswith("_") and not isinstance(v, types.ModuleType)
            and n != "annotations"}


MODULES = [s3exp, s3exp.stores, s3exp.serverless]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_all_is_sorted_and_unique(module: types.ModuleType) -> None:
    names = list(module.__all__)
    assert len(names) == len(set(names))
    assert names == sorted(names)


def test_package_exports_exactly_all() -> None:
    """Every public name ``s3exp/__init__.py`` binds is in ``__all__``, and vice versa
    (once the lazily imported ones have been touched)."""
    for name in s3exp.__all__:
        getattr(s3exp, name)
    assert _public_names(s3exp) == set(s3exp.__all__) - {"__version__"}
    assert set(dir(s3exp)) >= set(s3exp.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        s3exp.Nope  # noqa: B018
    assert _public_names(s3exp.serverless) == set(s3exp.serverless.__all__)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_every_listed_name_imports(module: types.ModuleType) -> None:
    fresh = importlib.import_module(module.__name__)
    for name in module.__all__:
        assert getattr(fresh, name) is not None, name
        namespace: dict[str, object] = {}
        exec(f"from {module.__name__} import {name}", namespace)  # noqa: S102
        assert namespace[name] is getattr(module, name)


def test_version() -> None:
    assert "__version__" in s3exp.__all__
    parts = s3exp.__version__.split(".")
    assert len(parts) >= 2 and all(p.isdigit() for p in parts[:2])


def test_every_public_error_is_in_the_drawn_tree() -> None:
    """Errors derive from S3ExpError; the one documented exception is Interrupted, a
    KeyboardInterrupt so that ``except Exception`` in training code cannot swallow it."""
    errors = [getattr(s3exp, n) for n in s3exp.__all__
              if isinstance(getattr(s3exp, n), type) and issubclass(getattr(s3exp, n), BaseException)]
    assert len(errors) >= 9
    for e in errors:
        if e.__name__ == "Interrupted":
            assert issubclass(e, KeyboardInterrupt) and not issubclass(e, Exception)
        else:
            assert issubclass(e, s3exp.S3ExpError), e
    for e in (s3exp.AlreadyExists, s3exp.Conflict, s3exp.ObjectNotFound, s3exp.Unavailable):
        assert issubclass(e, s3exp.StoreError)
    assert issubclass(s3exp.SpecError, ValueError)


def test_store_implementations_share_the_interface() -> None:
    for cls in (s3exp.MemoryStore, s3exp.FileStore, s3exp.S3Store):
        assert issubclass(cls, s3exp.Store)
    assert s3exp.Store.__abstractmethods__ >= {
        "get", "head", "put_if_absent", "put_if_match", "delete_if_match", "list", "server_time"}


def test_the_cli_and_the_package_import_without_pyarrow_or_boto3() -> None:
    """``import s3exp`` and ``s3exp --help`` (and so every one-line input error) do not
    pay for pyarrow and boto3; the names that need them load on first use."""
    code = ("import sys, s3exp, s3exp.cli\n"
            "heavy = [m for m in ('pyarrow', 'boto3', 'botocore', 'duckdb') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "s3exp.S3Store, s3exp.compact\n"
            "assert 'boto3' in sys.modules and 'pyarrow' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "s3exp", "--help"],
                         check=True, capture_output=True, text=True)
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert not imported & {"pyarrow", "boto3", "botocore", "duckdb"}
