"""Rendering Arrow tables (results, query output) as aligned text, CSV or JSON lines."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pyarrow as pa

__all__ = ["format_table"]


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v if isinstance(v, str) else json.dumps(v, default=str)


def format_table(table: pa.Table, fmt: str) -> str:
    """Render ``table`` as ``table`` (aligned text), ``csv`` or ``json`` (one object a line)."""
    rows = table.to_pylist()
    cols = list(table.column_names)
    if fmt == "json":
        return "".join(json.dumps(r, default=str) + "\n" for r in rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows([[_cell(r[c]) for c in cols] for r in rows])
        return out.getvalue()
    if not rows:
        return "(no rows)\n"
    cells = [[_cell(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines) + "\n"
