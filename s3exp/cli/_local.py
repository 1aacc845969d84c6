"""The commands that start something on this machine and run until it ends or Ctrl-C:
``demo`` (a small real experiment), ``dev-server`` (SeaweedFS) and ``serve`` (the status
pages)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from s3exp.cli._command import Command
from s3exp.cli._options import StoreOptions, port, positive_int
from s3exp.core import ConfigError

__all__ = ["Demo", "DevServer", "Serve"]

DEMO_STORE = StoreOptions(default="./s3exp-demo-store")
"""Its own default, so that the demo never mixes its runs into ./s3exp-store."""


class Demo(Command):
    name = "demo"
    help = ("Run a small real experiment (scikit-learn datasets x model families) on the "
            "embedded directory store with local worker processes, then show the results.")
    store = DEMO_STORE

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--processes", type=positive_int, default=3,
                            help="worker processes (default: %(default)s)")
        parser.add_argument("--runs-per-pair", type=positive_int, default=3,
                            help="replicates (default: %(default)s)")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp.cli._demo import run_demo

        # The demo's worker processes open the store from its URL, so it takes the URL
        # (and the endpoint) rather than an open store.
        return run_demo(DEMO_STORE.url(args), processes=args.processes,
                        runs_per_pair=args.runs_per_pair, endpoint_url=DEMO_STORE.endpoint_url(args))


class DevServer(Command):
    name = "dev-server"
    help = ("Run a local SeaweedFS S3 server on 127.0.0.1 for development and print the "
            "export lines that point s3exp at it.")
    store = None

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dir", default="./s3exp-dev-data",
                            help="data directory (default: %(default)s)")
        parser.add_argument("--port", type=port, default=8333, help="S3 port (default: %(default)s)")
        parser.add_argument("--bucket", default="s3exp", help="bucket to create (default: %(default)s)")
        parser.add_argument("--prefix", default="", help="key prefix for S3EXP_STORE (default: none)")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp.devserver import SeaweedServer, load_or_make_credentials

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
            # A signal ends the loop below, so that the server is stopped in `finally`.
            signal.signal(signal.SIGINT, _on_signal)
            signal.signal(signal.SIGTERM, _on_signal)
            while not stop and server.running:
                time.sleep(0.2)
        finally:
            server.stop()
        print("# SeaweedFS stopped", file=sys.stderr)
        return 0


class Serve(Command):
    name = "serve"
    help = ("Serve the status pages and JSON of the status Lambda locally: / lists the "
            "experiments, /experiments/EXP?format=html shows one, "
            "/experiments/EXP/results?format=csv its results.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
        parser.add_argument("--port", type=port, default=8080,
                            help="port; 0 picks a free one (default: %(default)s)")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp import list_experiments
        from s3exp.serving import make_server

        store = self.open_store(args)
        list_experiments(store)  # a wrong URL or credential fails here, in one line
        try:
            server = make_server(store, args.host, args.port)
        except OSError as e:
            raise ConfigError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from None
        bound = server.server_address[1]
        print(f"s3exp status for {store.url} on http://{args.host}:{bound}/ (Ctrl-C stops it)",
              flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return 0
