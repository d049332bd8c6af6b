"""`/ws/terminal`: An interactive shell in a container through Docker exec.

One terminal per connection. The rules (validation, decoding, the single close decision,
idle clock) live in `terminal_state` as plain code; this module is the I/O around them:
the exec (`engine.exec`), an output pump task per terminal, an idle watch task, and a
teardown that always kills the shell and its children through the engine before it
reports `terminal_closed` (FIELD-NOTES: with a TTY, closing the attach socket leaves
the shell running).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import time
from typing import TYPE_CHECKING, Final

from openpanel_ws.audit import AuditLog, end_record, start_record
from openpanel_ws.engine.client import EngineError, EngineNotFound, EngineUnavailable
from openpanel_ws.engine.exec import ExecProcess, path_exists, start_failure_message
from openpanel_ws.gateways.access import DOCKER_UNAVAILABLE_MESSAGE, resolve_container
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.gateways.terminal_state import (
    ALREADY_OPEN,
    CONNECTION_CLOSED,
    IDLE_TIMEOUT,
    NO_TERMINAL,
    NO_TTY_RESIZE,
    NOT_FOUND_OR_NOT_RUNNING,
    PERMISSION_REVOKED,
    PROCESS_EXITED,
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
    parse_input,
    parse_open,
    parse_resize,
)
from openpanel_ws.protocol import ErrorCode, Message, ProtocolError

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
# How long shutdown waits for every shell to be killed.
STOP_TIMEOUT: Final = 25.0


def _permission_denied() -> ProtocolError:
    return ProtocolError(ErrorCode.PERMISSION_DENIED,
                         "Permission denied: the terminal needs the admin role or the "
                         "'terminal' permission")


class Terminal:
    """One open terminal: its exec, output pump, idle watch and (single) teardown."""

    def __init__(self, gateway: TerminalGateway, session: Session, state: TerminalState,
                 proc: ExecProcess) -> None:
        self.gateway = gateway
        self.session = session
        self.state = state
        self.proc = proc
        self.audited = False  # a start line was written, so an end line follows
        self._output = ExecOutput(tty=proc.tty)  # text, or per-stream text without a TTY
        self.stdin_open = proc.stdin  # False after `eof` (terminal extensions)
        self.container_started_at = ""  # State.StartedAt at open: a restart changes it
        self.container_lost = False
        self._pending_output = b""  # read during start-up, emitted first by the pump
        self._pump: asyncio.Task[None] | None = None
        self._idle: asyncio.Task[None] | None = None
        self._teardown: asyncio.Task[None] | None = None

    def start_tasks(self, pending_output: bytes = b"") -> None:
        self._pending_output = pending_output
        loop = asyncio.get_running_loop()
        self._pump = loop.create_task(self._pump_output(), name=f"{self.state.session_id}-pump")
        self._idle = loop.create_task(self._watch_idle(), name=f"{self.state.session_id}-idle")

    # --- client input --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.stdin_open:
            raise TerminalError(STDIN_CLOSED)
        if self.proc.backlog > INPUT_BACKLOG_LIMIT:
            raise TerminalError("Input not delivered: the shell is not reading its input")
        self.proc.write(data)
        self.state.record_input(len(data), time.monotonic())

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

    async def _pump_output(self) -> None:
        """Shell output -> terminal_output, in order, each chunk as soon as it is read."""
        try:
            chunk = self._pending_output
            self._pending_output = b""
            while True:
                if chunk:
                    self.state.record_output(len(chunk))
                    for message in self._output.feed(chunk):
                        if not self.session.send(message):
                            return  # client gone or cut off: on_disconnect tears down
                    # Backpressure: a client on a slow link pauses the shell's output (the
                    # engine and the TTY buffer it) instead of being cut off with 1013.
                    if self.session.writer.backlog > OUTPUT_HIGH_WATER:
                        await self.session.writer.wait_backlog_below(OUTPUT_LOW_WATER)
                chunk = await self.proc.read()
                if not chunk:
                    break
            for message in self._output.flush():
                self.session.send(message)
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
            self._teardown = asyncio.get_running_loop().create_task(
                self._close(reason, notify), name=f"{self.state.session_id}-close")
            self.gateway.track(self._teardown)
        return self._teardown

    async def close(self, reason: str, *, notify: bool) -> None:
        # Shielded: a cancelled caller (dropped handler) must not stop the kill.
        await asyncio.shield(self.begin_close(reason, notify=notify))

    async def _close(self, reason: str, notify: bool) -> None:
        exit_code: int | None = None
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
            await self.proc.kill()
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
            if self.audited:
                self.gateway.audit_end(self)
            self.gateway.release(self)
        log.info("terminal %s closed: %s (exit code %s)", self.state.session_id, reason, exit_code)
        if notify:
            message = closed_message(reason, exit_code)
            if self.container_lost:
                message["containerLost"] = True  # terminal extensions
            self.session.send(message)

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


class TerminalGateway(Gateway):
    name = "terminal"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self._terminals: set[Terminal] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._audit = AuditLog(self.settings.terminal_audit_log)
        self._stopping = False

    def handlers(self) -> dict[str, Handler]:
        return {
            "open_terminal": self._reporting(self._open),
            "input": self._reporting(self._input),
            "resize": self._reporting(self._resize),
            "close_terminal": self._reporting(self._close_terminal),
            "eof": self._reporting(self._eof),  # terminal extensions
        }

    @staticmethod
    def _reporting(handler: Handler) -> Handler:
        """TerminalError -> `terminal_error`; ProtocolError goes on to the shared `error`."""

        async def run(session: Session, msg: Message) -> None:
            try:
                await handler(session, msg)
            except TerminalError as exc:
                session.send(exc.to_message())

        return run

    # --- bookkeeping ------------------------------------------------------------------

    def track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def release(self, terminal: Terminal) -> None:
        self._terminals.discard(terminal)
        if terminal.session.gateway_state is terminal:
            terminal.session.gateway_state = None

    def audit_end(self, terminal: Terminal) -> None:
        s = terminal.session
        self._audit.write(end_record(terminal.state, user=s.user.user_id, client_id=s.client_id,
                                     remote=s.remote))

    @property
    def open_terminals(self) -> int:
        return len(self._terminals)

    @staticmethod
    def _terminal_of(session: Session) -> Terminal:
        terminal = session.gateway_state
        if not isinstance(terminal, Terminal) or not terminal.state.is_open:
            raise TerminalError(NO_TERMINAL)
        return terminal

    async def _still_allowed(self, session: Session, terminal: Terminal) -> None:
        # A refreshed token may have lost the permission: the shell goes with it.
        if not session.user.may_open_terminal:
            await terminal.close(PERMISSION_REVOKED, notify=True)
            raise _permission_denied()

    # --- handlers ---------------------------------------------------------------------

    async def _open(self, session: Session, msg: Message) -> None:
        if not session.user.may_open_terminal:
            raise _permission_denied()
        request = parse_open(msg)
        if session.gateway_state is not None:
            raise TerminalError(ALREADY_OPEN)
        if self._stopping:
            raise TerminalError("Server is shutting down")
        ref = request.container_ref
        engine = self.services.engine
        try:
            info = await resolve_container(engine, session.user, ref)
        except ProtocolError as exc:
            if exc.code is ErrorCode.CONTAINER_NOT_FOUND:
                raise TerminalError(NOT_FOUND_OR_NOT_RUNNING, containerId=ref) from None
            raise
        container_state = info.get("State") or {}
        if (not container_state.get("Running") or container_state.get("Paused")
                or container_state.get("Restarting")):
            raise TerminalError(NOT_FOUND_OR_NOT_RUNNING, containerId=ref)
        container_id = str(info["Id"])
        # Cheap stat through the engine (no exec) for absolute paths; names looked up
        # through $PATH are caught after start.
        if request.program.startswith("/") and await path_exists(engine, container_id,
                                                                  request.program) is False:
            what = "Command" if request.command else "Shell"
            raise TerminalError(f"{what} not found in the container: {request.program}",
                                containerId=ref)
        session_id = new_session_id()
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
        terminal = Terminal(self, session, state, proc)
        terminal.container_started_at = str(container_state.get("StartedAt", ""))
        self._terminals.add(terminal)
        session.gateway_state = terminal
        try:
            pending = await self._start(terminal, request)
            terminal.audited = self._audit.write(start_record(
                state, user=session.user.user_id, client_id=session.client_id,
                remote=session.remote))
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
        log.info("terminal %s opened by %s in %s (%s)", session_id, session.user.user_id,
                 container_id[:12], request.program)
        session.send(opened_message(ref, session_id))
        terminal.start_tasks(pending)
        if self._stopping or session.closed:
            terminal.begin_close(SERVER_SHUTDOWN if self._stopping else CONNECTION_CLOSED,
                                 notify=False)

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

    async def _input(self, session: Session, msg: Message) -> None:
        data = parse_input(msg)
        terminal = self._terminal_of(session)
        await self._still_allowed(session, terminal)
        if data:
            terminal.write(data)

    async def _resize(self, session: Session, msg: Message) -> None:
        cols, rows = parse_resize(msg)
        terminal = self._terminal_of(session)
        await self._still_allowed(session, terminal)
        terminal.state.touch(time.monotonic())
        if not terminal.proc.tty:
            raise TerminalError(NO_TTY_RESIZE)
        try:
            await terminal.proc.resize(cols, rows, timeout=10.0)
        except EngineNotFound:
            pass  # the shell just exited: terminal_closed follows
        except EngineUnavailable:
            raise ProtocolError(ErrorCode.DOCKER_UNAVAILABLE, DOCKER_UNAVAILABLE_MESSAGE) from None
        except EngineError as exc:
            raise TerminalError(f"Resize failed: {exc.message}") from None

    async def _eof(self, session: Session, msg: Message) -> None:
        terminal = self._terminal_of(session)
        await self._still_allowed(session, terminal)
        terminal.close_stdin()

    async def _close_terminal(self, session: Session, msg: Message) -> None:
        terminal = self._terminal_of(session)
        await terminal.close(USER_CLOSED, notify=True)

    # --- lifecycle --------------------------------------------------------------------

    async def on_disconnect(self, session: Session) -> None:
        terminal = session.gateway_state
        if isinstance(terminal, Terminal):
            await terminal.close(CONNECTION_CLOSED, notify=False)

    async def stop(self) -> None:
        self._stopping = True
        for terminal in list(self._terminals):
            terminal.begin_close(SERVER_SHUTDOWN, notify=False)
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=STOP_TIMEOUT)
            if pending:
                log.warning("%d terminal teardowns did not finish before shutdown", len(pending))
