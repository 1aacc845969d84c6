"""The commands that define experiments and look at their runs: ``submit``, ``list`` and
``show``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from s3exp.cli._command import Command
from s3exp.specs import ExperimentSpec, load_spec

__all__ = ["ListExperiments", "Show", "Submit"]


class Submit(Command):
    name = "submit"
    help = ("Validate a spec (JSON or YAML) and store it create-only. The same spec again "
            "is a no-op; a different spec under the same name is an error.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("spec", help="path to the spec file")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp import submit

        spec = load_spec(args.spec)  # validate before touching the store
        store = self.open_store(args)
        result = submit(store, spec)
        if result.created:
            print(f"submitted {result.name}: {result.runs} runs (spec {result.spec_hash[:12]}) "
                  f"to {store.url}")
        else:
            print(f"{result.name} is already submitted with this spec ({result.runs} runs, "
                  f"spec {result.spec_hash[:12]}); nothing to do")
        return 0


class ListExperiments(Command):
    name = "list"
    help = "List the experiments in a store."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="print a JSON list")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp import list_experiments

        store = self.open_store(args)
        names = list_experiments(store)
        if args.json:
            print(json.dumps(names))
        elif not names:
            print(f"no experiments in {store.url}")
        else:
            print("\n".join(names))
        return 0


class Show(Command):
    name = "show"
    help = ("Print the expanded runs of an experiment (a name in the store, or a spec file) "
            "with their parameters.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("experiment", help="experiment name, or path to a spec file")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def run(self, args: argparse.Namespace) -> int:
        from s3exp import expand

        spec = self._spec(args)
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
            print(f"{s.index:>5}  {s.run_id:<{width}}  {s.dataset or '-':<12} "
                  f"{s.model or '-':<12} {params}")
        return 0

    def _spec(self, args: argparse.Namespace) -> ExperimentSpec:
        """A spec file if ``experiment`` names one (no store is opened), else the stored spec."""
        from s3exp import load_experiment

        target = args.experiment
        if Path(target).suffix.lower() in (".json", ".yaml", ".yml") and Path(target).exists():
            return load_spec(target)
        return load_experiment(self.open_store(args), target)


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else json.dumps(v)
