"""Rendering result records as a table, CSV or JSON (flattening params and metrics)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["flatten_result", "format_results"]

_BASE = ("run_id", "dataset", "model", "model_group", "replicate", "attempt", "duration_s")


def flatten_result(r: dict[str, Any]) -> dict[str, Any]:
    """One flat row: base fields, ``param.*``, ``metric.*`` and a little provenance."""
    row = {k: r.get(k) for k in _BASE}
    row.update({f"param.{k}": v for k, v in (r.get("params") or {}).items()})
    row.update({f"metric.{k}": v for k, v in (r.get("metrics") or {}).items()})
    prov = r.get("provenance") or {}
    git = prov.get("git") or {}
    row.update({"host": prov.get("host"), "worker": r.get("worker"),
                "git_commit": git.get("commit"), "git_dirty": git.get("dirty"),
                "started_at": r.get("started_at"), "ended_at": r.get("ended_at")})
    return row


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for row in rows:
        cols.update(dict.fromkeys(row))
    return list(cols)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v if isinstance(v, str) else json.dumps(v)


def format_results(records: Sequence[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(list(records), indent=1, default=str) + "\n"
    rows = [flatten_result(r) for r in records]
    cols = _columns(rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in cols})
        return out.getvalue()
    if not rows:
        return "no finished runs yet\n"
    shown = [c for c in cols if c not in ("started_at", "ended_at", "git_commit", "git_dirty", "worker")]
    cells = [[_cell(row.get(c)) for c in shown] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(shown)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(shown, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines) + "\n"
