"""Crash clean-up (docs/terminal.md "Sessions"): kill the shells a dead gateway left.

The journal (`journal`) names each orphaned session's host; its processes are killed with
the marker kill (`engine.exec.ExecProcess.kill`) through that host's engine, whatever the
transport (a second exec in the container: nothing here needs the host to be on this
machine). A kill that fails because the host does not answer is tried again with backoff,
at once when the host is up again, and at the next start of a gateway; so is the kill of
a live session whose teardown could not reach its host (`defer`). A row whose host is no
longer configured is left for a gateway that has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from openpanel_ws.backoff import Backoff
from openpanel_ws.engine.exec import ExecProcess
from openpanel_ws.gateways.terminal.journal import JournalEntry, TerminalJournal
from openpanel_ws.hosts.status import HostState, HostStatus

if TYPE_CHECKING:
    from openpanel_ws.hosts.registry import Host, HostRegistry

__all__ = ["RETRY_CAP", "RETRY_INITIAL", "OrphanReaper"]

log = logging.getLogger(__name__)

# Deletes a journal row; False when the journal could not be written (logged).
CloseRow = Callable[[str], Awaitable[bool]]

# Seconds between kill attempts on a host that did not answer (doubling, jittered).
RETRY_INITIAL = 1.0
RETRY_CAP = 30.0


class OrphanReaper:
    """Kills orphaned sessions' processes on their hosts. A kill that failed is tried
    again on its host with backoff (`RETRY_INITIAL` to `RETRY_CAP` seconds, jittered), and
    at once when the host is up again (`on_status`, a `HostRegistry` status listener)."""

    def __init__(self, hosts: HostRegistry, journal: TerminalJournal, close_row: CloseRow, *,
                 retry_initial: float = RETRY_INITIAL, retry_cap: float = RETRY_CAP) -> None:
        self._hosts = hosts
        self._journal = journal
        self._close_row = close_row
        self._retry = (retry_initial, retry_cap)
        self._waiting: dict[str, list[JournalEntry]] = {}  # host id -> kills that failed
        self._wake: dict[str, asyncio.Event] = {}  # host id -> its retry loop's early wake-up
        self._tasks: dict[str, asyncio.Task[None]] = {}  # host id -> its retry loop

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
            if not await self._kill(entry):
                self._later(entry)

    async def _kill(self, entry: JournalEntry) -> bool:
        """True when the entry is done with (killed, or its host is not configured)."""
        host = self.host_of(entry)
        if host is None:
            log.warning("terminal %s left by a dead gateway on host '%s', which is not "
                        "configured: not killed", entry.session_id, entry.host)
            return True
        proc = ExecProcess(host.engine, entry.container_id, entry.program,
                           marker=entry.marker.split("=", 1)[-1])
        if not await proc.kill():
            return False
        await self._close_row(entry.session_id)
        log.warning("terminal %s left behind (gateway pid %d): its processes in container %s "
                    "on host %s were killed", entry.session_id, entry.owner_pid,
                    entry.container_id[:12], host.id)
        return True

    def defer(self, host: str, session_id: str, container_id: str, marker: str,
              program: str) -> None:
        """A live session of this gateway whose teardown could not kill its processes
        (its host stopped answering): kill them as soon as the host answers again."""
        self._later(JournalEntry(session_id, container_id, "", marker, program,
                                 self._journal.pid, self._journal.start, 0.0, host))

    def _later(self, entry: JournalEntry) -> None:
        host = self.host_of(entry)
        assert host is not None
        log.warning("terminal %s: its processes on host %s could not be killed; tried again "
                    "until the host answers", entry.session_id, host.id)
        self._waiting.setdefault(host.id, []).append(entry)
        if host.id not in self._tasks:
            task = asyncio.get_running_loop().create_task(
                self._retry_loop(host.id), name=f"terminal-reaper-{host.id}")
            self._tasks[host.id] = task

    async def _retry_loop(self, host_id: str) -> None:
        backoff = Backoff(*self._retry, jitter=0.5)
        wake = self._wake.setdefault(host_id, asyncio.Event())
        while self._waiting.get(host_id):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next_delay()):
                    await wake.wait()
            wake.clear()
            left = [e for e in self._waiting.pop(host_id, []) if not await self._kill(e)]
            if left:
                self._waiting.setdefault(host_id, []).extend(left)
        # No await since the loop's test: a `_later` from now on starts a new loop.
        del self._tasks[host_id]

    def on_status(self, status: HostStatus) -> None:
        if status.state is HostState.UP and status.host in self._wake:
            self._wake[status.host].set()

    @property
    def waiting(self) -> int:
        """Sessions whose kill waits for their host."""
        return sum(len(entries) for entries in self._waiting.values())

    async def settled(self) -> None:
        """Wait until no kill waits for its host."""
        while self._tasks:
            await asyncio.wait(set(self._tasks.values()))

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
