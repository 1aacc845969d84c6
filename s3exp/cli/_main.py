"""The ``s3exp`` command line.

Every error that is the user's to fix (a bad spec, a bad store URL, missing credentials,
an unknown experiment) prints one line, ``s3exp: error: ...``, and exits with status 2.
Only this module and the Lambda handlers read environment variables.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from s3exp._version import __version__
from s3exp.core._errors import ConfigError, S3ExpError
from s3exp.specs._expansion import expand
from s3exp.specs._experiments import list_experiments, load_experiment, submit
from s3exp.specs._models import ExperimentSpec, load_spec
from s3exp.stores import Store, open_store

__all__ = ["main"]

DEFAULT_STORE = "./s3exp-store"

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    """Escape control characters so that a hostile name cannot break the one-line rule."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _store(args: argparse.Namespace) -> Store:
    # An explicit --store "" is an error (open_store says so), not a silent fallback.
    url = args.store if args.store is not None else os.environ.get("S3EXP_STORE") or DEFAULT_STORE
    path_style = {"auto": None, "path": True, "virtual": False}[args.addressing]
    return open_store(url, endpoint_url=_endpoint_url(args), path_style=path_style)


def _endpoint_url(args: argparse.Namespace) -> str | None:
    """--endpoint-url, else the variables boto3 would read, so that open_store validates
    the endpoint and its errors name it."""
    if args.endpoint_url is not None:
        return str(args.endpoint_url)
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _checked(parse: Callable[[str], T], unparsable: str, ok: Callable[[T], bool],
             out_of_range: str) -> Callable[[str], T]:
    """An argparse ``type``: ``parse`` the text, then require ``ok``; the messages get
    ``{text}`` and ``{value}``."""
    def convert(text: str) -> T:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(unparsable.format(text=text)) from None
        if not ok(value):
            raise argparse.ArgumentTypeError(out_of_range.format(text=text, value=value))
        return value
    return convert


_positive_int = _checked(int, "invalid int value: {text!r}", lambda v: v >= 1,
                         "must be at least 1, not {value}")
_port = _checked(int, "invalid port: {text!r}", lambda v: 0 <= v <= 65535,
                 "a port is 0 to 65535, not {value}")
_non_negative_float = _checked(float, "invalid number: {text!r}",
                               lambda v: v >= 0 and v != float("inf"),
                               "must be a finite number >= 0, not {text}")


def _add_store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="URL",
                   help="s3://bucket/prefix, file:///dir or a directory "
                        f"(default: $S3EXP_STORE, else {DEFAULT_STORE})")
    p.add_argument("--endpoint-url", metavar="URL",
                   help="S3 endpoint for s3:// stores (default: $AWS_ENDPOINT_URL_S3, "
                        "$AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--addressing", choices=("auto", "path", "virtual"), default="auto",
                   help="S3 addressing style; auto means path-style for custom endpoints")


# -- commands ------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)  # validate before touching the store
    store = _store(args)
    result = submit(store, spec)
    if result.created:
        print(f"submitted {result.name}: {result.runs} runs (spec {result.spec_hash[:12]}) to {store.url}")
    else:
        print(f"{result.name} is already submitted with this spec ({result.runs} runs, "
              f"spec {result.spec_hash[:12]}); nothing to do")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    names = list_experiments(store)
    if args.json:
        print(json.dumps(names))
    elif not names:
        print(f"no experiments in {store.url}")
    else:
        print("\n".join(names))
    return 0


def _spec_for_show(args: argparse.Namespace) -> ExperimentSpec:
    target = args.experiment
    if Path(target).suffix.lower() in (".json", ".yaml", ".yml") and Path(target).exists():
        return load_spec(target)
    return load_experiment(_store(args), target)


def cmd_show(args: argparse.Namespace) -> int:
    spec = _spec_for_show(args)
    slots = expand(spec)
    if args.json:
        print(json.dumps({"name": spec.name, "spec_hash": spec.spec_hash,
                          "runs": [s.to_dict() for s in slots]}, indent=1))
        return 0
    print(f"{spec.name}: {len(slots)} runs, {spec.runs_per_pair} per cell "
          f"(spec {spec.spec_hash[:12]})")
    width = max((len(s.run_id) for s in slots), default=6)
    print(f"{'#':>5}  {'run_id':<{width}}  {'dataset':<12} {'model':<12} params")
    for s in slots:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in s.params.items())
        print(f"{s.index:>5}  {s.run_id:<{width}}  {s.dataset or '-':<12} {s.model or '-':<12} {params}")
    return 0


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else json.dumps(v)


def cmd_worker(args: argparse.Namespace) -> int:
    from s3exp.runs._agent import check_template, run_command
    from s3exp.runs._worker import Worker

    template = list(args.command)
    if not template:
        raise ConfigError("no command given: use  s3exp worker EXP -- COMMAND ARGS...  "
                          "(or the Python API: for run in s3exp.Worker(...))")
    store = _store(args)
    if args.processes > 1:
        # Check names and the template here, so that a mistake is reported once and not
        # by every child.
        for name in args.experiments:
            check_template(template, expand(load_experiment(store, name)))
        if args.worker_id:
            from s3exp.ops._costs import check_meter_id

            check_meter_id(f"{args.worker_id}-{args.processes}")  # the longest one made
        return _fan_out(args)
    worker = Worker(store, args.experiments, sticky_dataset=args.sticky_dataset,
                    max_runs=args.max_runs, wait=args.wait, worker_id=args.worker_id)
    check_template(template, worker.slots())
    for run in worker:
        with run:
            run_command(run, template, grace=args.grace)
    st = worker.stats
    print(f"s3exp worker {worker.identity.id}: {st.completed} completed, {st.failed} failed, "
          f"{st.lost} lost, {st.interrupted} interrupted", file=sys.stderr)
    return 143 if st.interrupted and worker.stopped_by is not None else 0


def _fan_out(args: argparse.Namespace) -> int:
    """--processes N: run N single-process workers and forward signals to them."""
    import subprocess

    argv = [sys.executable, "-m", "s3exp", "worker", *args.experiments,
            "--processes", "1", "--grace", str(args.grace)]
    for flag, value in (("--store", args.store), ("--endpoint-url", args.endpoint_url),
                        ("--max-runs", args.max_runs)):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--addressing", args.addressing]
    argv += ["--sticky-dataset"] * args.sticky_dataset + ["--wait" if args.wait else "--no-wait"]
    # One worker id per process (ID-1 ... ID-N): a lease, a result and a cost record name
    # the process that made it, and cost records are per worker id.
    ids = ([["--worker-id", f"{args.worker_id}-{i}"] for i in range(1, args.processes + 1)]
           if args.worker_id else [[] for _ in range(args.processes)])
    children = [subprocess.Popen(argv + wid + ["--", *args.command]) for wid in ids]

    def forward(signum: int, frame: object) -> None:
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [c.wait() for c in children]
    return next((c for c in codes if c != 0), 0)


def cmd_status(args: argparse.Namespace) -> int:
    from s3exp.ops._status import experiment_status, render_status

    store = _store(args)
    st = experiment_status(store, args.experiment)
    if not args.cost:
        print(json.dumps(st.to_dict(), indent=1) if args.json else render_status(st))
        return 0
    from s3exp.ops._costs import read_costs, render_costs

    costs = read_costs(store, args.experiment, st.counts["done"] + st.counts["failed"])
    if args.json:
        print(json.dumps({**st.to_dict(), "cost": costs.to_dict()}, indent=1))
    else:
        print(render_status(st) + "\n" + render_costs(costs))
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    from s3exp.ops._reset import reset_runs

    if not (args.failed or args.interrupted or args.run):
        raise ConfigError("say which runs to reset: --failed, --interrupted or --run ID")
    report = reset_runs(_store(args), args.experiment, failed=args.failed,
                        interrupted=args.interrupted, run_ids=tuple(args.run or ()))
    print(f"reset {len(report['reset'])} run(s)" + (": " + ", ".join(report["reset"]) if report["reset"] else ""))
    for rid, why in sorted(report["skipped"].items()):
        print(f"  skipped {rid}: {why}")
    return 0


def _control(state: str) -> Callable[[argparse.Namespace], int]:
    def cmd(args: argparse.Namespace) -> int:
        from s3exp.ops._control import set_control

        previous = set_control(_store(args), args.experiment, state)  # type: ignore[arg-type]
        print(f"{args.experiment}: {previous} -> {state}")
        return 0

    return cmd


def _check_output(path: str | None) -> None:
    """Refuse an --output that cannot be written, before any work is done."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"output {path!r} is a directory")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"cannot write output {path!r}: directory {str(parent)!r} does not exist")


def _write_output(path: str, write: Callable[[str], object]) -> None:
    try:
        write(path)
    except OSError as e:
        raise ConfigError(f"cannot write output {path!r}: {e.strerror or e}") from None


def cmd_results(args: argparse.Namespace) -> int:
    _check_output(args.output)
    store = _store(args)
    if args.format == "json":
        from s3exp.tables._reading import read_results

        body = json.dumps(read_results(store, args.experiment), indent=1, default=str) + "\n"
        if args.output:
            _write_output(args.output, lambda path: Path(path).write_text(body))
        else:
            sys.stdout.write(body)
        return 0
    from s3exp.tables._reading import results

    table = results(store, args.experiment)  # compacted parts plus newer result records
    if args.format == "parquet":
        import pyarrow.parquet as pq

        out = args.output or f"{args.experiment}-results.parquet"
        _write_output(out, lambda path: pq.write_table(table, path))
        print(f"wrote {table.num_rows} rows to {out}", file=sys.stderr)
        return 0
    from s3exp.tables._formats import format_table

    text = format_table(table, args.format)
    if args.output:
        _write_output(args.output, lambda path: Path(path).write_text(text))
    else:
        sys.stdout.write(text)
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from s3exp.ops._compact import compact_and_record

    store = _store(args)
    names = args.experiments or list_experiments(store)
    for name in names:
        report = compact_and_record(store, name)  # and costs/NAME/compactor.json
        print(json.dumps(report.to_dict()) if args.json else
              f"{name}: generation {report.generation}, {report.runs_compacted} runs, "
              f"{report.rows} rows compacted from {report.shards_read} shards"
              + (" (another compactor committed first)" if report.lost_race else ""))
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from s3exp.tables._query import query

    table = query(_store(args), args.sql, experiments=args.experiment or None)
    from s3exp.tables._formats import format_table

    sys.stdout.write(format_table(table, args.format))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from s3exp.cli._demo import run_demo

    url = args.store or os.environ.get("S3EXP_STORE") or "./s3exp-demo-store"
    return run_demo(url, processes=args.processes, runs_per_pair=args.runs_per_pair,
                    endpoint_url=args.endpoint_url)


def cmd_dev_server(args: argparse.Namespace) -> int:
    from s3exp.stores._seaweed import SeaweedServer, load_or_make_credentials

    data_dir = Path(args.dir).absolute()
    creds = load_or_make_credentials(data_dir)
    server = SeaweedServer(data_dir=data_dir, s3_port=args.port, credentials=creds)
    stop = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    server.start()
    try:
        store = server.bucket_store(args.bucket)
        store.create_bucket()
        print(f"# SeaweedFS S3 on {server.endpoint_url}, data in {data_dir}; Ctrl-C stops it.")
        print("# Paste into your shell:")
        for k, v in server.env().items():
            print(f"export {k}={v}")
        print(f"export S3EXP_STORE=s3://{args.bucket}/{args.prefix}".rstrip("/"))
        sys.stdout.flush()
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        while not stop and server.running:
            time.sleep(0.2)
    finally:
        server.stop()
    print("# SeaweedFS stopped", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from s3exp.serving._server import make_server

    store = _store(args)
    list_experiments(store)  # a wrong URL or credential fails here, in one line
    try:
        server = make_server(store, args.host, args.port)
    except OSError as e:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from None
    port = server.server_address[1]
    print(f"s3exp status for {store.url} on http://{args.host}:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_infra_policy(args: argparse.Namespace) -> int:
    from s3exp.bucket._policies import policy
    from s3exp.stores import S3Store

    url = args.store or os.environ.get("S3EXP_STORE")
    if not url:
        raise ConfigError("say which project the policy is for: --store s3://bucket/prefix")
    if not url.lower().startswith("s3://"):
        raise ConfigError(f"IAM policies are for S3 stores; {url!r} is not s3://bucket/prefix")
    store = open_store(url)  # validates the bucket and prefix; sends nothing
    assert isinstance(store, S3Store)
    doc = policy(args.role, store.bucket, store.prefix, partition=args.partition,
                 region=args.region, account=args.account, glue_database=args.glue_database,
                 workgroup=args.workgroup, status_function_arn=args.status_function_arn)
    store.close()
    print(json.dumps(doc, indent=2))
    return 0


# -- wiring ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="s3exp",
        description="Run ML experiments from an S3 bucket (or a directory), with no server.",
    )
    parser.add_argument("--version", action="version", version=f"s3exp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    def command(name: str, fn: Callable[[argparse.Namespace], int], help: str,
                store: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=fn)
        if store:
            _add_store_options(p)
        return p

    p = command("submit", cmd_submit,
                "Validate a spec (JSON or YAML) and store it create-only. The same spec again "
                "is a no-op; a different spec under the same name is an error.")
    p.add_argument("spec", help="path to the spec file")

    p = command("list", cmd_list, "List the experiments in a store.")
    p.add_argument("--json", action="store_true", help="print a JSON list")

    p = command("show", cmd_show,
                "Print the expanded runs of an experiment (a name in the store, or a spec file) "
                "with their parameters.")
    p.add_argument("experiment", help="experiment name, or path to a spec file")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("worker", cmd_worker,
                "Pull runs of one or more experiments and run a command for each: "
                "s3exp worker EXP -- python train.py --lr {learning_rate} --data {dataset}. "
                "Template fields: every parameter, dataset, model, model_group, run_id, attempt, "
                "replicate, experiment. The child also gets S3EXP_RUN_ID, S3EXP_PARAMS (JSON) and "
                "S3EXP_RESULT_FILE (a JSON object written there becomes the result). Exit status 0 "
                "completes the run; anything else fails the attempt.")
    p.add_argument("experiments", nargs="+", metavar="EXP",
                   help="experiment name(s); higher spec priority is served first")
    p.add_argument("--max-runs", type=_positive_int, help="stop after claiming this many runs")
    p.add_argument("--processes", type=_positive_int, default=1,
                   help="worker processes on this machine")
    p.add_argument("--sticky-dataset", action="store_true",
                   help="prefer runs on the dataset of the previous run")
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="when nothing is claimable, keep polling while other workers hold "
                        "unfinished runs, to take over the runs of workers that die; exit once "
                        "every run is done or failed (default). --no-wait exits as soon as "
                        "nothing is claimable")
    p.add_argument("--worker-id", help="name this worker in leases, results and its cost record "
                   "costs/EXP/ID.json (letters, digits and _ . + @ : -; default: host-pid-random); "
                   "with --processes N the processes are ID-1 ... ID-N")
    p.add_argument("--grace", type=_non_negative_float, default=10.0,
                   help="seconds between SIGTERM and SIGKILL when a child must stop")

    p = command("status", cmd_status,
                "Show an experiment's progress: a table per pair, live workers, stale leases, "
                "the last errors, throughput and ETA.")
    p.add_argument("experiment")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--cost", action="store_true",
                   help="also show the S3 requests made so far by type (PUT, GET, HEAD, LIST, "
                        "DELETE) and their price at S3 Standard rates, in total and per finished "
                        "run, from the cost records that workers and compactors write under "
                        "costs/EXP/ (one LIST and one GET per record; counts since a worker's "
                        "last write, at most 5 minutes old, are not in yet)")

    p = command("reset", cmd_reset,
                "Make runs claimable again (error history is kept).")
    p.add_argument("experiment")
    p.add_argument("--failed", action="store_true", help="failed runs get a fresh attempt budget")
    p.add_argument("--interrupted", action="store_true",
                   help="release interrupted runs and stale leases now")
    p.add_argument("--run", action="append", metavar="ID", help="this run (repeatable)")

    for name, state, text in (("pause", "paused", "Stop workers claiming new runs of EXP."),
                              ("resume", "active", "Let workers claim runs of EXP again."),
                              ("cancel", "cancelled", "Stop claiming and stop running runs of EXP "
                               "at their next heartbeat (released as interrupted).")):
        p = command(name, _control(state), text)
        p.add_argument("experiment")

    p = command("results", cmd_results,
                "One row per finished run: params, final metrics, status, attempt, duration, "
                "host. Served from the compacted results table plus runs finished since.")
    p.add_argument("experiment")
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table",
                   help="json prints the full result records with provenance")
    p.add_argument("--output", "-o", metavar="PATH", help="write to a file (parquet default: EXP-results.parquet)")

    p = command("compact", cmd_compact,
                "Merge staged metric shards of finished runs into Hive-partitioned Parquet "
                "under metrics/ and results/ (exactly once; safe to run concurrently). Its own "
                "S3 requests are added to costs/EXP/compactor.json (see status --cost).")
    p.add_argument("experiments", nargs="*", metavar="EXP", help="default: every experiment")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = command("query", cmd_query,
                "Run SQL in DuckDB over the views `metrics` and `results` (the same names and "
                "columns as the Athena tables), e.g. "
                "s3exp query \"SELECT model, avg(value) FROM metrics WHERE name='loss' GROUP BY 1\"")
    p.add_argument("sql")
    p.add_argument("--experiment", action="append", metavar="EXP", help="limit to EXP (repeatable)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")

    p = command("demo", cmd_demo,
                "Run a small real experiment (scikit-learn datasets x model families) on the "
                "embedded directory store with local worker processes, then show the results.")
    p.add_argument("--processes", type=_positive_int, default=3,
                   help="worker processes (default: %(default)s)")
    p.add_argument("--runs-per-pair", type=_positive_int, default=3,
                   help="replicates (default: %(default)s)")

    p = command("dev-server", cmd_dev_server,
                "Run a local SeaweedFS S3 server on 127.0.0.1 for development and print the "
                "export lines that point s3exp at it.", store=False)
    p.add_argument("--dir", default="./s3exp-dev-data", help="data directory (default: %(default)s)")
    p.add_argument("--port", type=_port, default=8333, help="S3 port (default: %(default)s)")
    p.add_argument("--bucket", default="s3exp", help="bucket to create (default: %(default)s)")
    p.add_argument("--prefix", default="", help="key prefix for S3EXP_STORE (default: none)")

    p = command("serve", cmd_serve,
                "Serve the status pages and JSON of the status Lambda locally: / lists the "
                "experiments, /experiments/EXP?format=html shows one, "
                "/experiments/EXP/results?format=csv its results.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=_port, default=8080, help="port; 0 picks a free one (default: %(default)s)")

    p = command("infra", cmd_infra_policy, "The AWS deployment (infra/template.yaml).", store=False)
    infra = p.add_subparsers(dest="infra_command", required=True, metavar="COMMAND",
                             parser_class=_Parser)
    from s3exp.bucket._policies import ROLES

    p = infra.add_parser("policy", help="Print the least-privilege IAM policy (JSON) of a role "
                         "for the project at --store: the same document the stack attaches.",
                         description="Print the least-privilege IAM policy (JSON) of a role for "
                         "the project at --store, for people who do not deploy infra/template.yaml.")
    p.set_defaults(func=cmd_infra_policy)
    p.add_argument("--role", required=True, choices=ROLES,
                   help="worker, submitter, analyst, compactor, or reader (read-only)")
    p.add_argument("--store", metavar="URL", help="s3://bucket/prefix (default: $S3EXP_STORE)")
    p.add_argument("--partition", default="aws", help="AWS partition (default: %(default)s)")
    p.add_argument("--region", default="*", help="region of the Athena workgroup and Glue tables "
                   "(analyst; default: any)")
    p.add_argument("--account", default="*", help="account id of the workgroup and tables "
                   "(analyst; default: any)")
    p.add_argument("--glue-database", default="s3exp", help="Glue database (analyst; default: %(default)s)")
    p.add_argument("--workgroup", default="s3exp", help="Athena workgroup (analyst; default: %(default)s)")
    p.add_argument("--status-function-arn", metavar="ARN",
                   help="let the analyst or submitter open the status function's URL")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:  # everything after the first "--" is the worker's command template
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    args.command = command
    try:
        code: int = args.func(args)
        return code
    except S3ExpError as e:
        print(f"s3exp: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("s3exp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `s3exp show EXP | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
