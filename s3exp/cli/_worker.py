"""``s3exp worker``: pull runs and execute a command line for each, in this process or in
``--processes N`` child processes."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from s3exp.cli._command import Command
from s3exp.cli._options import non_negative_float, positive_int
from s3exp.core import ConfigError

__all__ = ["WorkerCommand"]

FAILED_RUNS = 1
"""The exit status when some run's last attempt made by this worker failed."""


class WorkerCommand(Command):
    name = "worker"
    help = ("Pull runs of one or more experiments and run a command for each: "
            "s3exp worker EXP -- python train.py --lr {learning_rate} --data {dataset}. "
            "Template fields: every parameter, dataset, model, model_group, run_id, attempt, "
            "replicate, experiment. The child also gets S3EXP_RUN_ID, S3EXP_PARAMS (JSON) and "
            "S3EXP_RESULT_FILE (a JSON object written there becomes the result). Exit status 0 "
            "completes the run; anything else fails the attempt.")
    description = help + (
        " The worker itself exits with 1 when the last attempt it made of some run failed; 143 "
        "when SIGTERM ended it (its run is released as interrupted; 130 for SIGINT); 2, 3 "
        "or 4 for an error, as for every command (see s3exp --help); else 0. With "
        "--processes N, the first non-zero status of its processes.")
    command_line = "COMMAND"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("experiments", nargs="+", metavar="EXP",
                            help="experiment name(s); higher spec priority is served first")
        parser.add_argument("--max-runs", type=positive_int,
                            help="stop after claiming this many runs")
        parser.add_argument("--processes", type=positive_int, default=1,
                            help="worker processes on this machine")
        parser.add_argument("--sticky-dataset", action="store_true",
                            help="prefer runs on the dataset of the previous run")
        parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                            help="when nothing is claimable, keep polling while other workers "
                                 "hold unfinished runs, to take over the runs of workers that "
                                 "die; exit once every run is done or failed (default). "
                                 "--no-wait exits as soon as nothing is claimable")
        parser.add_argument("--worker-id",
                            help="name this worker in leases, results and its cost record "
                                 "costs/EXP/ID.json (letters, digits and _ . + @ : -; default: "
                                 "host-pid-random); with --processes N the processes are "
                                 "ID-1 ... ID-N")
        parser.add_argument("--grace", type=non_negative_float, default=10.0,
                            help="seconds between SIGTERM and SIGKILL when a child must stop")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp import Worker
        from s3exp.runs import check_template, run_command

        template = list(args.template)
        if not template:
            raise ConfigError("no command given: use  s3exp worker EXP -- COMMAND ARGS...  "
                              "(or the Python API: for run in s3exp.Worker(...))")
        store = self.open_store(args)
        if args.processes > 1:
            from s3exp import expand, load_experiment

            # Check names and the template here, so that a mistake is reported once and
            # not by every child.
            for name in args.experiments:
                check_template(template, expand(load_experiment(store, name)))
            if args.worker_id:
                from s3exp.ops import check_meter_id

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
        if worker.stopped_by is not None:
            return 128 + worker.stopped_by  # 143 for SIGTERM: what a scheduler expects
        return FAILED_RUNS if st.failed_runs else 0


def _fan_out(args: argparse.Namespace) -> int:
    """--processes N: run N single-process workers, forward signals to them, and return
    the first non-zero exit status among them (a child ended by a signal counts as
    128 + the signal)."""
    import subprocess

    verbosity = {logging.DEBUG: ["--verbose"], logging.ERROR: ["--quiet"]}.get(args.log_level, [])
    argv = [sys.executable, "-m", "s3exp", *verbosity, "worker", *args.experiments,
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
    children = [subprocess.Popen(argv + wid + ["--", *args.template]) for wid in ids]

    def forward(signum: int, frame: object) -> None:
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [c.wait() for c in children]
    # Popen reports a child killed by signal N as -N; a shell would say 128 + N.
    return next((128 - c if c < 0 else c for c in codes if c != 0), 0)
