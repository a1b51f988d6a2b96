"""Where a study keeps its trials, and how a dead worker's trial gets noticed and retried.

    open_storage(None, sweep_dir, heartbeat)          -> SQLite <sweep_dir>/study.db
    open_storage("postgresql://u@host/db", ...)      -> any SQLAlchemy URL (several machines)
    open_storage("journal:runs/sweeps/x.log", ...)   -> JournalStorage on a JournalFileBackend

Every running trial records a heartbeat; a trial silent for `grace` seconds is failed by the next
worker that starts a trial, and `RetryHeartbeatStaleTrialCallback` (Optuna's renamed
`RetryFailedTrialCallback`) queues it again with the same parameters (and the same grid point).
RDBStorage has heartbeats built in. Optuna's JournalStorage does not (as of Optuna 5.0), so
`HeartbeatJournalStorage` adds them the same way: a timestamp in the trial's system attributes.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from ..errors import UserError

log = logging.getLogger(__name__)
# Heartbeats and the retry callback are deliberate choices; Optuna still tags them experimental.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

JOURNAL_PREFIX = "journal:"
SCHEMA_RACE_RETRIES = 3
_HEARTBEAT_ATTR = "heartbeat"


def default_storage_url(sweep_dir: Path) -> str:
    return f"sqlite:///{(Path(sweep_dir) / 'study.db').resolve()}"


def open_storage(url: str | None, sweep_dir: Path, heartbeat) -> BaseStorage:
    """The Optuna storage for `url` (None = SQLite in the sweep folder), with heartbeat + retry."""
    url = url or default_storage_url(sweep_dir)
    retry = RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry) if heartbeat.interval else None
    check_storage_url(url)
    path = storage_file(url)
    if path is not None:
        _make_folder(path, url)
    if url.startswith(JOURNAL_PREFIX):
        return HeartbeatJournalStorage(JournalFileBackend(str(path)), heartbeat.interval, heartbeat.grace, retry)
    # SQLite serialises writers; with several workers and heartbeat threads the default 5 s lock
    # timeout is too short and surfaces as "database is locked".
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(SCHEMA_RACE_RETRIES + 1):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat.interval,
                              grace_period=heartbeat.grace, heartbeat_stale_trial_callback=retry)
        except (ImportError, ModuleNotFoundError) as exc:
            raise UserError(f"storage {redact(url)} needs a database driver ({exc}); "
                            "for PostgreSQL: pip install 'satdiffmoe[postgres]'") from None
        except Exception as exc:  # noqa: BLE001 - sqlalchemy's ArgumentError / OperationalError
            # Workers started together on a fresh database race to create Optuna's tables; the
            # losers see "table ... already exists" and succeed on a second look.
            if "already exists" in str(exc) and attempt < SCHEMA_RACE_RETRIES:
                time.sleep(0.5 * (attempt + 1))
                continue
            raise UserError(f"cannot open Optuna storage {redact(url)}: {str(exc).splitlines()[0]}") from None


def storage_file(url: str) -> Path | None:
    """The file of a file storage (journal:path, sqlite:///path); None for a server URL."""
    for prefix in (JOURNAL_PREFIX, "sqlite:///"):
        if url.startswith(prefix):
            return Path(url[len(prefix):])
    return None


def check_storage_url(url: str | None) -> None:
    """Refuse, before anything is created, a storage no sweep can use: an in-memory SQLite database
    (each worker, heartbeat thread and resume sees its own empty one: a 1-byte trials.csv), or a file
    storage whose folder cannot exist."""
    if url is None:
        return
    if url.startswith("sqlite") and url.split("://", 1)[-1].lstrip("/") in ("", ":memory:"):
        raise UserError(f"storage {url} is an in-memory SQLite database, which no other worker, heartbeat or "
                        "resume can see; a sweep needs a file or server storage: leave --storage out "
                        "(sqlite:///<sweep folder>/study.db), or give sqlite:///path/study.db or journal:path.log")
    path = storage_file(url)
    if path is None:
        return
    fix = "give a file path in a writable folder, e.g. journal:runs/sweeps/x.log"
    if not str(path).strip() or path.name in ("", ".", ".."):
        raise UserError(f"storage {url} names no file; {fix}")
    existing = path.absolute().parent  # the nearest folder that exists must let us create the rest
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        why = "not a folder" if not existing.is_dir() else "not writable"
        raise UserError(f"storage {url}: its folder cannot be created ({existing} is {why}); {fix}")


def _make_folder(path: Path, url: str) -> None:
    """The folder a file storage writes into, or one line saying why it cannot exist."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"storage {redact(url)}: cannot create its folder {path.parent} ({exc.strerror}); "
                        "give a path in a writable folder") from None


def redact(url: str) -> str:
    """The storage URL with its password masked, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL (journal:path): nothing to hide
        return url


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """JournalStorage plus the heartbeat protocol RDBStorage implements (stale trial -> FAIL + retry)."""

    def __init__(self, backend, interval: int | None, grace: int | None,
                 stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None) -> None:
        super().__init__(backend)
        self._heartbeat_interval = interval
        self._grace = grace or (2 * interval if interval else None)
        self._stale_callback = stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        # Wall clock, not a monotonic clock: workers on other machines compare against it.
        self.set_trial_system_attr(trial_id, _HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            # No beat yet (killed right after it started) or an inherited one (a retry copies its
            # predecessor's attributes): the trial's start time counts as a beat.
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            beat = max(trial.system_attrs.get(_HEARTBEAT_ATTR) or 0.0, started)
            if now - beat > self._grace:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self._stale_callback
