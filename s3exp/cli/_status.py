"""``s3exp status``: an experiment's progress, and with ``--cost`` its request bill."""

from __future__ import annotations

import argparse
import json

from s3exp.cli._command import Command

__all__ = ["Status"]


class Status(Command):
    name = "status"
    help = ("Show an experiment's progress: a table per pair, live workers, stale leases, "
            "the last errors, throughput and ETA.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("experiment")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument("--cost", action="store_true",
                            help="also show the S3 requests made so far by type (PUT, GET, HEAD, "
                                 "LIST, DELETE) and their price at S3 Standard rates, in total and "
                                 "per finished run, from the cost records that workers and "
                                 "compactors write under costs/EXP/ (one LIST and one GET per "
                                 "record; counts since a worker's last write, at most 5 minutes "
                                 "old, are not in yet)")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp.ops import experiment_status, render_status

        store = self.open_store(args)
        st = experiment_status(store, args.experiment)
        if not args.cost:
            print(json.dumps(st.to_dict(), indent=1) if args.json else render_status(st))
            return 0
        from s3exp.ops import read_costs, render_costs

        costs = read_costs(store, args.experiment, st.counts["done"] + st.counts["failed"])
        if args.json:
            print(json.dumps({**st.to_dict(), "cost": costs.to_dict()}, indent=1))
        else:
            print(render_status(st) + "\n" + render_costs(costs))
        return 0
