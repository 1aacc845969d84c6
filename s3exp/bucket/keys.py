"""Every object key s3exp reads or writes is built here, and only here.

Layout under the store's root (``s3://bucket/prefix`` or a directory)::

    experiments/<exp>.json                        the spec; created once, immutable
    control/<exp>.json                            pause / cancel flags (If-Match)
    runs/<exp>/<run_id>/lease.json                claim = create; renew = If-Match
    runs/<exp>/<run_id>/result-<NNNN>.json        attempt NNNN's result = create; empty = sealed
    runs/<exp>/<run_id>/error-<NNNN>.json         one per failed attempt, kept
    runs/<exp>/<run_id>/interrupt-<NNNN>.json     one per interrupted attempt, kept
    staging/<exp>/<run_id>/<NNNN>/<NNNNNN>.parquet   metric shards (attempt, sequence)
    compaction/<exp>/manifest.json                what is compacted; committed by CAS
    compaction/<exp>/pending/<token>-<NNN>.parquet   parts written before their commit
    status/<exp>.json                             status rollup written by compaction
    costs/<exp>/<worker id>.json                  one worker's (or the compactors') request counts
    metrics/experiment=<exp>/part-<GGGGGG>-<token>-<NNN>.parquet   compacted, Hive-partitioned
    results/experiment=<exp>/part-<GGGGGG>-<token>-<NNN>.parquet   one row per finished run
    athena-results/...                            Athena's query output (AWS stack); never read
    optuna/log/<NNNNNNNNNNNN>.json                Optuna's journal: one entry each, create-only
    optuna/snapshots/<NNNNNNNNNNNN>.pkl           the replayed journal before entry N
    optuna/heartbeats/<NNNNNNNNNNNN>.json         a running trial's heartbeat (If-Match)

Specs, run state and metrics live under separate top-level prefixes so that listing the
experiments never pages through runs, and so that IAM policies can grant each role exactly
one prefix (workers never write ``experiments/``).  Numbers are zero-padded so that LIST
order is numeric order.  Names are validated by :mod:`s3exp.core._names` first.
"""

from __future__ import annotations

__all__ = [
    "ATHENA_RESULTS",
    "EXPERIMENTS",
    "OPTUNA",
    "SPEC_SUFFIX",
    "STAGING",
    "control",
    "cost",
    "costs_prefix",
    "error",
    "experiment_from_spec_key",
    "globs",
    "interrupt",
    "lease",
    "manifest",
    "optuna_heartbeat",
    "optuna_log",
    "optuna_snapshot",
    "optuna_snapshots_prefix",
    "parse_optuna_snapshot",
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


def result(exp: str, run_id: str, attempt: int) -> str:
    """Attempt ``attempt``'s result, or (empty) the seal that fences it out; see
    :mod:`s3exp.bucket._leases`."""
    return f"{run_prefix(exp, run_id)}result-{attempt:04d}.json"


def error(exp: str, run_id: str, attempt: int) -> str:
    return f"{run_prefix(exp, run_id)}error-{attempt:04d}.json"


def interrupt(exp: str, run_id: str, attempt: int) -> str:
    return f"{run_prefix(exp, run_id)}interrupt-{attempt:04d}.json"


STAGING = "staging/"


def staging_prefix(exp: str) -> str:
    return f"{STAGING}{exp}/"


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


def costs_prefix(exp: str) -> str:
    return f"costs/{exp}/"


def cost(exp: str, meter_id: str) -> str:
    """The request counts of one worker (or of the compactors) for ``exp``; the id is a
    validated name (:func:`s3exp.ops._costs.check_meter_id`)."""
    return f"{costs_prefix(exp)}{meter_id}.json"


# Athena writes query results here (the AWS stack's workgroup).  s3exp never reads them.
ATHENA_RESULTS = "athena-results/"

# Optuna's journal (s3exp.optuna.storage): numbered create-only log entries, snapshots of
# the replayed state, and one heartbeat object per running trial.
OPTUNA = "optuna/"


def optuna_log(n: int) -> str:
    return f"{OPTUNA}log/{n:012d}.json"


def optuna_snapshots_prefix() -> str:
    return f"{OPTUNA}snapshots/"


def optuna_snapshot(n: int) -> str:
    """A snapshot of the replayed journal up to (not including) entry ``n``."""
    return f"{optuna_snapshots_prefix()}{n:012d}.pkl"


def parse_optuna_snapshot(key: str) -> int | None:
    rest = key.removeprefix(optuna_snapshots_prefix()).removesuffix(".pkl")
    return int(rest) if key.startswith(optuna_snapshots_prefix()) and rest.isdigit() else None


def optuna_heartbeat(trial_id: int) -> str:
    return f"{OPTUNA}heartbeats/{trial_id:012d}.json"


def globs() -> dict[str, str]:
    """Every kind of key above with ``*`` for each name and number: the patterns the IAM
    policies of :mod:`s3exp.bucket._policies` grant (IAM's ``*`` also matches ``/``)."""
    return {
        "spec": spec("*"),
        "control": control("*"),
        "lease": lease("*", "*"),
        "result": f"{run_prefix('*', '*')}result-*.json",
        "error": f"{run_prefix('*', '*')}error-*.json",
        "interrupt": f"{run_prefix('*', '*')}interrupt-*.json",
        "shard": f"{staging_prefix('*')}*.parquet",
        "manifest": manifest("*"),
        "pending_part": f"{pending_prefix('*')}*.parquet",
        "status_rollup": status_rollup("*"),
        "cost": cost("*", "*"),
        "metrics_part": f"{table_prefix('metrics', '*')}*.parquet",
        "results_part": f"{table_prefix('results', '*')}*.parquet",
        "athena_results": f"{ATHENA_RESULTS}*",
        "optuna_log": f"{OPTUNA}log/*.json",
        "optuna_snapshot": f"{optuna_snapshots_prefix()}*.pkl",
        "optuna_heartbeat": f"{OPTUNA}heartbeats/*.json",
    }
