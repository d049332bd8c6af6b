"""A live terminal and a connection's state on /ws/terminal: the I/O of a live terminal.

A `Terminal` (a "terminal session" on the wire, `sessionId`) owns its exec
(`engine.exec`), an output pump task, an idle watch task, a grace timer while
detached, and a single teardown that always kills the shell and its children through
the engine before it reports `terminal_closed` (with a TTY, closing the attach socket
leaves the shell running; docs/terminal.md). It outlives its connection: a
`TerminalState` (the gateway's `Session.state`) is one connection's hold on it
(docs/protocol.md "Terminal sessions"). What a terminal needs of its gateway is
`TerminalHost`, so this module does not import the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from openpanel_ws.engine.client import EngineError, EngineNotFound
from openpanel_ws.engine.exec import TERM_ENV, ExecProcess
from openpanel_ws.gateways.base import Session
from openpanel_ws.gateways.terminal.lifecycle import TerminalLifecycle
from openpanel_ws.gateways.terminal.messages import (
    GRACE_EXPIRED,
    IDLE_TIMEOUT,
    INPUT_NOT_READ,
    PROCESS_EXITED,
    RECORDING_UNWRITABLE,
    RESUMED_ELSEWHERE,
    STDIN_CLOSED,
    OpenRequest,
    TerminalRefused,
    closed_message,
    output_message,
)
from openpanel_ws.gateways.terminal.output import ExecOutput
from openpanel_ws.gateways.terminal.recording import (
    CastRecorder,
    RecordingFull,
    header,
    quota_for,
    recording_name,
)
from openpanel_ws.gateways.terminal.ring import OutputPiece, OutputRing
from openpanel_ws.protocol import Message

if TYPE_CHECKING:
    from openpanel_ws.config import Settings
    from openpanel_ws.hosts.registry import Host
    from openpanel_ws.services import Services

__all__ = [
    "INPUT_BACKLOG_LIMIT",
    "LOST_CHECK_WAIT",
    "OUTPUT_HIGH_WATER",
    "OUTPUT_LOW_WATER",
    "READ_SIZE",
    "Suspended",
    "Terminal",
    "TerminalHost",
    "TerminalState",
    "bound_terminal",
    "unbind",
]

log = logging.getLogger(__name__)

# Client backlog (fraction of its slow-consumer bound) at which the output pump stops
# reading the shell, and the level at which it resumes.
OUTPUT_HIGH_WATER = 0.5
OUTPUT_LOW_WATER = 0.125

# The most the output pump reads at once.
READ_SIZE: Final = 65536
# Bytes queued towards a shell that does not read its stdin before input is refused
# (input is never buffered without bound).
INPUT_BACKLOG_LIMIT: Final = 1024 * 1024
# How long a SIGKILLed program's container is watched for stopping (containerLost).
LOST_CHECK_WAIT: Final = 0.5


@dataclass(frozen=True, slots=True)
class Suspended:
    """A terminal stopped for a reload: its attach socket's descriptor and the output
    bytes read but not yet turned into text."""

    fd: int
    pending: bytes


class TerminalHost(Protocol):
    """What a `Terminal` needs of its gateway (`TerminalGateway`)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def services(self) -> Services: ...

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a teardown task until it ends (the gateway waits for it at shutdown)."""

    async def release(self, terminal: Terminal, *, forget: bool) -> None:
        """The terminal has ended: free its slot (`forget`: its processes are gone)."""

    def audit_end(self, terminal: Terminal) -> None:
        """Write the terminal's end line to the audit log."""


class TerminalState:
    """One connection's hold on a terminal: the terminal gateway's `Session.state`.

    The terminal outlives it: a dropped connection detaches, another one may attach
    again. `Session.state` is written only by the transitions of this module (`bind`,
    `TerminalState.release`, `unbind`) and read through `bound_terminal`.
    """

    __slots__ = ("session", "terminal")

    def __init__(self, session: Session[TerminalState], terminal: Terminal) -> None:
        self.session = session
        self.terminal = terminal

    @classmethod
    def bind(cls, session: Session[TerminalState], terminal: Terminal) -> TerminalState:
        """`session` now holds `terminal` (open, resume)."""
        state = session.state = cls(session, terminal)
        return state

    def release(self) -> None:
        """The session stops holding this terminal; a no-op when it holds another one
        already (it resumed or opened a terminal meanwhile)."""
        if self.session.state is self:
            self.session.state = None

    @property
    def current(self) -> bool:
        return self.terminal.attached is self and self.terminal.lifecycle.is_open

    def deliver(self, piece: OutputPiece) -> bool:
        return self.session.send(output_message(piece.text, piece.stream, piece.end))


def bound_terminal(session: Session[TerminalState]) -> Terminal | None:
    """The open terminal `session` holds, None when it holds none (or holds it stale:
    its terminal is closing, or was resumed on another connection)."""
    state = session.state
    return state.terminal if state is not None and state.current else None


def unbind(session: Session[TerminalState]) -> TerminalState | None:
    """Take `session`'s `TerminalState` away (stale or not) and return it."""
    state, session.state = session.state, None
    return state


class Terminal:
    """One live terminal on one Docker host (`host`, whose engine runs its exec): its
    exec, output ring, recording, output pump, idle watch, grace timer and (single)
    teardown. Attached to at most one connection at a time (`attached`: that
    connection's `TerminalState`)."""

    def __init__(self, gateway: TerminalHost, host: Host, lifecycle: TerminalLifecycle,
                 proc: ExecProcess, *, user: str, client_id: str, remote: str, cols: int,
                 rows: int) -> None:
        self.gateway = gateway
        self.host = host
        self.lifecycle = lifecycle
        self.proc = proc
        # Who opened it, for the audit log and ownership (the `sub`).
        self.user = user
        self.client_id = client_id
        self.remote = remote
        self.cols = cols
        self.rows = rows
        self.attached: TerminalState | None = None
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
        # Detached: the ring's `seq` when the client went away; set again on attach.
        self._detached_at: int | None = None
        self._reattached = asyncio.Event()
        self._teardown: asyncio.Task[None] | None = None

    def start_tasks(self, pending_output: bytes = b"") -> None:
        self._pending_output = pending_output
        loop = asyncio.get_running_loop()
        self._pump = loop.create_task(self._pump_output(), name=f"{self.lifecycle.session_id}-pump")
        self._idle = loop.create_task(self._watch_idle(), name=f"{self.lifecycle.session_id}-idle")

    # --- connections ------------------------------------------------------------------

    def attach(self, session: Session[TerminalState]) -> TerminalState:
        """Bind to `session` (cancelling the grace timer); the caller sends the replay."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        self._detached_at = None
        self._reattached.set()  # a pump waiting on a full ring reads again
        old = self.attached
        attached = self.attached = TerminalState.bind(session, self)
        if old is not None and old.session is not session:
            old.release()
            old.session.send(closed_message(RESUMED_ELSEWHERE, None))
        return attached

    def detach(self, attached: TerminalState, grace: float) -> None:
        """The connection is gone: keep the shell `grace` seconds for a resume."""
        if self.attached is not attached:
            return
        self.attached = None
        if self.lifecycle.is_open:
            log.info("terminal %s detached; kept %gs for a resume", self.lifecycle.session_id, grace)
            self.start_grace(grace)

    def start_grace(self, grace: float) -> None:
        self._detached_at = self.ring.seq
        self._reattached.clear()
        self._grace = asyncio.get_running_loop().call_later(
            grace, lambda: self.begin_close(GRACE_EXPIRED, notify=False))

    # --- reload (docs/terminal.md "Reload") ---------------------------------------------

    async def suspend(self) -> Suspended | None:
        """Stop every task of this session and give up its attach socket for the
        re-executed gateway (`handoff`). None when it cannot be handed on."""
        for task in (self._pump, self._idle):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        attached, self.attached = self.attached, None
        if attached is not None:
            attached.release()
        handed = self.proc.hand_over_socket()
        if handed is None or not self.lifecycle.is_open or self.proc.exec_id is None:
            return None
        fd, buffered = handed
        if self.recorder is not None:
            self.recorder.close()
        return Suspended(fd, self._output.pending_bytes() + buffered)

    def start_recording(self, request: OpenRequest) -> None:
        """Record this new terminal when `terminal_record_dir` is set (docs/terminal.md
        "Recording"); refused when the file cannot be created, unrecorded (one log line)
        when the directory is at its cap."""
        settings = self.gateway.settings
        directory = settings.terminal_record_dir
        if directory is None:
            return
        lifecycle = self.lifecycle
        name = recording_name(lifecycle.started_at, self.user, lifecycle.container_name or
                              lifecycle.container_id[:12], lifecycle.session_id)
        head = header(request.cols, request.rows, lifecycle.started_at, TERM_ENV.split("=", 1)[1],
                      command=lifecycle.shell, title=f"{self.user}@{lifecycle.container_name}",
                      host=lifecycle.host)
        try:
            quota = quota_for(directory, settings.terminal_record_max_bytes,
                              settings.terminal_record_dir_max_bytes)
            self.recorder = CastRecorder.create(directory, name, head, time.monotonic(),
                                                record_input=settings.terminal_record_input,
                                                quota=quota)
        except RecordingFull as exc:
            log.warning("terminal recording of %s not started: %s", lifecycle.session_id, exc)
        except OSError as exc:
            log.error("terminal recording in %s cannot be created: %s", directory, exc)
            raise TerminalRefused(RECORDING_UNWRITABLE) from None

    # --- client input --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.stdin_open:
            raise TerminalRefused(STDIN_CLOSED)
        if self.proc.backlog > INPUT_BACKLOG_LIMIT:
            raise TerminalRefused(INPUT_NOT_READ)
        self.proc.write(data)
        now = time.monotonic()
        self.lifecycle.record_input(len(data), now)
        if self.recorder is not None and self.recorder.record_input:
            # Typed input is recorded only when opted in; don't decode it otherwise.
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
        self.lifecycle.touch(time.monotonic())

    # --- output ---------------------------------------------------------------------

    def _emit(self, messages: list[Message]) -> None:
        now = time.monotonic()
        for message in messages:
            text = str(message["data"])
            stream = message.get("stream")
            piece = self.ring.append(text, stream if isinstance(stream, str) else None)
            if self.recorder is not None:
                self.recorder.output(text, now)
            attached = self.attached
            if attached is not None:
                attached.deliver(piece)  # a gone client detaches through on_disconnect

    async def _pump_output(self) -> None:
        """Shell output -> ring (and recording) -> the attached client, in order, each
        chunk as soon as it is read. Detached, the shell keeps running into the ring
        until the ring is full of output its client did not see (`_room`)."""
        try:
            chunk = self._pending_output
            self._pending_output = b""
            while True:
                if chunk:
                    self.lifecycle.record_output(len(chunk))
                    self._emit(self._output.feed(chunk))
                    # Backpressure: a client on a slow link pauses the shell's output (the
                    # engine and the TTY buffer it) instead of being cut off with 1013.
                    attached = self.attached
                    if attached is not None and attached.session.backlog > OUTPUT_HIGH_WATER:
                        await attached.session.wait_backlog_below(OUTPUT_LOW_WATER)
                chunk = await self.proc.read(await self._room())
                if not chunk:
                    break
            self._emit(self._output.flush())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("terminal %s: output pump failed", self.lifecycle.session_id)
        # EOF: the shell ended (unless a teardown already started, then this is a no-op).
        self.begin_close(PROCESS_EXITED, notify=True)

    async def _room(self) -> int:
        """How much the pump may read now. Detached, only what still fits in the ring
        after the detach point: once that is 0 the shell is not read (it blocks on its
        pty or pipe, as for a slow client) until a client attaches again."""
        logged = False
        while self.attached is None and self._detached_at is not None:
            room = self.ring.room_after(self._detached_at)
            if room > 0:
                return min(room, READ_SIZE)
            if not logged:
                log.info("terminal %s: detached and its output ring is full; not read until "
                         "a resume", self.lifecycle.session_id)
                logged = True
            self._reattached.clear()
            await self._reattached.wait()
        return READ_SIZE

    async def _watch_idle(self) -> None:
        while self.lifecycle.is_open:
            now = time.monotonic()
            if self.lifecycle.is_idle(now):
                self.begin_close(IDLE_TIMEOUT, notify=True)
                return
            await asyncio.sleep(self.lifecycle.idle_deadline() - now)

    # --- teardown -------------------------------------------------------------------

    def begin_close(self, reason: str, *, notify: bool) -> asyncio.Task[None]:
        """Start the teardown once; later callers get the same task."""
        if self._teardown is None:
            self.lifecycle.begin_close(reason)
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
            self._teardown = asyncio.get_running_loop().create_task(
                self._close(reason, notify), name=f"{self.lifecycle.session_id}-close")
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
            log.exception("terminal %s: teardown failed", self.lifecycle.session_id)
        finally:
            self.proc.close_socket()
            self.lifecycle.finish(exit_code, time.time())
            if self.recorder is not None:
                self.recorder.close()
            if self.audited:
                self.gateway.audit_end(self)
            await self.gateway.release(self, forget=killed)
        log.info("terminal %s closed: %s (exit code %s)", self.lifecycle.session_id, reason, exit_code)
        attached = self.attached
        self.attached = None
        if attached is not None:
            attached.release()
            if notify:
                message = closed_message(reason, exit_code)
                if self.container_lost:
                    message["containerLost"] = True  # terminal extensions
                attached.session.send(message)

    async def _container_gone(self, wait: float = LOST_CHECK_WAIT) -> bool:
        """Whether the container stopped, restarted or was removed under the program.

        The exec ends a moment before the engine marks its container stopped, so look
        a few times before deciding it still runs.
        """
        deadline = time.monotonic() + wait
        while True:
            try:
                info = await self.host.engine.get(
                    f"/containers/{self.lifecycle.container_id}/json")
            except EngineNotFound:
                return True
            except EngineError:
                return False
            state = info.get("State") or {}
            if (not state.get("Running") or state.get("Restarting")
                    or str(state.get("StartedAt", "")) != self.container_started_at):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
