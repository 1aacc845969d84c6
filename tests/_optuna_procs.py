"""Child processes of tests/test_optuna_storage.py: ``python -m tests._optuna_procs ROLE CFG``.

``optimize``  ``study.optimize`` with ``MaxTrialsCallback(max_trials)``; each objective call
              appends ``{number, params, value}`` to ``ledger`` with one write (O_APPEND)
``hang``      starts a trial with heartbeats every second, prints its number and id, and
              sleeps until it is killed
``rescue``    ``study.optimize`` with heartbeats and RetryFailedTrialCallback until the
              retried trial has completed; prints when (server clock) the stale trial failed
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import optuna
from optuna.storages import RetryFailedTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

import s3exp.optuna
from s3exp.stores import FileStore, S3Store, Store, open_store


def _store(where: dict[str, str]) -> Store:
    if where["kind"] == "file":
        return FileStore(where["root"])
    bucket, _, prefix = where["url"].removeprefix("s3://").partition("/")
    return S3Store(bucket, prefix, endpoint_url=where["endpoint"], path_style=True,
                   credentials=(where["access_key"], where["secret_key"]))


def optimize(cfg: dict[str, Any]) -> None:
    study = optuna.load_study(study_name=cfg["study"], storage=s3exp.optuna.storage(_store(cfg["where"])))
    fd = os.open(cfg["ledger"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5, 5)
        y = trial.suggest_int("y", 0, 9)
        value = (x - 1) ** 2 + y
        time.sleep(0.02)
        os.write(fd, (json.dumps({"number": trial.number, "params": trial.params,
                                  "value": value}) + "\n").encode())
        return value

    study.optimize(objective, callbacks=[MaxTrialsCallback(cfg["max_trials"], states=(TrialState.COMPLETE,))])


def hang(cfg: dict[str, Any]) -> None:
    storage = s3exp.optuna.storage(_store(cfg["where"]), heartbeat_interval=1)
    study = optuna.load_study(study_name=cfg["study"], storage=storage)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        print(json.dumps({"number": trial.number, "trial_id": trial._trial_id}), flush=True)
        time.sleep(3600)
        return 0.0

    study.optimize(objective, n_trials=1)


def rescue(cfg: dict[str, Any]) -> None:
    store = _store(cfg["where"])
    storage = s3exp.optuna.storage(store, heartbeat_interval=1, grace_period=2,
                                   heartbeat_stale_trial_callback=RetryFailedTrialCallback(max_retry=2))
    study = optuna.load_study(study_name=cfg["study"], storage=storage)
    failed_at: float | None = None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        trials = study.get_trials(deepcopy=False)
        if failed_at is None and any(t.state == TrialState.FAIL for t in trials):
            failed_at = store.server_time().timestamp()
        if any(t.system_attrs.get("failed_trial") is not None and t.state == TrialState.COMPLETE
               for t in trials):
            break
        time.sleep(0.5)
    print(json.dumps({"failed_at_server": failed_at}), flush=True)


ROLES = {"optimize": optimize, "hang": hang, "rescue": rescue}

if __name__ == "__main__":
    role, cfg = sys.argv[1], json.loads(sys.argv[2])
    ROLES[role](cfg)
