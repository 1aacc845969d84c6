"""The shape of the code, checked: the layer contract (import-linter, configured in
pyproject.toml), no private attribute read across a class or module, stored bodies built
and parsed only by the records module, and modules a reader can hold in their head.

How each check can fail was tried (docs/design.md, "Map of the code"): a reverse import
added on a scratch copy turns the layer contract red.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "s3exp"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(root), "PATH": ""})


def test_the_import_contracts_are_kept() -> None:
    r = _lint(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("KEPT") == 4 and "BROKEN" not in r.stdout


@pytest.mark.parametrize(("where", "line", "contract"), [
    ("stores/_memory.py", "from s3exp.runs import Worker  # noqa", "below it BROKEN"),
    ("tables/_reading.py", "from s3exp.tables._compaction import compact_tables  # noqa",
     "never import the compactor BROKEN"),
    ("runs/_claims.py", "from s3exp.ops._status import run_states  # noqa", "package's names BROKEN"),
    ("specs/_models.py", "from s3exp.specs._expansion import expand  # noqa",
     "between the modules of a package BROKEN"),
])
def test_a_reverse_import_breaks_the_contract(tmp_path: Path, where: str, line: str,
                                              contract: str) -> None:
    """The contract can fail: the same check on a copy of the package with one import
    that goes the wrong way (upwards, reader to compactor, into another package's private
    module, or closing a cycle)."""
    copy = tmp_path / "repo"
    shutil.copytree(PACKAGE, copy / "s3exp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    target = copy / "s3exp" / where
    text = target.read_text()
    future = "from __future__ import annotations\n"
    assert future in text
    target.write_text(text.replace(future, future + line + "\n", 1))
    r = _lint(copy)
    assert r.returncode != 0, r.stdout
    assert contract in r.stdout.replace("\n", " "), r.stdout


def _private_reads(path: Path, repo: Path = REPO) -> list[str]:
    """``x._name`` where ``x`` is not ``self``/``cls``, and ``from M import _name`` from
    a module of another package."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(repo).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{path.relative_to(repo)}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.ImportFrom) and node.module and node.module != package:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(repo)}:{node.lineno}: from {node.module} "
                                 f"import {alias.name}")
    return found


def test_no_private_attribute_is_read_across_a_class_or_module() -> None:
    found = [f for p in _modules() for f in _private_reads(p)]
    assert found == []


def test_the_private_read_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "s3exp" / "runs" / "_x.py"
    sample.parent.mkdir(parents=True)
    sample.write_text("from s3exp.ops._costs import _delta\n\ndef f(run):\n    return run._metrics\n")
    found = sorted(f.split(": ", 1)[1] for f in _private_reads(sample, tmp_path))
    assert found == ["from s3exp.ops._costs import _delta", "run._metrics"]


def test_only_the_records_module_parses_or_builds_stored_json() -> None:
    """json.loads/json.dumps of a stored body belongs in s3exp/bucket/_records.py.  The
    other uses are of bodies that are not stored: spec files, HTTP replies, the command
    agent's result and metrics files, hashes and table cells."""
    allowed = {"bucket/_records.py", "bucket/_record_format.py", "specs/_loading.py", "specs/_models.py", "tables/_schema.py",
               "tables/_formats.py", "serving/_app.py", "runs/_agent.py", "runs/_child.py",
               "devserver/_seaweed.py", "cli/_experiments.py", "cli/_tables.py",
               "cli/_status.py", "cli/_infra.py", "cli/_demo.py"}
    users = set()
    for p in _modules():
        text = p.read_text()
        if "json.loads" in text or "json.dumps" in text or "json.dump(" in text:
            users.add(str(p.relative_to(PACKAGE)))
    assert users <= allowed, sorted(users - allowed)


def test_modules_stay_small() -> None:
    """About 400 lines is where a module usually holds two ideas (STYLE.md).  The two
    above it are each one idea, said in their docstrings: every stored record; the S3
    store with its retry and own-write rules."""
    long = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in _modules()}
    over = {name: n for name, n in long.items() if n > 420}
    assert set(over) <= {"bucket/_records.py", "stores/_s3.py"}, over
    assert all(n < 500 for n in over.values()), over
