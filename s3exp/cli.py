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
from typing import Any, NoReturn

from s3exp._errors import S3ExpError
from s3exp._expansion import expand
from s3exp._experiments import list_experiments, load_experiment, submit
from s3exp._specs import ExperimentSpec, load_spec
from s3exp._version import __version__
from s3exp.stores import Store, open_store

__all__ = ["main"]

DEFAULT_STORE = "./s3exp-store"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _one_line(text: str) -> str:
    """Escape control characters so that a hostile name cannot break the one-line rule."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _store(args: argparse.Namespace) -> Store:
    url = args.store or os.environ.get("S3EXP_STORE") or DEFAULT_STORE
    path_style = {"auto": None, "path": True, "virtual": False}[args.addressing]
    return open_store(url, endpoint_url=args.endpoint_url, path_style=path_style)


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


def cmd_dev_server(args: argparse.Namespace) -> int:
    from s3exp._seaweed import SeaweedServer, load_or_make_credentials

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

    p = command("dev-server", cmd_dev_server,
                "Run a local SeaweedFS S3 server on 127.0.0.1 for development and print the "
                "export lines that point s3exp at it.", store=False)
    p.add_argument("--dir", default="./s3exp-dev-data", help="data directory (default: %(default)s)")
    p.add_argument("--port", type=int, default=8333, help="S3 port (default: %(default)s)")
    p.add_argument("--bucket", default="s3exp", help="bucket to create (default: %(default)s)")
    p.add_argument("--prefix", default="", help="key prefix for S3EXP_STORE (default: none)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
