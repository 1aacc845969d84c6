"""The operator's commands: ``reset`` runs, and ``pause``, ``resume`` or ``cancel`` an
experiment.  Each is a conditional write, so an operator racing a worker never clobbers
it (see ``s3exp.ops._operations``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, ClassVar

from s3exp.cli._command import Command
from s3exp.core import ConfigError

if TYPE_CHECKING:
    from s3exp.bucket import ControlState as Control

__all__ = ["Cancel", "Pause", "Reset", "Resume"]


class Reset(Command):
    name = "reset"
    help = "Make runs claimable again (error history is kept)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("experiment")
        parser.add_argument("--failed", action="store_true",
                            help="failed runs get a fresh attempt budget")
        parser.add_argument("--interrupted", action="store_true",
                            help="release interrupted runs and stale leases now")
        parser.add_argument("--run", action="append", metavar="ID", help="this run (repeatable)")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp import reset_runs

        if not (args.failed or args.interrupted or args.run):
            raise ConfigError("say which runs to reset: --failed, --interrupted or --run ID")
        report = reset_runs(self.open_store(args), args.experiment, failed=args.failed,
                            interrupted=args.interrupted, run_ids=tuple(args.run or ()))
        reset = report["reset"]
        print(f"reset {len(reset)} run(s)" + (": " + ", ".join(reset) if reset else ""))
        for rid, why in sorted(report["skipped"].items()):
            print(f"  skipped {rid}: {why}")
        return 0


class _SetControl(Command):
    """Set the experiment's control state to ``state`` and print the transition."""

    state: ClassVar[Control]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("experiment")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp import set_control

        previous = set_control(self.open_store(args), args.experiment, self.state)
        print(f"{args.experiment}: {previous} -> {self.state}")
        return 0


class Pause(_SetControl):
    name = "pause"
    help = "Stop workers claiming new runs of EXP."
    state = "paused"


class Resume(_SetControl):
    name = "resume"
    help = "Let workers claim runs of EXP again."
    state = "active"


class Cancel(_SetControl):
    name = "cancel"
    help = ("Stop claiming and stop running runs of EXP at their next heartbeat (released as "
            "interrupted).")
    state = "cancelled"
