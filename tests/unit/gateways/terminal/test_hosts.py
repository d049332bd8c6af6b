"""Terminals on several Docker hosts, the plain parts: the wire messages name the host,
the journal keeps it (and reads a journal from before hosts), and the crash reaper's kill
on the row's host (docs/terminal.md "Hosts")."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from helpers import eventually, loop_turns
from openpanel_ws.engine.client import EngineUnavailable
from openpanel_ws.gateways.terminal.journal import TerminalJournal
from openpanel_ws.gateways.terminal.messages import TerminalRefused, opened_message, terminals_off
from openpanel_ws.gateways.terminal.reaper import OrphanReaper
from openpanel_ws.gateways.terminal.recording import header
from openpanel_ws.hosts.config import hosts_from_env
from openpanel_ws.hosts.registry import HostRegistry
from openpanel_ws.hosts.status import HostState, HostStatus


def test_terminal_opened_names_the_host() -> None:
    assert opened_message("web", "session-1", "prod-2") == {
        "type": "terminal_opened", "containerId": "web", "host": "prod-2", "sessionId": "session-1"}
    resumed = opened_message("web", "session-1", "local", resumed=True, seq=12)
    assert (resumed["host"], resumed["resumed"], resumed["seq"]) == ("local", True, 12)


def test_terminals_off_names_the_host() -> None:
    refused = TerminalRefused(terminals_off("prod-1"), containerId="web", host="prod-1")
    assert refused.to_message() == {
        "type": "terminal_error", "message": "Terminals are switched off on host 'prod-1'",
        "containerId": "web", "host": "prod-1"}


def test_recording_header_names_the_host() -> None:
    head = header(80, 24, 100.0, "xterm-256color", title="alice@web", host="prod-2")
    assert head["host"] == "prod-2" and head["title"] == "alice@web"
    assert "host" not in header(80, 24, 100.0, "xterm-256color")


def test_journal_keeps_the_host(tmp_path: Path) -> None:
    journal = TerminalJournal(tmp_path / "j.sqlite3")
    journal.record_open("s-1", "c1", "e1", "OPENPANEL_WS_SESSION=s-1", "/bin/sh", "prod-2")
    journal.record_open("s-2", "c2", "e2", "OPENPANEL_WS_SESSION=s-2", "/bin/sh", "local")
    assert {e.session_id: e.host for e in journal.entries()} == {"s-1": "prod-2", "s-2": "local"}


def test_a_journal_from_before_hosts_reads_as_the_default_host(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE sessions (session_id TEXT PRIMARY KEY, container_id TEXT NOT NULL, "
               "exec_id TEXT NOT NULL, marker TEXT NOT NULL, program TEXT NOT NULL, "
               "owner_pid INTEGER NOT NULL, owner_start REAL NOT NULL, opened_at REAL NOT NULL)")
    db.execute("INSERT INTO sessions VALUES ('s-old', 'c', 'e', 'm', '/bin/sh', 1, 2.0, 3.0)")
    db.commit()
    db.close()
    journal = TerminalJournal(path)
    journal.record_open("s-new", "c", "e", "m", "/bin/sh", "prod-2")
    assert {e.session_id: e.host for e in journal.entries()} == {"s-old": "", "s-new": "prod-2"}
    TerminalJournal(path)  # opened again: the column is there already


class KillEngine:
    """The engine calls of the marker kill (create, start, inspect), recorded; `down`
    answers as an unreachable engine."""

    def __init__(self) -> None:
        self.down = False
        self.kills: list[str] = []
        self.attempts = 0

    async def post(self, path: str, body: Any = None, params: Any = None) -> Any:
        self.attempts += 1
        if self.down:
            raise EngineUnavailable("connection refused")
        self.kills.append(path.split("/")[2])
        return {"Id": "kill-1"}

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return None

    async def get(self, path: str, params: Any = None) -> Any:
        return {"Running": False, "ExitCode": 0}


def registry_with_kill_engines() -> tuple[HostRegistry, dict[str, KillEngine]]:
    hosts = HostRegistry(hosts_from_env("local=unix:///var/run/docker.sock,"
                                        "prod-2=tcp://127.0.0.1:1"))
    engines = {host.id: KillEngine() for host in hosts}
    for host in hosts:
        host.engine = engines[host.id]  # type: ignore[assignment]
    return hosts, engines


async def test_orphans_are_killed_on_their_own_host(tmp_path: Path) -> None:
    hosts, engines = registry_with_kill_engines()
    dead = TerminalJournal(tmp_path / "j.sqlite3", pid=999_999_999)  # no such process
    dead.record_open("s-remote", "c-remote", "e1", "OPENPANEL_WS_SESSION=s-remote", "/bin/sh", "prod-2")
    dead.record_open("s-old", "c-local", "e2", "OPENPANEL_WS_SESSION=s-old", "/bin/sh", "")
    dead.record_open("s-gone", "c-gone", "e3", "OPENPANEL_WS_SESSION=s-gone", "/bin/sh", "gone")
    journal = TerminalJournal(tmp_path / "j.sqlite3")
    closed: list[str] = []

    async def close_row(session_id: str) -> bool:
        journal.record_close(session_id)
        closed.append(session_id)
        return True

    reaper = OrphanReaper(hosts, journal, close_row)
    await reaper.reap([])
    assert engines["prod-2"].kills == ["c-remote"]
    assert engines["local"].kills == ["c-local"]  # a row from before hosts: the default host
    assert sorted(closed) == ["s-old", "s-remote"]
    # A host no longer configured: its row stays for a gateway that has it.
    assert [e.session_id for e in journal.entries()] == ["s-gone"]


async def test_a_kill_on_a_down_host_is_tried_again_when_it_is_up(tmp_path: Path) -> None:
    hosts, engines = registry_with_kill_engines()
    dead = TerminalJournal(tmp_path / "j.sqlite3", pid=999_999_999)
    dead.record_open("s-remote", "c-remote", "e1", "OPENPANEL_WS_SESSION=s-remote", "/bin/sh", "prod-2")
    journal = TerminalJournal(tmp_path / "j.sqlite3")
    closed: list[str] = []

    async def close_row(session_id: str) -> bool:
        closed.append(session_id)
        return True

    # Backoff too long to matter here: only the host's `up` wakes the retry.
    reaper = OrphanReaper(hosts, journal, close_row, retry_initial=3600, retry_cap=3600)
    engines["prod-2"].down = True
    await reaper.reap([])
    assert closed == [] and reaper.waiting == 1
    reaper.on_status(HostStatus("local", HostState.UP, 0.0))  # another host: nothing
    reaper.on_status(HostStatus("prod-2", HostState.DOWN, 0.0, error="refused"))
    await loop_turns(5)
    assert reaper.waiting == 1 and closed == []
    engines["prod-2"].down = False
    reaper.on_status(HostStatus("prod-2", HostState.UP, 1.0))
    await asyncio.wait_for(reaper.settled(), 5)
    assert reaper.waiting == 0
    assert closed == ["s-remote"] and engines["prod-2"].kills == ["c-remote"]
    await reaper.close()


async def test_a_kill_is_retried_with_backoff_while_the_host_seems_up(tmp_path: Path) -> None:
    """The host never looked down (its kill failed between two probes): the backoff
    alone brings the retry; a live session's failed teardown kill is deferred the same way."""
    hosts, engines = registry_with_kill_engines()
    journal = TerminalJournal(tmp_path / "j.sqlite3")
    closed: list[str] = []

    async def close_row(session_id: str) -> bool:
        closed.append(session_id)
        return True

    reaper = OrphanReaper(hosts, journal, close_row, retry_initial=0.01, retry_cap=0.02)
    engines["prod-2"].down = True
    reaper.defer("prod-2", "s-live", "c-live", "OPENPANEL_WS_SESSION=s-live", "/bin/sh")
    await eventually(lambda: engines["prod-2"].attempts >= 3, 5, what="three attempts")
    assert reaper.waiting == 1 and closed == []
    engines["prod-2"].down = False
    await asyncio.wait_for(reaper.settled(), 5)
    assert closed == ["s-live"] and engines["prod-2"].kills == ["c-live"]
    reaper.defer("local", "s-2", "c-2", "OPENPANEL_WS_SESSION=s-2", "/bin/sh")  # a new loop
    await asyncio.wait_for(reaper.settled(), 5)
    assert closed == ["s-live", "s-2"]
    await reaper.close()
