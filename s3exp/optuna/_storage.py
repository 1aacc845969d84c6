"""``s3exp.optuna.storage``: an Optuna storage that many processes on many machines share
through a bucket (or a directory), with heartbeats judged on the server's clock.

It is Optuna's own ``JournalStorage`` over :class:`~s3exp.optuna._journal.BucketJournal`,
plus ``BaseHeartbeat``: a running trial's process rewrites ``optuna/heartbeats/<trial>.json``
(If-Match) every ``heartbeat_interval`` seconds, and a trial whose heartbeat is older than
``grace_period`` on the *server's* clock (``Last-Modified`` against the store's clock, as for
s3exp's own leases) is stale: Optuna's ``optimize`` fails it at the start of its next trial
(``fail_stale_trials``) and calls ``heartbeat_stale_trial_callback``, for example
``RetryFailedTrialCallback``.  No worker's clock is trusted, so skew between machines does
not fail live trials.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from s3exp.bucket import TrialHeartbeat, WorkerIdentity, is_stale, keys
from s3exp.core import AlreadyExists, ConfigError, Conflict, ObjectNotFound
from s3exp.optuna._journal import BucketJournal
from s3exp.stores import Store, open_store

__all__ = ["BucketStorage", "storage"]

log = logging.getLogger(__name__)

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class BucketStorage(JournalStorage, BaseHeartbeat):
    """Optuna's JournalStorage on a bucket, with heartbeats on the server's clock."""

    def __init__(self, store: Store, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None,
                 heartbeat_stale_trial_callback: StaleCallback | None = None) -> None:
        if heartbeat_interval is not None and (isinstance(heartbeat_interval, bool)
                                               or heartbeat_interval <= 0):
            raise ConfigError(f"heartbeat_interval must be a positive integer, not {heartbeat_interval!r}")
        if grace_period is not None and (isinstance(grace_period, bool) or grace_period <= 0):
            raise ConfigError(f"grace_period must be a positive integer, not {grace_period!r}")
        self.store = store
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period if grace_period is not None else (
            2 * heartbeat_interval if heartbeat_interval is not None else None)
        self._stale_callback = heartbeat_stale_trial_callback
        self._worker = WorkerIdentity.current().id
        self._beats: dict[int, tuple[str, int]] = {}  # trial id -> (our ETag, beats)
        self._beat_lock = threading.Lock()
        super().__init__(BucketJournal(store))

    # -- BaseHeartbeat -----------------------------------------------------------------

    def record_heartbeat(self, trial_id: int) -> None:
        """Rewrite the trial's heartbeat (create the first time): one PUT."""
        key = keys.optuna_heartbeat(trial_id)
        with self._beat_lock:
            etag, beats = self._beats.get(trial_id, (None, 0))
            body = TrialHeartbeat(trial_id, beats + 1, self._worker).to_bytes()
            try:
                meta = (self.store.put_if_absent(key, body) if etag is None
                        else self.store.put_if_match(key, body, etag))
            except (AlreadyExists, Conflict):
                # Not what we last wrote (a retry of this trial elsewhere, or a lost reply):
                # take the current ETag and beat on it next time.
                current = self.store.head(key)
                self._beats[trial_id] = (current.etag, beats + 1)
                return
            self._beats[trial_id] = (meta.etag, beats + 1)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Running trials of ``study_id`` whose heartbeat is older than the grace period
        on the server's clock (one HEAD per running trial).  A running trial that never
        beat is not stale: its process may not have started the heartbeat yet."""
        assert self._grace_period is not None
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return []
        now = self.store.server_time()
        stale = []
        for trial in running:
            # (FrozenTrial's id is private; Optuna's storage API maps the number to it.)
            trial_id = self.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            try:
                meta = self.store.head(keys.optuna_heartbeat(trial_id))
            except ObjectNotFound:
                continue
            if is_stale(meta.last_modified, float(self._grace_period), now):
                stale.append(trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> StaleCallback | None:
        return self._stale_callback

    def __getstate__(self) -> dict[Any, Any]:
        """Picklable, as Optuna's storages are (to reach other processes): the store
        goes as its URL and options, the heartbeat's locks and ETags stay behind."""
        state = super().__getstate__()
        del state["_beat_lock"], state["_beats"]
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._beat_lock = threading.Lock()
        self._beats = {}


def storage(where: Store | str, *, heartbeat_interval: int | None = None,
            grace_period: int | None = None,
            heartbeat_stale_trial_callback: StaleCallback | None = None) -> BucketStorage:
    """An Optuna storage in ``where``: ``s3://bucket/prefix``, a directory, or a Store.

    Many processes on many machines may share it (each opens its own)::

        study = optuna.create_study(study_name="svm", storage=s3exp.optuna.storage(
            "s3://lab/optuna/svm-store", heartbeat_interval=60,
            heartbeat_stale_trial_callback=RetryFailedTrialCallback(max_retry=3)),
            load_if_exists=True)

    ``heartbeat_interval`` (seconds) turns the heartbeat on; ``grace_period`` defaults to
    twice that, as for Optuna's RDBStorage.
    """
    store = open_store(where) if isinstance(where, str) else where
    return BucketStorage(store, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                         heartbeat_stale_trial_callback=heartbeat_stale_trial_callback)
