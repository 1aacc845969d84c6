"""``s3exp.optuna.storage``: Optuna's own storage conformance suite on the directory store
and on SeaweedFS, many processes optimizing one study, and a killed process's trial
failed by its heartbeat on the server's clock and retried."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import BaseStorage
from optuna.testing.pytest_storages import StorageTestCase
from optuna.trial import TrialState

import s3exp.optuna
from s3exp.bucket import keys
from s3exp.devserver import SeaweedServer
from s3exp.stores import FileStore, Store

from .conftest import MakeS3Store

REPO = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(params=["file", "seaweed"])
def bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "file":
        yield FileStore(tmp_path / "journal")
    else:
        make: MakeS3Store = request.getfixturevalue("seaweed_bucket")
        yield make("studies")


class TestOptunaConformance(StorageTestCase):
    """Every test of ``optuna.testing.pytest_storages.StorageTestCase``, which ships with
    Optuna, against a fresh journal on each store."""

    @pytest.fixture
    def storage(self, bucket: Store) -> BaseStorage:  # type: ignore[override]
        return s3exp.optuna.storage(bucket)


def test_entries_are_numbered_create_only_objects_and_a_new_process_replays_them(
        tmp_path: Path) -> None:
    store = FileStore(tmp_path / "j")
    study = optuna.create_study(study_name="s", storage=s3exp.optuna.storage(store))
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=5)
    logs = sorted(m.key for m in store.list(keys.OPTUNA + "log/"))
    assert logs == [keys.optuna_log(i) for i in range(len(logs))]  # no gap
    again = optuna.load_study(study_name="s", storage=s3exp.optuna.storage(FileStore(tmp_path / "j")))
    assert [t.value for t in again.trials] == [t.value for t in study.trials]
    assert len(again.trials) == 5


def _spawn(role: str, cfg: dict[str, Any]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen([sys.executable, "-m", "tests._optuna_procs", role, json.dumps(cfg)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _where(store: Store, seaweed: SeaweedServer | None) -> dict[str, str]:
    if seaweed is None:
        assert isinstance(store, FileStore)
        return {"kind": "file", "root": str(store.root)}
    return {"kind": "s3", "url": store.url, "endpoint": seaweed.endpoint_url,
            "access_key": seaweed.credentials.access_key,
            "secret_key": seaweed.credentials.secret_key}


@pytest.mark.seaweed
@pytest.mark.timeout(300)
def test_eight_processes_optimize_one_study_and_lose_or_duplicate_no_trial(
        seaweed: SeaweedServer, seaweed_bucket: MakeS3Store, tmp_path: Path) -> None:
    """8 processes run ``study.optimize`` with ``MaxTrialsCallback(n)`` on one study.  An
    independent ledger (each objective call appends a line) and the journal agree: every
    trial that ran is in the study once, with its value, and every trial in the study ran
    once.  MaxTrialsCallback stops each process once it sees n complete trials; trials
    already running elsewhere then finish, so n to n + 7 complete (as on any storage)."""
    store = seaweed_bucket("eight")
    n, workers = 40, 8
    optuna.create_study(study_name="eight", storage=s3exp.optuna.storage(store))
    ledgers = [tmp_path / f"ledger-{i}.jsonl" for i in range(workers)]
    procs = [_spawn("optimize", {"where": _where(store, seaweed), "study": "eight",
                                 "max_trials": n, "ledger": str(ledgers[i])})
             for i in range(workers)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * workers, [o[1][-2000:] for o in outs]
    ran = [json.loads(line) for path in ledgers for line in path.read_text().splitlines()]
    study = optuna.load_study(study_name="eight", storage=s3exp.optuna.storage(store))
    trials = study.get_trials(deepcopy=False)
    numbers = Counter(r["number"] for r in ran)
    assert all(c == 1 for c in numbers.values()), "a trial ran twice"
    assert sorted(numbers) == [t.number for t in trials] == list(range(len(trials)))
    by_number = {t.number: t for t in trials}
    for r in ran:
        t = by_number[r["number"]]
        assert t.state == TrialState.COMPLETE and t.value == r["value"] and t.params == r["params"]
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    assert n <= complete <= n + workers - 1, complete
    entries = sorted(m.key for m in store.list(keys.OPTUNA + "log/"))
    assert entries == [keys.optuna_log(i) for i in range(len(entries))]  # one order, no gap


@pytest.mark.seaweed
@pytest.mark.timeout(180)
def test_a_killed_process_trial_is_failed_by_its_heartbeat_and_retried(
        seaweed: SeaweedServer, seaweed_bucket: MakeS3Store) -> None:
    """A process is SIGKILLed in the middle of a trial.  Its heartbeat stops; once it is
    older than the grace period on the server's clock, the next process to start a trial
    fails it and RetryFailedTrialCallback enqueues it again, and that retry completes."""
    store = seaweed_bucket("killed")
    optuna.create_study(study_name="k", storage=s3exp.optuna.storage(store))
    where = _where(store, seaweed)
    victim = _spawn("hang", {"where": where, "study": "k"})
    assert victim.stdout is not None
    started = json.loads(victim.stdout.readline())  # the trial is running, beating
    time.sleep(2.5)  # a couple of heartbeats
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    beat = store.head(keys.optuna_heartbeat(started["trial_id"])).last_modified
    rescuer = _spawn("rescue", {"where": where, "study": "k"})
    out, err = rescuer.communicate(timeout=120)
    assert rescuer.returncode == 0, err[-3000:]
    report = json.loads(out.splitlines()[-1])
    study = optuna.load_study(study_name="k", storage=s3exp.optuna.storage(store))
    dead = study.trials[started["number"]]
    assert dead.state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == dead.params  # RetryFailedTrialCallback re-runs the same point
    # Failed only once the heartbeat was older than the grace period (2 s) + 2 s margin,
    # by the server's clock.
    assert report["failed_at_server"] - beat.timestamp() > 2.0
