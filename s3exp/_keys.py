"""Every object key s3exp reads or writes is built here, and only here.

Layout under the store's root (``s3://bucket/prefix`` or a directory)::

    experiments/<exp>.json                        the spec; created once, immutable
    control/<exp>.json                            pause / cancel flags (If-Match)
    runs/<exp>/<run_id>/lease.json                claim = create; renew = If-Match
    runs/<exp>/<run_id>/result.json               completion = create; first writer wins
    runs/<exp>/<run_id>/error-<NNNN>.json         one per failed attempt, kept
    runs/<exp>/<run_id>/interrupt-<NNNN>.json     one per interrupted attempt, kept
    staging/<exp>/<run_id>/<NNNN>/<NNNNNN>.parquet   metric shards (attempt, sequence)
    compaction/<exp>/manifest.json                what is compacted; committed by CAS
    compaction/<exp>/pending/<token>-<NNN>.parquet   parts written before their commit
    status/<exp>.json                             status rollup written by compaction
    metrics/experiment=<exp>/part-<GGGGGG>-<token>-<NNN>.parquet   compacted, Hive-partitioned
    results/experiment=<exp>/part-<GGGGGG>-<token>-<NNN>.parquet   one row per finished run

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
    "manifest",
    "parse_shard",
    "pending_part",
    "pending_prefix",
    "result",
    "run_prefix",
    "runs_prefix",
    "shard",
    "spec",
    "staging_prefix",
    "status_rollup",
    "table_part",
    "table_prefix",
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


def parse_shard(exp: str, key: str) -> tuple[str, int, int] | None:
    """(run_id, attempt, seq) of a shard key of ``exp``, or None for anything else."""
    rest = key[len(staging_prefix(exp)):] if key.startswith(staging_prefix(exp)) else ""
    parts = rest.split("/")
    if len(parts) != 3 or not parts[2].endswith(".parquet"):
        return None
    attempt, seq = parts[1], parts[2][: -len(".parquet")]
    if not (attempt.isdigit() and seq.isdigit()):
        return None
    return parts[0], int(attempt), int(seq)


def manifest(exp: str) -> str:
    return f"compaction/{exp}/manifest.json"


def pending_part(exp: str, token: str, n: int) -> str:
    return f"compaction/{exp}/pending/{token}-{n:03d}.parquet"


def pending_prefix(exp: str) -> str:
    return f"compaction/{exp}/pending/"


def table_prefix(table: str, exp: str) -> str:
    """``metrics/experiment=<exp>/`` or ``results/experiment=<exp>/`` (Hive layout)."""
    return f"{table}/experiment={exp}/"


def table_part(table: str, exp: str, generation: int, token: str, n: int) -> str:
    return f"{table_prefix(table, exp)}part-{generation:06d}-{token}-{n:03d}.parquet"


def status_rollup(exp: str) -> str:
    return f"status/{exp}.json"
