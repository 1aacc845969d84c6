"""Every object key s3exp reads or writes is built here, and only here.

Layout under the store's root (``s3://bucket/prefix`` or a directory)::

    experiments/<exp>.json                        the spec; created once, immutable
    control/<exp>.json                            pause / cancel flags (If-Match)
    runs/<exp>/<run_id>/lease.json                claim = create; renew = If-Match
    runs/<exp>/<run_id>/result.json               completion = create; first writer wins
    runs/<exp>/<run_id>/error-<NNNN>.json         one per failed attempt, kept
    runs/<exp>/<run_id>/interrupt-<NNNN>.json     one per interrupted attempt, kept
    staging/<exp>/<run_id>/<NNNN>/<NNNNNN>.parquet   metric shards (attempt, sequence)
    metrics/experiment=<exp>/...                  compacted, Hive-partitioned
    results/experiment=<exp>/...                  one row per finished run

Specs, run state and metrics live under separate top-level prefixes so that listing the
experiments never pages through runs, and so that IAM policies can grant each role exactly
one prefix (workers never write ``experiments/``).  Numbers are zero-padded so that LIST
order is numeric order.  Names are validated by :mod:`s3exp._names` first.
"""

from __future__ import annotations

__all__ = [
    "EXPERIMENTS",
    "SPEC_SUFFIX",
    "control",
    "error",
    "experiment_from_spec_key",
    "interrupt",
    "lease",
    "result",
    "run_prefix",
    "runs_prefix",
    "shard",
    "spec",
    "staging_prefix",
]

EXPERIMENTS = "experiments/"
SPEC_SUFFIX = ".json"


def spec(exp: str) -> str:
    return f"{EXPERIMENTS}{exp}{SPEC_SUFFIX}"


def experiment_from_spec_key(key: str) -> str | None:
    """The experiment name of a key under ``experiments/``, or None if it is not a spec."""
    if not key.startswith(EXPERIMENTS) or not key.endswith(SPEC_SUFFIX):
        return None
    name = key[len(EXPERIMENTS) : -len(SPEC_SUFFIX)]
    return name if name and "/" not in name else None


def control(exp: str) -> str:
    return f"control/{exp}.json"


def runs_prefix(exp: str) -> str:
    return f"runs/{exp}/"


def run_prefix(exp: str, run_id: str) -> str:
    return f"runs/{exp}/{run_id}/"


def lease(exp: str, run_id: str) -> str:
    return f"{run_prefix(exp, run_id)}lease.json"


def result(exp: str, run_id: str) -> str:
    return f"{run_prefix(exp, run_id)}result.json"


def error(exp: str, run_id: str, attempt: int) -> str:
    return f"{run_prefix(exp, run_id)}error-{attempt:04d}.json"


def interrupt(exp: str, run_id: str, attempt: int) -> str:
    return f"{run_prefix(exp, run_id)}interrupt-{attempt:04d}.json"


def staging_prefix(exp: str) -> str:
    return f"staging/{exp}/"


def shard(exp: str, run_id: str, attempt: int, seq: int) -> str:
    return f"staging/{exp}/{run_id}/{attempt:04d}/{seq:06d}.parquet"
