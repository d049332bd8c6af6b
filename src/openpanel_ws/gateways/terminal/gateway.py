"""`/ws/terminal`: the gateway, its handlers and its lifecycle (docs/terminal.md).

One terminal per connection; the parts it is built from are listed in the package
docstring (`openpanel_ws.gateways.terminal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import openpanel_ws.gateways.terminal.handoff as handoff
from openpanel_ws.engine.client import EngineError, EngineNotFound, EngineUnavailable
from openpanel_ws.engine.exec import (
    MARKER_ENV,
    ExecProcess,
    path_exists,
)
from openpanel_ws.gateways.access import docker_unavailable, resolve_container, resolve_host
from openpanel_ws.gateways.access import permission_denied as scope_denied
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.gateways.terminal.audit import AuditLog, end_record, start_record
from openpanel_ws.gateways.terminal.journal import JOURNAL_FILE, JournalEntry, TerminalJournal
from openpanel_ws.gateways.terminal.lifecycle import TerminalLifecycle, new_session_id
from openpanel_ws.gateways.terminal.live import Terminal, TerminalState, bound_terminal, unbind
from openpanel_ws.gateways.terminal.messages import (
    ALREADY_OPEN,
    AUDIT_UNWRITABLE,
    CONNECTION_CLOSED,
    NO_TERMINAL,
    NO_TTY_RESIZE,
    NOT_FOUND_OR_NOT_RUNNING,
    PERMISSION_REVOKED,
    REAUTH_DENIED,
    SERVER_SHUTDOWN,
    SERVICE_RESTART,
    SHUTTING_DOWN,
    USER_CLOSED,
    OpenRequest,
    TerminalRefused,
    opened_message,
    parse_input,
    parse_open,
    parse_resize,
    permission_denied,
    program_not_found,
    resize_failed,
    terminals_off,
)
from openpanel_ws.gateways.terminal.reaper import OrphanReaper
from openpanel_ws.gateways.terminal.registry import UNKNOWN_SESSION, TerminalRegistry
from openpanel_ws.gateways.terminal.startup import create_exec, start_exec
from openpanel_ws.protocol import ErrorCode, Message, ProtocolError, invalid

if TYPE_CHECKING:
    from openpanel_ws.hosts.registry import Host
    from openpanel_ws.services import Services

__all__ = ["STOP_TIMEOUT", "TerminalGateway"]

log = logging.getLogger(__name__)

# How long shutdown waits for every shell to be killed.
STOP_TIMEOUT: Final = 25.0


class TerminalGateway(Gateway[TerminalState]):
    """`/ws/terminal`: its handlers, the live terminals (attached or detached), their
    registry and caps, the audit log, the crash journal and the reload hand-off."""

    name = "terminal"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self._terminals: set[Terminal] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._audit = AuditLog(self.settings.terminal_audit_log)
        self._registry: TerminalRegistry[Terminal] = TerminalRegistry(
            self.settings.terminal_max_per_user, self.settings.terminal_max)
        self._journal: TerminalJournal | None = None
        self._reaper: OrphanReaper | None = None
        self._stopping = False

    def handlers(self) -> dict[str, Handler[TerminalState]]:
        return {
            "open_terminal": self._reporting(self._open),
            "input": self._reporting(self._input),
            "resize": self._reporting(self._resize),
            "close_terminal": self._reporting(self._close_terminal),
            "eof": self._reporting(self._eof),  # terminal extensions
        }

    @staticmethod
    def _reporting(handler: Handler[TerminalState]) -> Handler[TerminalState]:
        """TerminalRefused -> `terminal_error`; ProtocolError goes on to the shared `error`."""

        async def run(session: Session[TerminalState], msg: Message) -> None:
            try:
                await handler(session, msg)
            except TerminalRefused as exc:
                session.send(exc.to_message())

        return run

    # --- bookkeeping ------------------------------------------------------------------

    def track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def release(self, terminal: Terminal, *, forget: bool) -> None:
        """The terminal has ended; `forget`: its processes are gone, drop its journal row
        (else it stays for a later gateway to reap and, unless this one is stopping, the
        kill is tried again until its host answers)."""
        if terminal in self._terminals:
            self._terminals.discard(terminal)
            self._registry.remove(terminal.lifecycle.session_id)
        if terminal.attached is not None:
            terminal.attached.release()
        if terminal.journaled and forget and self._journal is not None:
            terminal.journaled = False
            await self._journal_call(self._journal.record_close, terminal.lifecycle.session_id)
        elif terminal.journaled and self._reaper is not None and not self._stopping:
            lifecycle, proc = terminal.lifecycle, terminal.proc
            self._reaper.defer(lifecycle.host, lifecycle.session_id, lifecycle.container_id,
                               f"{MARKER_ENV}={lifecycle.session_id}", proc.program)

    async def _close_row(self, session_id: str) -> bool:
        assert self._journal is not None
        return await self._journal_call(self._journal.record_close, session_id)

    async def _journal_call(self, fn: Callable[..., object], *args: str) -> bool:
        try:
            await asyncio.to_thread(fn, *args)
        except (sqlite3.Error, OSError) as exc:
            log.error("terminal journal %s: %s", self._journal_path, exc)
            return False
        return True

    @property
    def _journal_path(self) -> Path:
        return self.settings.state_dir / JOURNAL_FILE

    def audit_end(self, terminal: Terminal) -> None:
        self._audit.write(end_record(terminal.lifecycle, user=terminal.user,
                                     client_id=terminal.client_id, remote=terminal.remote,
                                     recording=terminal.recorder.path if terminal.recorder else None))

    @property
    def open_terminals(self) -> int:
        return len(self._terminals)

    @property
    def ring_bytes(self) -> list[int]:
        """Output bytes each live terminal's ring holds (for operators and the bench)."""
        return [t.ring.held for t in self._terminals]

    @property
    def detached_terminals(self) -> int:
        return sum(1 for t in self._terminals if t.attached is None and t.lifecycle.is_open)

    @staticmethod
    def _terminal_of(session: Session[TerminalState]) -> Terminal:
        terminal = bound_terminal(session)
        if terminal is None:
            raise TerminalRefused(NO_TERMINAL)
        return terminal

    async def _still_allowed(self, session: Session[TerminalState], terminal: Terminal) -> None:
        # A refreshed token may have lost the permission or the host: the shell goes with it.
        if not session.user.may_open_terminal:
            await terminal.close(PERMISSION_REVOKED, notify=True)
            raise permission_denied()
        lifecycle = terminal.lifecycle
        if not session.user.may_access_host(lifecycle.host):
            await terminal.close(REAUTH_DENIED, notify=True)
            raise scope_denied({"containerId": lifecycle.container_ref, "host": lifecycle.host})

    def _host(self, session: Session[TerminalState], msg: Message, ref: str) -> Host:
        """The host an `open_terminal` is about (docs/protocol.md "Addressing"), checked
        against the `hosts` claim before anything else, and allowing terminals."""
        host = resolve_host(self.services.hosts, session, msg, {"containerId": ref})
        if not host.terminals:
            raise TerminalRefused(terminals_off(host.id), containerId=ref, host=host.id)
        return host

    async def _container(self, session: Session[TerminalState], host: Host, ref: str) -> dict[str, Any]:
        """The running container `ref` names on `host`, as this user may see it."""
        try:
            info = await resolve_container(host, session.user, ref)
        except ProtocolError as exc:
            if exc.code is ErrorCode.CONTAINER_NOT_FOUND:
                raise TerminalRefused(NOT_FOUND_OR_NOT_RUNNING, containerId=ref, host=host.id) from None
            raise
        container_state = info.get("State") or {}
        if (not container_state.get("Running") or container_state.get("Paused")
                or container_state.get("Restarting")):
            raise TerminalRefused(NOT_FOUND_OR_NOT_RUNNING, containerId=ref, host=host.id)
        return info

    # --- handlers ---------------------------------------------------------------------

    async def _open(self, session: Session[TerminalState], msg: Message) -> None:
        if not session.user.may_open_terminal:
            raise permission_denied()
        request = parse_open(msg)
        if bound_terminal(session) is not None:
            raise TerminalRefused(ALREADY_OPEN)
        unbind(session)  # a stale TerminalState: its terminal is closing
        if self._stopping:
            raise TerminalRefused(SHUTTING_DOWN)
        host = self._host(session, msg, request.container_ref)
        if request.session_id is not None:
            await self._resume(session, request, host)
            return
        session_id = new_session_id()
        refusal = self._registry.reserve(session_id, session.user.user_id)
        if refusal is not None:
            raise TerminalRefused(refusal, containerId=request.container_ref, host=host.id)
        try:
            await self._open_new(session, request, session_id, host)
        except BaseException:
            if not any(t.lifecycle.session_id == session_id for t in self._terminals):
                self._registry.remove(session_id)
            raise

    async def _resume(self, session: Session[TerminalState], request: OpenRequest, host: Host) -> None:
        """Reattach to a live session of the same user on the same host (docs/protocol.md
        "Terminal sessions"): another user's session, or one on another host, is unknown."""
        ref = request.container_ref
        assert request.session_id is not None
        unknown = TerminalRefused(UNKNOWN_SESSION, containerId=ref, host=host.id,
                                  sessionId=request.session_id)
        terminal = self._registry.lookup(request.session_id, session.user.user_id)
        if terminal is None or not terminal.lifecycle.is_open or terminal.lifecycle.host != host.id:
            raise unknown
        lifecycle = terminal.lifecycle
        if ref not in (lifecycle.container_ref, lifecycle.container_id, lifecycle.container_name):
            raise unknown
        await self._container(session, host, ref)  # the `containers` claim still allows it
        if request.last_seq is not None and not terminal.ring.valid_last_seq(request.last_seq):
            raise invalid(f"Field 'lastSeq' is beyond this session's output "
                          f"({terminal.ring.seq} bytes)", "lastSeq")
        if bound_terminal(session) is not None or not lifecycle.is_open or self._stopping:
            raise unknown
        # From here to the last replayed piece nothing awaits: live output cannot slip in.
        attached = terminal.attach(session)
        replay = terminal.ring.replay(request.last_seq)
        lifecycle.touch(time.monotonic())
        log.info("terminal %s resumed by %s from seq %s", lifecycle.session_id, terminal.user,
                 replay.start)
        session.send(opened_message(ref, lifecycle.session_id, host.id, resumed=True,
                                    seq=replay.start))
        for piece in replay.pieces:
            attached.deliver(piece)

    async def _open_new(self, session: Session[TerminalState], request: OpenRequest, session_id: str,
                        host: Host) -> None:
        ref = request.container_ref
        engine = host.engine
        info = await self._container(session, host, ref)
        container_id = str(info["Id"])
        # Cheap stat through the engine (no exec) for absolute paths; names looked up
        # through $PATH are caught after start.
        if request.program.startswith("/") and await path_exists(engine, container_id,
                                                                  request.program) is False:
            raise TerminalRefused(program_not_found(request.program,
                                                    is_command=bool(request.command)),
                                containerId=ref, host=host.id)
        proc = ExecProcess(engine, container_id, request.program, marker=session_id,
                           args=request.argv[1:], tty=request.tty, stdin=request.stdin)
        await create_exec(proc, ref, host.id)
        lifecycle = TerminalLifecycle(
            session_id=session_id, host=host.id, container_ref=ref, container_id=container_id,
            container_name=str(info.get("Name") or "").lstrip("/"),
            shell=shlex.join(request.command) if request.command else request.shell,
            started_at=time.time(), idle_timeout=self.settings.terminal_idle_timeout,
            now=time.monotonic(),
        )
        terminal = Terminal(self, host, lifecycle, proc, user=session.user.user_id,
                            client_id=session.client_id, remote=session.remote,
                            cols=request.cols, rows=request.rows)
        terminal.container_started_at = str((info.get("State") or {}).get("StartedAt", ""))
        self._terminals.add(terminal)
        self._registry.add(session_id, terminal)
        terminal.attach(session)
        try:
            if self._journal is not None and proc.exec_id is not None:
                terminal.journaled = await self._journal_call(
                    self._journal.record_open, session_id, container_id, proc.exec_id,
                    f"{MARKER_ENV}={session_id}", request.program, host.id)
            pending = await start_exec(proc, request, host.id)
            terminal.start_recording(request)
            terminal.audited = self._audit.write(start_record(
                lifecycle, user=terminal.user, client_id=session.client_id, remote=session.remote,
                recording=terminal.recorder.path if terminal.recorder else None))
            if not terminal.audited:
                raise TerminalRefused(AUDIT_UNWRITABLE)
        except asyncio.CancelledError:
            terminal.begin_close("Open failed", notify=False)  # shutdown: kill, don't wait
            raise
        except BaseException:
            # Failed or refused after the exec existed: kill it before answering, so the
            # client may retry at once on this connection.
            await terminal.close("Open failed", notify=False)
            raise
        log.info("terminal %s opened by %s in %s on %s (%s)", session_id, terminal.user,
                 container_id[:12], host.id, request.program)
        session.send(opened_message(ref, session_id, host.id))
        terminal.start_tasks(pending)
        if self._stopping:
            terminal.begin_close(SERVER_SHUTDOWN, notify=False)
        elif session.closed:
            await self._detach(session)

    async def _input(self, session: Session[TerminalState], msg: Message) -> None:
        data = parse_input(msg)
        terminal = self._terminal_of(session)
        await self._still_allowed(session, terminal)
        if data:
            terminal.write(data)

    async def _resize(self, session: Session[TerminalState], msg: Message) -> None:
        cols, rows = parse_resize(msg)
        terminal = self._terminal_of(session)
        await self._still_allowed(session, terminal)
        terminal.lifecycle.touch(time.monotonic())
        if not terminal.proc.tty:
            raise TerminalRefused(NO_TTY_RESIZE)
        try:
            await terminal.proc.resize(cols, rows, timeout=10.0)
            terminal.resized(cols, rows)
        except EngineNotFound:
            pass  # the shell just exited: terminal_closed follows
        except EngineUnavailable:
            # With the container as the client named it at open, like every engine error.
            raise docker_unavailable(terminal.lifecycle.container_ref,
                                     terminal.lifecycle.host) from None
        except EngineError as exc:
            raise TerminalRefused(resize_failed(exc.message)) from None

    async def _eof(self, session: Session[TerminalState], msg: Message) -> None:
        terminal = self._terminal_of(session)
        await self._still_allowed(session, terminal)
        terminal.close_stdin()

    async def _close_terminal(self, session: Session[TerminalState], msg: Message) -> None:
        terminal = self._terminal_of(session)
        await terminal.close(USER_CLOSED, notify=True)

    # --- lifecycle --------------------------------------------------------------------

    async def on_disconnect(self, session: Session[TerminalState]) -> None:
        await self._detach(session)

    async def _detach(self, session: Session[TerminalState]) -> None:
        """A connection is gone: its terminal waits for a resume (grace > 0) or ends."""
        attached = unbind(session)
        if attached is None:
            return
        terminal = attached.terminal
        if terminal.attached is not attached:
            return
        grace = self.settings.terminal_grace
        if grace > 0 and terminal.lifecycle.is_open and not self._stopping:
            terminal.detach(attached, grace)
        else:
            await terminal.close(CONNECTION_CLOSED, notify=False)

    async def on_principal_changed(self, session: Session[TerminalState]) -> None:
        # Re-auth (docs/protocol.md "Re-authentication"): the shell ends if the new claims
        # no longer allow it.
        terminal = bound_terminal(session)
        if terminal is None:
            return
        user = session.user
        if not (user.may_open_terminal and user.may_access_host(terminal.lifecycle.host)
                and user.may_access_container([terminal.lifecycle.container_name])):
            await terminal.close(REAUTH_DENIED, notify=True)

    async def start(self) -> None:
        handoff_file = os.environ.pop(handoff.HANDOFF_ENV, None)
        try:
            self._journal = await asyncio.to_thread(TerminalJournal, self._journal_path)
        except (sqlite3.Error, OSError) as exc:
            log.error("terminal journal %s unavailable, crash clean-up is off: %s",
                      self._journal_path, exc)
        adopted: set[str] = set()
        if handoff_file:
            adopted = await self._adopt_all(Path(handoff_file))
        if self._journal is not None:
            stale: list[JournalEntry] = []
            if handoff_file is not None:
                # Rows of this very process (same pid across exec) not handed on.
                journal = self._journal
                with contextlib.suppress(sqlite3.Error, OSError):
                    stale = [e for e in await asyncio.to_thread(journal.entries)
                             if e.owner_pid == journal.pid and e.session_id not in adopted]
            self._reaper = OrphanReaper(self.services.hosts, self._journal, self._close_row)
            self.services.hosts.add_status_listener(self._reaper.on_status)
            self.track(asyncio.get_running_loop().create_task(
                self._reaper.reap(stale), name="terminal-reaper"))

    # --- reload: hand the live sessions to the re-executed gateway ----------------------

    async def hand_off(self) -> Path | None:
        """Before a reload (SIGHUP, docs/terminal.md): suspend every live session and
        write what the next gateway image needs to adopt it (`handoff`); their attach
        sockets stay open across exec. Sessions whose host's transport cannot hand their
        socket over end first ("Service restart"). Returns the hand-off file (None:
        resume is off, or there is no journal)."""
        self._stopping = True
        if self.settings.terminal_grace <= 0:
            return None  # resume off: a reload ends terminals like a restart
        await self._end_unhandable()
        records: list[handoff.Record] = []
        for terminal in list(self._terminals):
            if not terminal.lifecycle.is_open:
                continue
            suspended = await terminal.suspend()
            if suspended is None:
                continue
            self._terminals.discard(terminal)
            self._registry.remove(terminal.lifecycle.session_id)
            records.append(handoff.record(terminal, suspended))
        if not records and self._journal is None:
            return None
        # Even with nothing to hand on: the file tells the next image that rows of this
        # pid are its own past (e.g. a kill still under way above), for it to reap.
        path = handoff.write_records(self.settings.state_dir, records)
        if path is not None:
            log.info("handing %d terminal sessions to the reloaded gateway", len(records))
        return path

    async def _end_unhandable(self) -> None:
        """The terminals on hosts reached over TLS or SSH cannot be handed on: kill their
        processes now and tell their clients (`terminal_closed` "Service restart")."""
        ending = [t for t in self._terminals
                  if t.lifecycle.is_open and not t.host.engine.transport.hands_over]
        if not ending:
            return
        log.info("ending %d terminal sessions on hosts reached over TLS or SSH before the "
                 "reload", len(ending))
        # A host that hangs does not hold the reload longer than a shutdown: a kill still
        # under way is finished by the re-executed gateway (the row stays in the journal).
        _done, pending = await asyncio.wait(
            [t.begin_close(SERVICE_RESTART, notify=True) for t in ending], timeout=STOP_TIMEOUT)
        if pending:
            log.warning("%d terminal teardowns did not finish before the reload", len(pending))

    async def _adopt_all(self, path: Path) -> set[str]:
        adopted: set[str] = set()
        for rec in await asyncio.to_thread(handoff.read_records, path):
            try:
                terminal = await handoff.adopt(self, rec)
            except Exception:
                log.exception("terminal %s could not be adopted after the reload",
                              rec.get("sessionId"))
                with contextlib.suppress(Exception):
                    os.close(int(rec["fd"]))
                continue
            session_id = terminal.lifecycle.session_id
            self._registry.reserve(session_id, terminal.user, force=True)
            self._terminals.add(terminal)
            self._registry.add(session_id, terminal)
            terminal.start_tasks(handoff.pending_output(rec))
            terminal.start_grace(self.settings.terminal_grace)
            adopted.add(session_id)
        log.info("adopted %d terminal sessions after the reload", len(adopted))
        return adopted

    async def stop(self) -> None:
        self._stopping = True
        if self._reaper is not None:
            self.services.hosts.remove_status_listener(self._reaper.on_status)
            await self._reaper.close()
        for terminal in list(self._terminals):
            terminal.begin_close(SERVER_SHUTDOWN, notify=False)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=STOP_TIMEOUT)
            if pending:
                log.warning("%d terminal teardowns did not finish before shutdown", len(pending))
