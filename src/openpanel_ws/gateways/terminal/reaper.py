"""Crash clean-up (docs/terminal.md "Sessions"): kill the shells a dead gateway left.

The journal (`journal`) names each orphaned session's host; its processes are killed with
the marker kill (`engine.exec.ExecProcess.kill`) through that host's engine, whatever the
transport (a second exec in the container: nothing here needs the host to be on this
machine). A kill that fails because the host is down is tried again when the host is
next up, and at the next start of a gateway; a row whose host is no longer configured is
left for a gateway that has it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from openpanel_ws.engine.exec import ExecProcess
from openpanel_ws.gateways.terminal.journal import JournalEntry, TerminalJournal
from openpanel_ws.hosts.status import HostState, HostStatus

if TYPE_CHECKING:
    from openpanel_ws.hosts.registry import Host, HostRegistry

__all__ = ["OrphanReaper"]

log = logging.getLogger(__name__)

# Deletes a journal row; False when the journal could not be written (logged).
CloseRow = Callable[[str], Awaitable[bool]]


class OrphanReaper:
    """Kills orphaned sessions' processes on their hosts; retries a down host's when it
    is up again (`on_status`, a `HostRegistry` status listener)."""

    def __init__(self, hosts: HostRegistry, journal: TerminalJournal, close_row: CloseRow) -> None:
        self._hosts = hosts
        self._journal = journal
        self._close_row = close_row
        self._waiting: dict[str, list[JournalEntry]] = {}  # host id -> kills that failed
        self._tasks: set[asyncio.Task[None]] = set()

    def host_of(self, entry: JournalEntry) -> Host | None:
        """The entry's host (a row written before hosts existed: the default host)."""
        return self._hosts.get(entry.host) if entry.host else self._hosts.default

    async def reap(self, stale: list[JournalEntry]) -> None:
        """Claim the rows of dead gateways and kill them, with `stale` (rows of this
        process that a reload did not hand on)."""
        try:
            orphans = stale + await asyncio.to_thread(self._journal.claim_orphans)
        except (sqlite3.Error, OSError) as exc:
            log.error("terminal journal %s: %s", self._journal.path, exc)
            return
        for entry in orphans:
            await self._kill(entry)

    async def _kill(self, entry: JournalEntry) -> None:
        host = self.host_of(entry)
        if host is None:
            log.warning("terminal %s left by a dead gateway on host '%s', which is not "
                        "configured: not killed", entry.session_id, entry.host)
            return
        proc = ExecProcess(host.engine, entry.container_id, entry.program,
                           marker=entry.marker.split("=", 1)[-1])
        if await proc.kill():
            await self._close_row(entry.session_id)
            log.warning("terminal %s left by a dead gateway (pid %d): its processes in "
                        "container %s on host %s were killed", entry.session_id,
                        entry.owner_pid, entry.container_id[:12], host.id)
        else:
            self._waiting.setdefault(host.id, []).append(entry)
            log.warning("terminal %s left by a dead gateway on host %s: kill failed, tried "
                        "again when the host is up", entry.session_id, host.id)

    def on_status(self, status: HostStatus) -> None:
        if status.state is not HostState.UP or status.host not in self._waiting:
            return
        entries = self._waiting.pop(status.host)
        task = asyncio.get_running_loop().create_task(self._retry(entries),
                                                      name=f"terminal-reaper-{status.host}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry(self, entries: list[JournalEntry]) -> None:
        for entry in entries:
            await self._kill(entry)

    @property
    def waiting(self) -> int:
        """Orphaned sessions whose kill waits for their host."""
        return sum(len(entries) for entries in self._waiting.values())

    async def settled(self) -> None:
        """Wait for the kills started by `on_status`."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
