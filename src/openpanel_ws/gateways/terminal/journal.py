"""Crash-safe terminal cleanup: a SQLite journal of live terminal sessions.

One row per live session (host, container, exec id, marker, shell, owner process) is written
when the exec is created and deleted when the session has been torn down. A gateway
that dies (`kill -9`, OOM, power) leaves its rows behind; the next gateway to start
on the same state directory kills those sessions' processes (the marker kill of
`engine.exec`, through the engine of the row's host) and deletes the rows.

Several gateways may share one state directory. A row is only reaped when its owning
process is dead: its pid is gone, or the pid now belongs to a process that started at
another time (pid reuse). Rows of a live gateway are never touched, and nothing is
ever done to an exec that has no row (the gateway did not start it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from openpanel_ws import statedir

__all__ = [
    "JOURNAL_FILE",
    "JournalEntry",
    "TerminalJournal",
    "owner_alive",
    "process_start_time",
]

log = logging.getLogger(__name__)

JOURNAL_FILE: Final = "terminal-sessions.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id   TEXT PRIMARY KEY,
    container_id TEXT NOT NULL,
    exec_id      TEXT NOT NULL,
    marker       TEXT NOT NULL,
    program      TEXT NOT NULL,
    owner_pid    INTEGER NOT NULL,
    owner_start  REAL NOT NULL,
    opened_at    REAL NOT NULL,
    host         TEXT NOT NULL DEFAULT ''
)
"""
# A journal written before hosts existed: its rows are the default host's ('' below).
_ADD_HOST = "ALTER TABLE sessions ADD COLUMN host TEXT NOT NULL DEFAULT ''"
_COLUMNS = ("session_id, container_id, exec_id, marker, program, owner_pid, owner_start, "
            "opened_at, host")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    session_id: str
    container_id: str
    exec_id: str
    marker: str
    program: str
    owner_pid: int
    owner_start: float
    opened_at: float
    host: str  # the Docker host's id ('' in a row of a gateway before hosts: the default)


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), None if there is none."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def owner_alive(entry: JournalEntry) -> bool:
    """The owning process still runs (same pid, same start time within rounding)."""
    started = process_start_time(entry.owner_pid)
    return started is not None and abs(started - entry.owner_start) < 1.0


def _create(path: Path) -> None:
    """The journal file exists, as a regular file of this user's created 0600 by
    `statedir` (never through a symlink, dangling or not, which SQLite would follow).
    Raises OSError (StateDirError: docs/security.md "The state directory")."""
    statedir.ensure_private_dir(path.parent, "state directory")
    with contextlib.suppress(FileExistsError):
        os.close(statedir.open_new(path))
    statedir.check_file(path, "terminal journal")


class TerminalJournal:
    """The journal file; every call opens a short transaction (safe across processes)."""

    def __init__(self, path: Path, pid: int | None = None) -> None:
        self.path = path
        self.pid = os.getpid() if pid is None else pid
        started = process_start_time(self.pid)
        self.start = started if started is not None else time.time()
        _create(path)
        with self._db() as db:
            db.execute(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
            if "host" not in columns:
                db.execute(_ADD_HOST)

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def record_open(self, session_id: str, container_id: str, exec_id: str, marker: str,
                    program: str, host: str) -> None:
        with self._db() as db:
            db.execute(
                f"INSERT OR REPLACE INTO sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, container_id, exec_id, marker, program, self.pid, self.start,
                 time.time(), host))

    def record_close(self, session_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))

    def entries(self) -> list[JournalEntry]:
        with self._db() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM sessions ORDER BY opened_at").fetchall()
        return [JournalEntry(*row) for row in rows]

    def claim_orphans(self, alive: Callable[[JournalEntry], bool] = owner_alive) -> list[JournalEntry]:
        """Rows whose owner is dead, re-owned by this process (so two gateways starting
        together do not both reap them, and a reaper that dies in turn leaves them to
        the next one). The caller kills their processes, then `record_close`s them."""
        claimed: list[JournalEntry] = []
        with self._db() as db:
            rows = [JournalEntry(*row)
                    for row in db.execute(f"SELECT {_COLUMNS} FROM sessions").fetchall()]
            for entry in rows:
                mine = entry.owner_pid == self.pid and abs(entry.owner_start - self.start) < 1.0
                if mine or alive(entry):
                    continue
                db.execute("UPDATE sessions SET owner_pid = ?, owner_start = ? "
                           "WHERE session_id = ? AND owner_pid = ? AND owner_start = ?",
                           (self.pid, self.start, entry.session_id, entry.owner_pid,
                            entry.owner_start))
                claimed.append(entry)
        return claimed
