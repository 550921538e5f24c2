"""The persistent job queue: one SQLite file, ``$WORKBENCH_HOME/jobs.sqlite`` (default ``~/.workbench``).

Every change is one transaction (``BEGIN IMMEDIATE``), the journal is WAL, so a reader never sees half an
update and a SIGKILL at any moment leaves the file consistent. The schema version lives in
``PRAGMA user_version``; :data:`MIGRATIONS` upgrades older files in place and a newer file is refused.

A job is one stage command on one project. States::

    queued -> running -> done | failed | cancelled      (queued -> cancelled/failed also, e.g. a dependency)
    running -> queued                                     (its process died with the server: re-queued)
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import WorkbenchError

HOME_ENV = "WORKBENCH_HOME"
DB_NAME = "jobs.sqlite"
LOGS_DIR = "logs"
SCHEMA_VERSION = 1
STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = frozenset({"done", "failed", "cancelled"})


class JobError(WorkbenchError):
    """A job cannot be added, found or changed (unknown id, bad stage, bad dependency...)."""


def workbench_home() -> Path:
    """``$WORKBENCH_HOME`` or ``~/.workbench`` (created on first use)."""
    home = Path(os.environ.get(HOME_ENV) or Path.home() / ".workbench").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


# Each entry upgrades the schema from version (index) to version (index + 1).
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project TEXT NOT NULL,
        stage TEXT NOT NULL,
        argv TEXT NOT NULL,            -- JSON list: the stage's arguments as the user gave them (after PROJECT)
        device TEXT NOT NULL,          -- requested: cpu | cuda:N | auto
        priority INTEGER NOT NULL DEFAULT 0,
        after TEXT NOT NULL DEFAULT '[]',  -- JSON list of job ids that must be done first
        keys TEXT NOT NULL DEFAULT '[]',   -- JSON list of exclusivity keys (folders the job writes)
        state TEXT NOT NULL DEFAULT 'queued',
        reason TEXT,                   -- why it failed / was cancelled / was re-queued
        created REAL NOT NULL,
        started REAL,
        ended REAL,
        pid INTEGER,
        pid_start INTEGER,             -- the process's start time (clock ticks since boot): guards pid reuse
        assigned_device TEXT,
        threads INTEGER,
        command TEXT,                  -- the command line of the last launch (for humans)
        log_path TEXT,
        exit_code INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        cancel_requested REAL,
        meta TEXT NOT NULL DEFAULT '{}'    -- JSON: stage bookkeeping (e.g. a trainer's step at first launch)
    );
    CREATE INDEX jobs_state ON jobs(state);
    """,
)


@dataclass(frozen=True)
class Job:
    """One row of the queue."""

    id: int
    project: str
    stage: str
    argv: tuple[str, ...]
    device: str
    priority: int = 0
    after: tuple[int, ...] = ()
    keys: tuple[str, ...] = ()
    state: str = "queued"
    reason: str | None = None
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    pid_start: int | None = None
    assigned_device: str | None = None
    threads: int | None = None
    command: str | None = None
    log_path: str | None = None
    exit_code: int | None = None
    attempts: int = 0
    cancel_requested: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data.update(argv=list(self.argv), after=list(self.after), keys=list(self.keys), meta=dict(self.meta))
        return data


_JSON_COLUMNS = {"argv": tuple, "after": tuple, "keys": tuple, "meta": dict}


def _row_to_job(row: sqlite3.Row) -> Job:
    values = dict(row)
    for name, kind in _JSON_COLUMNS.items():
        values[name] = kind(json.loads(values[name] or ("{}" if kind is dict else "[]")))
    return Job(**values)


class JobStore:
    """The queue file. Cheap to open; every method is one short transaction (safe across processes).

    Args:
        path: the SQLite file (default ``$WORKBENCH_HOME/jobs.sqlite``).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else workbench_home() / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.logs_dir = self.path.parent / LOGS_DIR
        with self._connect() as con:
            self._migrate(con)

    # -- connection -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise JobError(f"cannot open the job queue ({exc})", self.path,
                           f"check the folder's permissions or set ${HOME_ENV} to another folder") from exc
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA busy_timeout = 30000")
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on any exception): one writer at a time."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _migrate(self, con: sqlite3.Connection) -> None:
        try:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            version = con.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise JobError(f"the job queue file is not a readable SQLite database ({exc})", self.path,
                           "move it away; a new empty queue is created on the next command") from exc
        if mode.lower() != "wal":  # e.g. a network file system; transactions still protect the file
            con.execute("PRAGMA journal_mode = DELETE")
        if version > SCHEMA_VERSION:
            raise JobError(f"the job queue has schema {version}, newer than this workbench ({SCHEMA_VERSION})",
                           self.path, "upgrade the workbench package, or set $WORKBENCH_HOME to another folder")
        if version == SCHEMA_VERSION:
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
            for step in range(version, SCHEMA_VERSION):
                # executescript() would commit on its own: run the statements one by one inside this transaction
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        con.execute(statement)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    # -- reads --------------------------------------------------------------------------------------------
    def get(self, job_id: int) -> Job:
        with self._connect() as con:
            row = con.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if row is None:
            raise JobError(f"no job #{job_id}", self.path, "list jobs with `workbench jobs list`")
        return _row_to_job(row)

    def list(self, states: Sequence[str] | None = None) -> list[Job]:
        """Jobs in id order (optionally only some states)."""
        with self._connect() as con:
            if states:
                marks = ",".join("?" * len(states))
                rows = con.execute(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id", tuple(states))
            else:
                rows = con.execute("SELECT * FROM jobs ORDER BY id")
            return [_row_to_job(r) for r in rows.fetchall()]

    # -- writes -------------------------------------------------------------------------------------------
    def add(self, project: str, stage: str, argv: Sequence[str], *, device: str = "auto", priority: int = 0,
            after: Sequence[int] = (), keys: Sequence[str] = ()) -> Job:
        """Queue a job (dependencies must exist). Returns it."""
        with self.transaction() as con:
            for dep in after:
                row = con.execute("SELECT state FROM jobs WHERE id = ?", (int(dep),)).fetchone()
                if row is None:
                    raise JobError(f"--after {dep}: no such job", self.path, "list jobs with `workbench jobs list`")
            cur = con.execute(
                "INSERT INTO jobs (project, stage, argv, device, priority, after, keys, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (str(project), stage, json.dumps(list(argv)), device, int(priority),
                 json.dumps([int(a) for a in after]), json.dumps(sorted(set(keys))), time.time()))
            job_id = cur.lastrowid
        return self.get(job_id)

    def update(self, job_id: int, *, expect_state: str | Sequence[str] | None = None, **values: Any) -> bool:
        """Set columns of one job; with ``expect_state`` only if the job is still in that state.

        Returns True when the row changed (a compare-and-set, so two processes never both win).
        """
        sets, params = [], []
        for name, value in values.items():
            if name in _JSON_COLUMNS:
                value = json.dumps(list(value) if _JSON_COLUMNS[name] is tuple else dict(value))
            sets.append(f"{name} = ?")
            params.append(value)
        sql = f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?"
        params.append(int(job_id))
        if expect_state is not None:
            states = (expect_state,) if isinstance(expect_state, str) else tuple(expect_state)
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params += list(states)
        with self.transaction() as con:
            return con.execute(sql, params).rowcount == 1

    def request_cancel(self, job_id: int) -> Job:
        """Cancel a queued job at once; mark a running one (the server stops it). Final jobs are unchanged."""
        job = self.get(job_id)
        now = time.time()
        if job.state == "queued":
            if self.update(job_id, expect_state="queued", state="cancelled", ended=now,
                           reason="cancelled before it started", cancel_requested=now):
                return self.get(job_id)
            job = self.get(job_id)  # it started meanwhile: cancel the running job
        if job.state == "running" and job.cancel_requested is None:
            self.update(job_id, expect_state="running", cancel_requested=now)
        return self.get(job_id)

    def log_path(self, job_id: int) -> Path:
        return self.logs_dir / f"job-{int(job_id)}.log"
