"""The status HTTP app: one function from a request model to a response model.

It is served by the ``status`` Lambda (Function URL / API Gateway HTTP API, payload 2.0)
and locally by ``s3exp serve``; both only translate their transport to
:class:`HttpRequest` and back.  Routes (GET only)::

    /                                     HTML: the experiments, with links
    /experiments                          JSON: {"experiments": [names]}
    /experiments/{name}                   JSON: the status that ``s3exp status --json`` prints
    /experiments/{name}?format=html       HTML: progress per pair, failures, best so far
    /experiments/{name}/results?format=json|csv    one row per finished run

Names are validated before any key is built, so a path cannot reach outside the
experiment's keys; errors are JSON ``{"error": ...}`` with a 4xx status.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from s3exp.core import NotFoundError, name_problem
from s3exp.ops import STATES, ExperimentStatus, experiment_status
from s3exp.specs import ExperimentSpec, list_experiments, load_experiment
from s3exp.stores import Store
from s3exp.tables import format_table, results

__all__ = ["HttpRequest", "HttpResponse", "status_app"]

_JSON = "application/json"
_HTML = "text/html; charset=utf-8"
_CSV = "text/csv; charset=utf-8"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A transport-neutral request: ``path`` as sent (percent-encoded), query decoded."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: str
    content_type: str = _JSON
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_lambda(self) -> dict[str, Any]:
        """The Lambda proxy response shape (Function URLs and HTTP API payload 2.0)."""
        return {"statusCode": self.status,
                "headers": {"content-type": self.content_type, "cache-control": "no-store",
                            **self.headers},
                "body": self.body, "isBase64Encoded": False}

    def json(self) -> Any:
        return json.loads(self.body)


def _error(status: int, message: str, **extra: str) -> HttpResponse:
    return HttpResponse(status, json.dumps({"error": message}), headers=extra)


def _ok_json(data: Any) -> HttpResponse:
    return HttpResponse(200, json.dumps(data, default=str, allow_nan=False))


def status_app(store: Store, request: HttpRequest) -> HttpResponse:
    """Answer one request.  Safe to call concurrently; reads the store only."""
    if request.method.upper() not in ("GET", "HEAD"):
        return _error(405, f"method {request.method} is not allowed; use GET", allow="GET")
    raw = [s for s in request.path.split("/") if s]
    segments = [unquote(s) for s in raw]
    if not segments:
        return HttpResponse(200, _index_page(list_experiments(store)), _HTML)
    if segments[0] != "experiments" or len(segments) > 3:
        return _error(404, f"no route for {request.path[:200]!r}")
    if len(segments) == 1:
        return _ok_json({"experiments": list_experiments(store)})
    name = segments[1]
    problem = name_problem(name)
    if problem:
        return _error(400, f"invalid experiment name: the name {problem}")
    try:
        if len(segments) == 2:
            fmt = request.query.get("format", "json")
            if fmt not in ("json", "html"):
                return _error(400, f"unknown format {fmt[:40]!r}; use json or html")
            st = experiment_status(store, name)
            if fmt == "json":
                return _ok_json(_finite(st.to_dict()))
            return HttpResponse(200, _status_page(store, load_experiment(store, name), st), _HTML)
        if segments[2] != "results":
            return _error(404, f"no route for {request.path[:200]!r}")
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv"):
            return _error(400, f"unknown format {fmt[:40]!r}; use json or csv")
        table = results(store, name)
        if fmt == "csv":
            return HttpResponse(200, format_table(table, "csv"), _CSV)
        return _ok_json(_finite(table.to_pylist()))
    except NotFoundError:
        return _error(404, f"no experiment {name!r}")


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# -- HTML ------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}.bar{background:#eee;width:240px;height:12px;display:inline-block}
.bar>span{background:#3a7;height:12px;display:block}.failed{color:#b22}code{font-size:12px}
"""


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}</body></html>")


def _index_page(names: list[str]) -> str:
    items = "".join(f"<li><a href='experiments/{html.escape(n)}?format=html'>{html.escape(n)}</a></li>"
                    for n in names) or "<li>no experiments yet</li>"
    return _page("s3exp", f"<h1>s3exp experiments</h1><ul>{items}</ul>")


def _bar(done: int, total: int) -> str:
    pct = 100.0 * done / total if total else 100.0
    return f"<span class='bar'><span style='width:{pct:.1f}%'></span></span> {pct:.0f}%"


def _status_page(store: Store, spec: ExperimentSpec, st: ExperimentStatus) -> str:
    e = html.escape
    finished = st.counts["done"] + st.counts["failed"]
    head = "".join(f"<th>{s}</th>" for s in STATES)
    rows = "".join(
        f"<tr><td>{e(p.dataset or '-')} / {e(p.model_group or '-')}</td>"
        + "".join(f"<td>{p.counts[s]}</td>" for s in STATES)
        + f"<td>{_bar(p.counts['done'] + p.counts['failed'], sum(p.counts.values()))}</td></tr>"
        for p in st.pairs)
    total = ("<tr><th>total</th>" + "".join(f"<th id='count-{s}'>{st.counts[s]}</th>" for s in STATES)
             + f"<th>{_bar(finished, st.total)}</th></tr>")
    parts = [f"<h1>{e(st.experiment)}</h1>",
             f"<p>control: <b>{e(st.control)}</b> &middot; <span id='finished'>{finished}</span>/"
             f"<span id='total'>{st.total}</span> runs finished"
             + (f" &middot; {st.runs_per_minute:.1f} runs/min" if st.runs_per_minute else "")
             + (f" &middot; ETA {st.eta_seconds:.0f} s" if st.eta_seconds else "") + "</p>",
             f"<h2>Progress per pair</h2><table><tr><th>pair</th>{head}<th></th></tr>{rows}{total}</table>"]
    parts.append(_best_section(store, spec))
    if st.workers:
        items = "".join(f"<li>{e(w['worker'])}: {e(w['run_id'])} (attempt {w['attempt']})</li>"
                        for w in st.workers)
        parts.append(f"<h2>Running</h2><ul>{items}</ul>")
    if st.stale:
        items = "".join(f"<li>{e(w['run_id'])} held by {e(w['worker'])}, silent "
                        f"{w['last_renewed_s']:.0f} s</li>" for w in st.stale)
        parts.append(f"<h2>Stale leases</h2><ul>{items}</ul>")
    if st.errors:
        items = "".join(f"<li class='failed'>{e(str(x['run_id']))} attempt {x['attempt']}: "
                        f"<code>{e(str(x['error']))}</code></li>" for x in st.errors)
        parts.append(f"<h2>Failures</h2><ul>{items}</ul>")
    return _page(f"s3exp: {st.experiment}", "".join(parts))


def _best_section(store: Store, spec: ExperimentSpec) -> str:
    e = html.escape
    if spec.metric is None:
        return ("<h2>Best so far</h2><p>Add <code>\"metric\": {\"name\": ..., \"goal\": ...}</code> "
                "to the spec to rank runs.</p>")
    column = f"metric_{spec.metric.name}"
    table = results(store, spec.name)
    if column not in table.column_names:
        return f"<h2>Best so far</h2><p>No finished run reported {e(spec.metric.name)} yet.</p>"
    sign = 1.0 if spec.metric.goal == "maximize" else -1.0
    best: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for row in table.to_pylist():
        value = row.get(column)
        if value is None or not math.isfinite(value):
            continue
        pair = (row.get("dataset"), row.get("model_group"))
        if pair not in best or sign * value > sign * best[pair][column]:
            best[pair] = row
    rows = "".join(
        f"<tr><td>{e(d or '-')} / {e(m or '-')}</td><td>{r[column]:.6g}</td><td>{e(r['run_id'])}</td>"
        f"<td><code>{e(r['params_json'])}</code></td></tr>"
        for (d, m), r in sorted(best.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "")))
    return (f"<h2>Best so far ({e(spec.metric.goal)} {e(spec.metric.name)})</h2>"
            f"<table><tr><th>pair</th><th>{e(spec.metric.name)}</th><th>run</th><th>params</th></tr>"
            f"{rows}</table>")
