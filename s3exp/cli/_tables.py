"""The commands over the metric and results tables: ``results``, ``query`` and
``compact``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from s3exp.cli._command import Command
from s3exp.core import ConfigError

__all__ = ["Compact", "Query", "Results"]


class Results(Command):
    name = "results"
    help = ("One row per finished run: params, final metrics, status, attempt, duration, "
            "host. Served from the compacted results table plus runs finished since.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("experiment")
        parser.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table",
                            help="json prints the full result records with provenance")
        parser.add_argument("--output", "-o", metavar="PATH",
                            help="write to a file (parquet default: EXP-results.parquet)")

    def run(self, args: argparse.Namespace) -> int:
        _check_output(args.output)
        store = self.open_store(args)
        if args.format == "json":
            from s3exp import read_results

            body = json.dumps(read_results(store, args.experiment), indent=1, default=str) + "\n"
            if args.output:
                _write_output(args.output, lambda path: Path(path).write_text(body))
            else:
                sys.stdout.write(body)
            return 0
        from s3exp import results

        table = results(store, args.experiment)  # compacted parts plus newer result records
        if args.format == "parquet":
            import pyarrow.parquet as pq

            out = args.output or f"{args.experiment}-results.parquet"
            _write_output(out, lambda path: pq.write_table(table, path))
            print(f"wrote {table.num_rows} rows to {out}", file=sys.stderr)
            return 0
        from s3exp.tables import format_table

        text = format_table(table, args.format)
        if args.output:
            _write_output(args.output, lambda path: Path(path).write_text(text))
        else:
            sys.stdout.write(text)
        return 0


class Compact(Command):
    name = "compact"
    help = ("Merge staged metric shards of finished runs into Hive-partitioned Parquet "
            "under metrics/ and results/ (exactly once; safe to run concurrently). Its own "
            "S3 requests are added to costs/EXP/compactor.json (see status --cost).")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("experiments", nargs="*", metavar="EXP", help="default: every experiment")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp import list_experiments
        from s3exp.ops import compact_and_record

        store = self.open_store(args)
        names = args.experiments or list_experiments(store)
        for name in names:
            report = compact_and_record(store, name)  # and costs/NAME/compactor.json
            print(json.dumps(report.to_dict()) if args.json else
                  f"{name}: generation {report.generation}, {report.runs_compacted} runs, "
                  f"{report.rows} rows compacted from {report.shards_read} shards"
                  + (" (another compactor committed first)" if report.lost_race else ""))
        return 0


class Query(Command):
    name = "query"
    help = ("Run SQL in DuckDB over the views `metrics` and `results` (the same names and "
            "columns as the Athena tables), e.g. "
            "s3exp query \"SELECT model, avg(value) FROM metrics WHERE name='loss' GROUP BY 1\"")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("sql")
        parser.add_argument("--experiment", action="append", metavar="EXP",
                            help="limit to EXP (repeatable)")
        parser.add_argument("--format", choices=("table", "csv", "json"), default="table")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp import query
        from s3exp.tables import format_table

        table = query(self.open_store(args), args.sql, experiments=args.experiment or None)
        sys.stdout.write(format_table(table, args.format))
        return 0


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
