"""`/ws/terminal`: An interactive shell in a container through Docker exec.

One terminal per connection. The rules (validation, decoding, the single close decision,
idle clock) live in `terminal_state`, and those of sessions (output ring and `seq`, caps,
ownership) in `terminal_sessions`, as plain code; this module is the I/O around them:
the exec (`engine.exec`), an output pump task per terminal, an idle watch task, and a
teardown that always kills the shell and its children through the engine before it
reports `terminal_closed` (with a TTY, closing the attach socket leaves the shell
running; docs/terminal.md).

A `Terminal` (the session) outlives its connection: a `Binding` is one connection's
hold on it. A dropped connection detaches the terminal for the grace period, a resume
binds it again (docs/protocol.md "Terminal sessions"). Live sessions are journaled
(`terminal_journal`) so a gateway that died leaves nothing running for long, may be
recorded (`recording`), and are handed on across a reload (SIGHUP, `hand_off`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shlex
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from openpanel_ws.audit import AuditLog, end_record, start_record
from openpanel_ws.engine.client import EngineError, EngineNotFound, EngineUnavailable
from openpanel_ws.engine.exec import (
    MARKER_ENV,
    TERM_ENV,
    ExecProcess,
    path_exists,
    start_failure_message,
)
from openpanel_ws.gateways.access import DOCKER_UNAVAILABLE_MESSAGE, resolve_container
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.gateways.recording import CastRecorder, header, recording_name
from openpanel_ws.gateways.terminal_journal import JOURNAL_FILE, JournalEntry, TerminalJournal
from openpanel_ws.gateways.terminal_sessions import (
    UNKNOWN_SESSION,
    OutputPiece,
    OutputRing,
    SessionRegistry,
)
from openpanel_ws.gateways.terminal_state import (
    ALREADY_OPEN,
    CONNECTION_CLOSED,
    GRACE_EXPIRED,
    IDLE_TIMEOUT,
    NO_TERMINAL,
    NO_TTY_RESIZE,
    NOT_FOUND_OR_NOT_RUNNING,
    PERMISSION_REVOKED,
    PROCESS_EXITED,
    RESUMED_ELSEWHERE,
    SERVER_SHUTDOWN,
    STDIN_CLOSED,
    USER_CLOSED,
    ExecOutput,
    OpenRequest,
    TerminalError,
    TerminalState,
    closed_message,
    new_session_id,
    opened_message,
    output_message,
    parse_input,
    parse_open,
    parse_resize,
)
from openpanel_ws.protocol import ErrorCode, Message, ProtocolError, invalid

if TYPE_CHECKING:
    from openpanel_ws.services import Services

log = logging.getLogger(__name__)

# Client backlog (fraction of its slow-consumer bound) at which the output pump stops
# reading the shell, and the level at which it resumes.
OUTPUT_HIGH_WATER = 0.5
OUTPUT_LOW_WATER = 0.125

# Bytes queued towards a shell that does not read its stdin before input is refused
# (input is never buffered without bound).
INPUT_BACKLOG_LIMIT: Final = 1024 * 1024
# How long a SIGKILLed program's container is watched for stopping (containerLost).
LOST_CHECK_WAIT: Final = 0.5
# Set by a reloading gateway for its re-executed self: the hand-off file.
HANDOFF_ENV: Final = "OPENPANEL_WS_TERMINAL_HANDOFF"
# How long shutdown waits for every shell to be killed.
STOP_TIMEOUT: Final = 25.0


def _permission_denied() -> ProtocolError:
    return ProtocolError(ErrorCode.PERMISSION_DENIED,
                         "Permission denied: the terminal needs the admin role or the "
                         "'terminal' permission")


class Binding:
    """One connection's hold on a terminal (`Session.state`). The terminal
    outlives it: a dropped connection detaches, another one may attach again."""

    __slots__ = ("session", "terminal")

    def __init__(self, session: Session[Binding], terminal: Terminal) -> None:
        self.session = session
        self.terminal = terminal

    @property
    def current(self) -> bool:
        return self.terminal.binding is self and self.terminal.state.is_open

    def deliver(self, piece: OutputPiece) -> bool:
        return self.session.send(output_message(piece.text, piece.stream, piece.end))


class Terminal:
    """One terminal session: its exec, output ring, recording, output pump, idle watch,
    grace timer and (single) teardown. Attached to at most one connection at a time."""

    def __init__(self, gateway: TerminalGateway, state: TerminalState, proc: ExecProcess, *,
                 user: str, client_id: str, remote: str, cols: int, rows: int) -> None:
        self.gateway = gateway
        self.state = state
        self.proc = proc
        # Who opened it, for the audit log and ownership (the `sub`).
        self.user = user
        self.client_id = client_id
        self.remote = remote
        self.cols = cols
        self.rows = rows
        self.binding: Binding | None = None
        self.ring = OutputRing(gateway.settings.terminal_ring_bytes)
        self.recorder: CastRecorder | None = None
        self.audited = False  # a start line was written, so an end line follows
        self.journaled = False
        self._output = ExecOutput(tty=proc.tty)  # text, or per-stream text without a TTY
        self.stdin_open = proc.stdin  # False after `eof` (terminal extensions)
        self.container_started_at = ""  # State.StartedAt at open: a restart changes it
        self.container_lost = False
        self._pending_output = b""  # read during start-up, emitted first by the pump
        self._pump: asyncio.Task[None] | None = None
        self._idle: asyncio.Task[None] | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._teardown: asyncio.Task[None] | None = None

    def start_tasks(self, pending_output: bytes = b"") -> None:
        self._pending_output = pending_output
        loop = asyncio.get_running_loop()
        self._pump = loop.create_task(self._pump_output(), name=f"{self.state.session_id}-pump")
        self._idle = loop.create_task(self._watch_idle(), name=f"{self.state.session_id}-idle")

    # --- connections ------------------------------------------------------------------

    def attach(self, session: Session[Binding]) -> Binding:
        """Bind to `session` (cancelling the grace timer); the caller sends the replay."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        old = self.binding
        binding = self.binding = Binding(session, self)
        session.state = binding
        if old is not None and old.session is not session:
            if old.session.state is old:
                old.session.state = None
            old.session.send(closed_message(RESUMED_ELSEWHERE, None))
        return binding

    def detach(self, binding: Binding, grace: float) -> None:
        """The connection is gone: keep the shell `grace` seconds for a resume."""
        if self.binding is not binding:
            return
        self.binding = None
        if self.state.is_open:
            log.info("terminal %s detached; kept %gs for a resume", self.state.session_id, grace)
            self.start_grace(grace)

    def start_grace(self, grace: float) -> None:
        self._grace = asyncio.get_running_loop().call_later(
            grace, lambda: self.begin_close(GRACE_EXPIRED, notify=False))

    # --- reload (docs/terminal.md "Reload") ---------------------------------------------

    async def suspend(self) -> dict[str, Any] | None:
        """Stop every task of this session and describe it for the re-executed gateway
        (which adopts the attach socket). None when it cannot be handed on."""
        for task in (self._pump, self._idle):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        binding, self.binding = self.binding, None
        if binding is not None and binding.session.state is binding:
            binding.session.state = None
        handed = self.proc.hand_over_socket()
        if handed is None or not self.state.is_open or self.proc.exec_id is None:
            return None
        fd, buffered = handed
        state = self.state
        now = time.monotonic()
        recorder = self.recorder
        if recorder is not None:
            recorder_elapsed = now - recorder.started
            recorder.close()
        return {
            "sessionId": state.session_id, "user": self.user, "clientId": self.client_id,
            "remote": self.remote, "containerRef": state.container_ref,
            "containerId": state.container_id, "containerName": state.container_name,
            "containerStartedAt": self.container_started_at, "shell": state.shell,
            "program": self.proc.program, "args": self.proc.args, "tty": self.proc.tty,
            "stdin": self.proc.stdin, "stdinOpen": self.stdin_open,
            "execId": self.proc.exec_id, "fd": fd,
            "pending": base64.b64encode(self._output.pending_bytes() + buffered).decode(),
            "startedAt": state.started_at, "idleTimeout": state.idle_timeout,
            "idleFor": now - state.last_activity, "bytesIn": state.bytes_in,
            "bytesOut": state.bytes_out, "cols": self.cols, "rows": self.rows,
            "ring": self.ring.pieces(), "ringSeq": self.ring.seq,
            "recording": recorder.path if recorder is not None else None,
            "recordingElapsed": recorder_elapsed if recorder is not None else 0.0,
            "recordInput": recorder.record_input if recorder is not None else False,
            "audited": self.audited, "journaled": self.journaled,
        }

    # --- client input --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.stdin_open:
            raise TerminalError(STDIN_CLOSED)
        if self.proc.backlog > INPUT_BACKLOG_LIMIT:
            raise TerminalError("Input not delivered: the shell is not reading its input")
        self.proc.write(data)
        now = time.monotonic()
        self.state.record_input(len(data), now)
        if self.recorder is not None:
            self.recorder.input(data.decode("utf-8", "replace"), now)

    def resized(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        if self.recorder is not None:
            self.recorder.resize(cols, rows, time.monotonic())

    def close_stdin(self) -> None:
        """`eof` (terminal extensions): the program reads end-of-file after what was sent."""
        if self.stdin_open:
            if self.proc.tty:
                # The engine does not pass a closed stdin on to a TTY's reader: type the
                # terminal's end-of-file character, as a keyboard would.
                self.write(b"\x04")
            else:
                self.proc.close_stdin()
            self.stdin_open = False
        self.state.touch(time.monotonic())

    # --- output ---------------------------------------------------------------------

    def _emit(self, messages: list[Message]) -> None:
        now = time.monotonic()
        for message in messages:
            text = str(message["data"])
            stream = message.get("stream")
            piece = self.ring.append(text, stream if isinstance(stream, str) else None)
            if self.recorder is not None:
                self.recorder.output(text, now)
            binding = self.binding
            if binding is not None:
                binding.deliver(piece)  # a gone client detaches through on_disconnect

    async def _pump_output(self) -> None:
        """Shell output -> ring (and recording) -> the attached client, in order, each
        chunk as soon as it is read. Detached, the shell keeps running into the ring."""
        try:
            chunk = self._pending_output
            self._pending_output = b""
            while True:
                if chunk:
                    self.state.record_output(len(chunk))
                    self._emit(self._output.feed(chunk))
                    # Backpressure: a client on a slow link pauses the shell's output (the
                    # engine and the TTY buffer it) instead of being cut off with 1013.
                    binding = self.binding
                    if binding is not None and binding.session.writer.backlog > OUTPUT_HIGH_WATER:
                        await binding.session.writer.wait_backlog_below(OUTPUT_LOW_WATER)
                chunk = await self.proc.read()
                if not chunk:
                    break
            self._emit(self._output.flush())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("terminal %s: output pump failed", self.state.session_id)
        # EOF: the shell ended (unless a teardown already started, then this is a no-op).
        self.begin_close(PROCESS_EXITED, notify=True)

    async def _watch_idle(self) -> None:
        while self.state.is_open:
            now = time.monotonic()
            if self.state.is_idle(now):
                self.begin_close(IDLE_TIMEOUT, notify=True)
                return
            await asyncio.sleep(self.state.idle_deadline() - now)

    # --- teardown -------------------------------------------------------------------

    def begin_close(self, reason: str, *, notify: bool) -> asyncio.Task[None]:
        """Start the teardown once; later callers get the same task."""
        if self._teardown is None:
            self.state.begin_close(reason)
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
            self._teardown = asyncio.get_running_loop().create_task(
                self._close(reason, notify), name=f"{self.state.session_id}-close")
            self.gateway.track(self._teardown)
        return self._teardown

    async def close(self, reason: str, *, notify: bool) -> None:
        # Shielded: a cancelled caller (dropped handler) must not stop the kill.
        await asyncio.shield(self.begin_close(reason, notify=notify))

    async def _close(self, reason: str, notify: bool) -> None:
        exit_code: int | None = None
        killed = False
        try:
            if self._idle is not None:
                self._idle.cancel()
            if reason == PROCESS_EXITED:
                # The pump sent everything the shell printed; it is finishing now.
                exit_code = await self.proc.wait_exit_code()
                if exit_code in (None, 137):  # SIGKILL: maybe with its whole container
                    self.container_lost = await self._container_gone()
            else:
                # Stop reading and close the attach socket first: an unread socket
                # blocks the engine's copy of this exec, which was seen to stall the
                # kill exec below for its whole timeout.
                if self._pump is not None:
                    self._pump.cancel()
                self.proc.close_socket()
            # Always, even after a clean exit: background jobs outlive their shell.
            killed = await self.proc.kill()
            if self._pump is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._pump
            if reason != PROCESS_EXITED and self.proc.exec_id is not None:
                exit_code = await self.proc.wait_exit_code(timeout=2.0)  # for the audit
        except Exception:
            log.exception("terminal %s: teardown failed", self.state.session_id)
        finally:
            self.proc.close_socket()
            self.state.finish(exit_code, time.time())
            if self.recorder is not None:
                self.recorder.close()
            if self.audited:
                self.gateway.audit_end(self)
            await self.gateway.release(self, forget=killed)
        log.info("terminal %s closed: %s (exit code %s)", self.state.session_id, reason, exit_code)
        binding = self.binding
        self.binding = None
        if binding is not None:
            if binding.session.state is binding:
                binding.session.state = None
            if notify:
                message = closed_message(reason, exit_code)
                if self.container_lost:
                    message["containerLost"] = True  # terminal extensions
                binding.session.send(message)

    async def _container_gone(self, wait: float = LOST_CHECK_WAIT) -> bool:
        """Whether the container stopped, restarted or was removed under the program.

        The exec ends a moment before the engine marks its container stopped, so look
        a few times before deciding it still runs.
        """
        deadline = time.monotonic() + wait
        while True:
            try:
                info = await self.gateway.services.engine.get(
                    f"/containers/{self.state.container_id}/json")
            except EngineNotFound:
                return True
            except (EngineError, EngineUnavailable):
                return False
            state = info.get("State") or {}
            if (not state.get("Running") or state.get("Restarting")
                    or str(state.get("StartedAt", "")) != self.container_started_at):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)


class TerminalGateway(Gateway[Binding]):
    name = "terminal"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self._terminals: set[Terminal] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._audit = AuditLog(self.settings.terminal_audit_log)
        self._registry: SessionRegistry[Terminal] = SessionRegistry(
            self.settings.terminal_max_per_user, self.settings.terminal_max)
        self._journal: TerminalJournal | None = None
        self._stopping = False

    def handlers(self) -> dict[str, Handler[Binding]]:
        return {
            "open_terminal": self._reporting(self._open),
            "input": self._reporting(self._input),
            "resize": self._reporting(self._resize),
            "close_terminal": self._reporting(self._close_terminal),
            "eof": self._reporting(self._eof),  # terminal extensions
        }

    @staticmethod
    def _reporting(handler: Handler[Binding]) -> Handler[Binding]:
        """TerminalError -> `terminal_error`; ProtocolError goes on to the shared `error`."""

        async def run(session: Session[Binding], msg: Message) -> None:
            try:
                await handler(session, msg)
            except TerminalError as exc:
                session.send(exc.to_message())

        return run

    # --- bookkeeping ------------------------------------------------------------------

    def track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def release(self, terminal: Terminal, *, forget: bool) -> None:
        """The terminal has ended; `forget`: its processes are gone, drop its journal row
        (else it stays for a later gateway to reap)."""
        if terminal in self._terminals:
            self._terminals.discard(terminal)
            self._registry.remove(terminal.state.session_id)
        binding = terminal.binding
        if binding is not None and binding.session.state is binding:
            binding.session.state = None
        if terminal.journaled and forget and self._journal is not None:
            terminal.journaled = False
            await self._journal_call(self._journal.record_close, terminal.state.session_id)

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
        self._audit.write(end_record(terminal.state, user=terminal.user,
                                     client_id=terminal.client_id, remote=terminal.remote,
                                     recording=terminal.recorder.path if terminal.recorder else None))

    @property
    def open_terminals(self) -> int:
        return len(self._terminals)

    @property
    def detached_terminals(self) -> int:
        return sum(1 for t in self._terminals if t.binding is None and t.state.is_open)

    @staticmethod
    def _terminal_of(session: Session[Binding]) -> Terminal:
        binding = session.state
        if not isinstance(binding, Binding) or not binding.current:
            raise TerminalError(NO_TERMINAL)
        return binding.terminal

    async def _still_allowed(self, session: Session[Binding], terminal: Terminal) -> None:
        # A refreshed token may have lost the permission: the shell goes with it.
        if not session.user.may_open_terminal:
            await terminal.close(PERMISSION_REVOKED, notify=True)
            raise _permission_denied()

    async def _container(self, session: Session[Binding], ref: str) -> dict[str, Any]:
        """The running container `ref` names, as this user may see it."""
        try:
            info = await resolve_container(self.services.engine, session.user, ref)
        except ProtocolError as exc:
            if exc.code is ErrorCode.CONTAINER_NOT_FOUND:
                raise TerminalError(NOT_FOUND_OR_NOT_RUNNING, containerId=ref) from None
            raise
        container_state = info.get("State") or {}
        if (not container_state.get("Running") or container_state.get("Paused")
                or container_state.get("Restarting")):
            raise TerminalError(NOT_FOUND_OR_NOT_RUNNING, containerId=ref)
        return info

    # --- handlers ---------------------------------------------------------------------

    async def _open(self, session: Session[Binding], msg: Message) -> None:
        if not session.user.may_open_terminal:
            raise _permission_denied()
        request = parse_open(msg)
        if session.state is not None:
            if isinstance(session.state, Binding) and not session.state.current:
                session.state = None
            else:
                raise TerminalError(ALREADY_OPEN)
        if self._stopping:
            raise TerminalError("Server is shutting down")
        if request.session_id is not None:
            await self._resume(session, request)
            return
        session_id = new_session_id()
        refusal = self._registry.reserve(session_id, session.user.user_id)
        if refusal is not None:
            raise TerminalError(refusal, containerId=request.container_ref)
        try:
            await self._open_new(session, request, session_id)
        except BaseException:
            if not any(t.state.session_id == session_id for t in self._terminals):
                self._registry.remove(session_id)
            raise

    async def _resume(self, session: Session[Binding], request: OpenRequest) -> None:
        """Reattach to a live session of the same user (docs/protocol.md)."""
        ref = request.container_ref
        assert request.session_id is not None
        terminal = self._registry.lookup(request.session_id, session.user.user_id)
        if terminal is None or not terminal.state.is_open:
            raise TerminalError(UNKNOWN_SESSION, containerId=ref, sessionId=request.session_id)
        state = terminal.state
        if ref not in (state.container_ref, state.container_id, state.container_name):
            raise TerminalError(UNKNOWN_SESSION, containerId=ref, sessionId=request.session_id)
        await self._container(session, ref)  # the `containers` claim still allows it
        if request.last_seq is not None and not terminal.ring.valid_last_seq(request.last_seq):
            raise invalid(f"Field 'lastSeq' is beyond this session's output "
                          f"({terminal.ring.seq} bytes)", "lastSeq")
        if session.state is not None or not state.is_open or self._stopping:
            raise TerminalError(UNKNOWN_SESSION, containerId=ref, sessionId=request.session_id)
        # From here to the last replayed piece nothing awaits: live output cannot slip in.
        binding = terminal.attach(session)
        replay = terminal.ring.replay(request.last_seq)
        state.touch(time.monotonic())
        log.info("terminal %s resumed by %s from seq %s", state.session_id, terminal.user,
                 replay.start)
        session.send(opened_message(ref, state.session_id, resumed=True, seq=replay.start))
        for piece in replay.pieces:
            binding.deliver(piece)

    async def _open_new(self, session: Session[Binding], request: OpenRequest, session_id: str) -> None:
        ref = request.container_ref
        engine = self.services.engine
        info = await self._container(session, ref)
        container_id = str(info["Id"])
        # Cheap stat through the engine (no exec) for absolute paths; names looked up
        # through $PATH are caught after start.
        if request.program.startswith("/") and await path_exists(engine, container_id,
                                                                  request.program) is False:
            what = "Command" if request.command else "Shell"
            raise TerminalError(f"{what} not found in the container: {request.program}",
                                containerId=ref)
        proc = ExecProcess(engine, container_id, request.program, marker=session_id,
                           args=request.argv[1:], tty=request.tty, stdin=request.stdin)
        await self._create_exec(proc, ref)
        state = TerminalState(
            session_id=session_id, container_ref=ref, container_id=container_id,
            container_name=str(info.get("Name") or "").lstrip("/"),
            shell=shlex.join(request.command) if request.command else request.shell,
            started_at=time.time(), idle_timeout=self.settings.terminal_idle_timeout,
            now=time.monotonic(),
        )
        terminal = Terminal(self, state, proc, user=session.user.user_id,
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
                    f"{MARKER_ENV}={session_id}", request.program)
            pending = await self._start(terminal, request)
            self._start_recording(terminal, request)
            terminal.audited = self._audit.write(start_record(
                state, user=terminal.user, client_id=session.client_id, remote=session.remote,
                recording=terminal.recorder.path if terminal.recorder else None))
            if not terminal.audited:
                raise TerminalError("Terminal refused: the audit log cannot be written")
        except asyncio.CancelledError:
            terminal.begin_close("Open failed", notify=False)  # shutdown: kill, don't wait
            raise
        except BaseException:
            # Failed or refused after the exec existed: kill it before answering, so the
            # client may retry at once on this connection.
            await terminal.close("Open failed", notify=False)
            raise
        log.info("terminal %s opened by %s in %s (%s)", session_id, terminal.user,
                 container_id[:12], request.program)
        session.send(opened_message(ref, session_id))
        terminal.start_tasks(pending)
        if self._stopping:
            terminal.begin_close(SERVER_SHUTDOWN, notify=False)
        elif session.closed:
            await self._detach(session)

    def _start_recording(self, terminal: Terminal, request: OpenRequest) -> None:
        directory = self.settings.terminal_record_dir
        if directory is None:
            return
        state = terminal.state
        name = recording_name(state.started_at, terminal.user, state.container_name or
                              state.container_id[:12], state.session_id)
        head = header(request.cols, request.rows, state.started_at, TERM_ENV.split("=", 1)[1],
                      command=state.shell, title=f"{terminal.user}@{state.container_name}")
        try:
            terminal.recorder = CastRecorder.create(
                directory, name, head, time.monotonic(),
                record_input=self.settings.terminal_record_input)
        except OSError as exc:
            log.error("terminal recording in %s cannot be created: %s", directory, exc)
            raise TerminalError("Terminal refused: the recording cannot be written") from None

    async def _create_exec(self, proc: ExecProcess, ref: str) -> None:
        try:
            await proc.create()
        except EngineUnavailable:
            raise ProtocolError(ErrorCode.DOCKER_UNAVAILABLE, DOCKER_UNAVAILABLE_MESSAGE,
                                context={"containerId": ref}) from None
        except EngineNotFound:
            raise TerminalError(NOT_FOUND_OR_NOT_RUNNING, containerId=ref) from None
        except EngineError as exc:
            if exc.status == 409:  # stopped or paused meanwhile
                raise TerminalError(NOT_FOUND_OR_NOT_RUNNING, containerId=ref) from None
            raise TerminalError(f"Could not start the shell: {exc.message}",
                                containerId=ref) from None

    async def _start(self, terminal: Terminal, request: OpenRequest) -> bytes:
        """Start the exec and apply the initial size before any output is forwarded.

        Returns output already read (a shell that ended at once). Raises TerminalError
        when the shell could not be started at all.
        """
        proc = terminal.proc
        try:
            await proc.start()
        except EngineUnavailable:
            raise ProtocolError(ErrorCode.DOCKER_UNAVAILABLE, DOCKER_UNAVAILABLE_MESSAGE,
                                context={"containerId": request.container_ref}) from None
        except EngineError as exc:
            raise TerminalError(f"Could not start the shell: {exc.message}",
                                containerId=request.container_ref) from None
        if not proc.tty:
            return b""  # nothing to size; a failed start shows as output and exit code
        try:
            # The engine waits until the process is ready, then resizes: right after
            # start, before the first prompt reaches the client.
            await proc.resize(request.cols, request.rows)
        except (EngineError, EngineUnavailable):
            # 404: the exec has already ended, e.g. the shell does not exist.
            output = await proc.read_until_eof(timeout=5.0)
            code = await proc.wait_exit_code(timeout=3.0)
            reason = start_failure_message(request.program, output, code)
            if reason is not None:
                raise TerminalError(reason, containerId=request.container_ref) from None
            return output
        return b""

    async def _input(self, session: Session[Binding], msg: Message) -> None:
        data = parse_input(msg)
        terminal = self._terminal_of(session)
        await self._still_allowed(session, terminal)
        if data:
            terminal.write(data)

    async def _resize(self, session: Session[Binding], msg: Message) -> None:
        cols, rows = parse_resize(msg)
        terminal = self._terminal_of(session)
        await self._still_allowed(session, terminal)
        terminal.state.touch(time.monotonic())
        if not terminal.proc.tty:
            raise TerminalError(NO_TTY_RESIZE)
        try:
            await terminal.proc.resize(cols, rows, timeout=10.0)
            terminal.resized(cols, rows)
        except EngineNotFound:
            pass  # the shell just exited: terminal_closed follows
        except EngineUnavailable:
            raise ProtocolError(ErrorCode.DOCKER_UNAVAILABLE, DOCKER_UNAVAILABLE_MESSAGE) from None
        except EngineError as exc:
            raise TerminalError(f"Resize failed: {exc.message}") from None

    async def _eof(self, session: Session[Binding], msg: Message) -> None:
        terminal = self._terminal_of(session)
        await self._still_allowed(session, terminal)
        terminal.close_stdin()

    async def _close_terminal(self, session: Session[Binding], msg: Message) -> None:
        terminal = self._terminal_of(session)
        await terminal.close(USER_CLOSED, notify=True)

    # --- lifecycle --------------------------------------------------------------------

    async def on_disconnect(self, session: Session[Binding]) -> None:
        await self._detach(session)

    async def _detach(self, session: Session[Binding]) -> None:
        """A connection is gone: its terminal waits for a resume (grace > 0) or ends."""
        binding = session.state
        if not isinstance(binding, Binding):
            return
        session.state = None
        terminal = binding.terminal
        if terminal.binding is not binding:
            return
        grace = self.settings.terminal_grace
        if grace > 0 and terminal.state.is_open and not self._stopping:
            terminal.detach(binding, grace)
        else:
            await terminal.close(CONNECTION_CLOSED, notify=False)

    async def on_principal_changed(self, session: Session[Binding]) -> None:
        # Re-auth (docs/protocol.md): the shell ends if the new claims no longer allow it.
        binding = session.state
        if isinstance(binding, Binding) and binding.current:
            terminal = binding.terminal
            if not (session.user.may_open_terminal
                    and session.user.may_access_container([terminal.state.container_name])):
                await terminal.close("permission", notify=True)

    async def start(self) -> None:
        handoff = os.environ.pop(HANDOFF_ENV, None)
        try:
            self._journal = await asyncio.to_thread(TerminalJournal, self._journal_path)
        except (sqlite3.Error, OSError) as exc:
            log.error("terminal journal %s unavailable, crash clean-up is off: %s",
                      self._journal_path, exc)
        adopted: set[str] = set()
        if handoff:
            adopted = await self._adopt_all(Path(handoff))
        if self._journal is not None:
            stale: list[JournalEntry] = []
            if handoff is not None:
                # Rows of this very process (same pid across exec) not handed on.
                journal = self._journal
                with contextlib.suppress(sqlite3.Error, OSError):
                    stale = [e for e in await asyncio.to_thread(journal.entries)
                             if e.owner_pid == journal.pid and e.session_id not in adopted]
            self.track(asyncio.get_running_loop().create_task(
                self._reap_orphans(stale), name="terminal-reaper"))

    # --- reload: hand the live sessions to the re-executed gateway ----------------------

    async def hand_off(self) -> Path | None:
        """Before a reload (SIGHUP, docs/terminal.md): suspend every live session and
        write what the next gateway image needs to adopt it; their attach sockets stay
        open across exec. Returns the hand-off file (None: nothing to hand on)."""
        self._stopping = True
        if self.settings.terminal_grace <= 0:
            return None  # resume off: a reload ends terminals like a restart
        records: list[dict[str, Any]] = []
        for terminal in list(self._terminals):
            if not terminal.state.is_open:
                continue
            record = await terminal.suspend()
            if record is None:
                continue
            self._terminals.discard(terminal)
            self._registry.remove(terminal.state.session_id)
            records.append(record)
        if not records:
            return None
        path = self.settings.state_dir / f"terminal-handoff-{os.getpid()}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps({"pid": os.getpid(), "sessions": records}))
        except OSError as exc:
            log.error("terminal hand-off file %s: %s; the sessions will be reaped", path, exc)
            return None
        log.info("handing %d terminal sessions to the reloaded gateway", len(records))
        return path

    async def _adopt_all(self, path: Path) -> set[str]:
        try:
            data = orjson.loads(await asyncio.to_thread(path.read_bytes))
            await asyncio.to_thread(path.unlink)
        except (OSError, orjson.JSONDecodeError) as exc:
            log.error("terminal hand-off file %s unreadable: %s", path, exc)
            return set()
        adopted: set[str] = set()
        if not isinstance(data, dict) or data.get("pid") != os.getpid():
            # Only this very process (re-executed: same pid) may adopt the descriptors.
            log.error("terminal hand-off file %s is not this process's; ignored", path)
            return adopted
        for record in data.get("sessions", []):
            try:
                await self._adopt(record)
                adopted.add(str(record["sessionId"]))
            except Exception:
                log.exception("terminal %s could not be adopted after the reload",
                              record.get("sessionId"))
                with contextlib.suppress(Exception):
                    os.close(int(record["fd"]))
        log.info("adopted %d terminal sessions after the reload", len(adopted))
        return adopted

    async def _adopt(self, record: dict[str, Any]) -> None:
        session_id = str(record["sessionId"])
        proc = ExecProcess(self.services.engine, record["containerId"], record["program"],
                           marker=session_id, args=record["args"], tty=record["tty"],
                           stdin=record["stdin"])
        proc.exec_id = record["execId"]
        await proc.adopt_socket(int(record["fd"]))
        now = time.monotonic()
        state = TerminalState(
            session_id=session_id, container_ref=record["containerRef"],
            container_id=record["containerId"], container_name=record["containerName"],
            shell=record["shell"], started_at=record["startedAt"],
            idle_timeout=self.settings.terminal_idle_timeout,
            now=now - float(record["idleFor"]))
        state.bytes_in, state.bytes_out = record["bytesIn"], record["bytesOut"]
        terminal = Terminal(self, state, proc, user=record["user"], client_id=record["clientId"],
                            remote=record["remote"], cols=record["cols"], rows=record["rows"])
        terminal.ring = OutputRing.restore(self.settings.terminal_ring_bytes,
                                           [(t, st, e) for t, st, e in record["ring"]],
                                           record["ringSeq"])
        terminal.stdin_open = record["stdinOpen"]
        terminal.audited = record["audited"]
        terminal.journaled = record["journaled"]
        terminal.container_started_at = record["containerStartedAt"]
        if record["recording"]:
            try:
                terminal.recorder = CastRecorder.reopen(
                    record["recording"], now - float(record["recordingElapsed"]),
                    record_input=record["recordInput"])
            except OSError as exc:
                log.error("terminal recording %s not continued: %s", record["recording"], exc)
        self._registry.reserve(session_id, terminal.user, force=True)
        self._terminals.add(terminal)
        self._registry.add(session_id, terminal)
        terminal.start_tasks(base64.b64decode(record["pending"]))
        terminal.start_grace(self.settings.terminal_grace)

    async def _reap_orphans(self, stale: list[JournalEntry]) -> None:
        """Kill the shells of sessions whose gateway died (docs/terminal.md), and the
        `stale` ones of this process that a reload did not hand on."""
        journal = self._journal
        assert journal is not None
        try:
            orphans = stale + await asyncio.to_thread(journal.claim_orphans)
        except (sqlite3.Error, OSError) as exc:
            log.error("terminal journal %s: %s", self._journal_path, exc)
            return
        for entry in orphans:
            proc = ExecProcess(self.services.engine, entry.container_id, entry.program,
                               marker=entry.marker.split("=", 1)[-1])
            if await proc.kill():
                await self._journal_call(journal.record_close, entry.session_id)
                log.warning("terminal %s left by a dead gateway (pid %d): its processes in "
                            "container %s were killed", entry.session_id, entry.owner_pid,
                            entry.container_id[:12])
            else:
                log.warning("terminal %s left by a dead gateway: kill failed, retried at the "
                            "next start", entry.session_id)

    async def stop(self) -> None:
        self._stopping = True
        for terminal in list(self._terminals):
            terminal.begin_close(SERVER_SHUTDOWN, notify=False)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=STOP_TIMEOUT)
            if pending:
                log.warning("%d terminal teardowns did not finish before shutdown", len(pending))
