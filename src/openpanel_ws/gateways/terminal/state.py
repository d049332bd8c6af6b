"""The terminal gateway's plain synchronous core: validation, output decoding, session
state. No I/O, so every rule is unit-tested with function calls."""

from __future__ import annotations

import codecs
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any, Final

from openpanel_ws.engine.logs import STDERR, STDOUT, split_frames
from openpanel_ws.protocol import Message, invalid, optional_int, optional_str, require_int, require_str

DEFAULT_SHELL: Final = "/bin/sh"
DEFAULT_COLS: Final = 80
DEFAULT_ROWS: Final = 24
MIN_SIZE: Final = 1
MAX_SIZE: Final = 1000

# Reasons of `terminal_closed`.
USER_CLOSED: Final = "User closed"
PROCESS_EXITED: Final = "Process exited"
IDLE_TIMEOUT: Final = "Idle timeout"
PERMISSION_REVOKED: Final = "Permission revoked"
# Internal reasons (the client is gone, nothing is sent; they reach the audit log).
CONNECTION_CLOSED: Final = "Connection closed"
SERVER_SHUTDOWN: Final = "Server shutdown"
GRACE_EXPIRED: Final = "Detached too long"  # resume grace period over (docs/protocol.md)
# Sent to a connection whose terminal was resumed by another one.
RESUMED_ELSEWHERE: Final = "Resumed on another connection"

# Client-facing `terminal_error` texts.
NOT_FOUND_OR_NOT_RUNNING: Final = "Container not found or not running"
ALREADY_OPEN: Final = "A terminal is already open on this connection; close it first"
NO_TERMINAL: Final = "No terminal is open; send open_terminal first"

# A program path or name: no arguments, no shell syntax, no control characters.
_SHELL_RE = re.compile(r"[A-Za-z0-9_./+-]{1,255}")

# Terminal extensions (docs/protocol.md "Terminal extensions"): `command` bounds.
MAX_COMMAND_ARGS: Final = 256
MAX_COMMAND_ARG_LEN: Final = 4096
STDIN_CLOSED: Final = "Input not delivered: standard input of this terminal is closed"
NO_TTY_RESIZE: Final = "Resize needs a terminal opened with tty: true"
# How the engine's output starts when the runtime could not start the program (as
# engine.exec.START_FAILURE_PREFIX; not imported, this module stays free of I/O code).
START_FAILURE_PREFIX: Final = b"OCI runtime exec failed"


class TerminalError(Exception):
    """Becomes a `terminal_error` {message}; nothing else changes."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def to_message(self) -> Message:
        return {"type": "terminal_error", "message": self.message, **self.context}


@dataclass(frozen=True, slots=True)
class OpenRequest:
    container_ref: str
    shell: str
    cols: int
    rows: int
    # Terminal extensions (docs/protocol.md): defaults are the specification's behaviour.
    command: tuple[str, ...] = ()  # run this instead of `shell`
    tty: bool = True
    stdin: bool = True
    # Terminal sessions (docs/protocol.md): reattach to a live session.
    session_id: str | None = None
    last_seq: int | None = None

    @property
    def argv(self) -> list[str]:
        return list(self.command) if self.command else [self.shell]

    @property
    def program(self) -> str:
        return self.argv[0]


def _optional_bool(msg: Mapping[str, Any], field_name: str, default: bool) -> bool:
    value = msg.get(field_name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"Field '{field_name}' must be a boolean", field_name)
    return value


def _parse_command(msg: Mapping[str, Any]) -> tuple[str, ...]:
    value = msg.get("command")
    if value is None:
        return ()
    if (not isinstance(value, list) or not 1 <= len(value) <= MAX_COMMAND_ARGS
            or not all(isinstance(a, str) and len(a) <= MAX_COMMAND_ARG_LEN and "\0" not in a
                       for a in value)):
        raise invalid(f"Field 'command' must be a list of 1 to {MAX_COMMAND_ARGS} strings "
                      f"(each at most {MAX_COMMAND_ARG_LEN} characters, no NUL)", "command")
    if not value[0]:
        raise invalid("Field 'command' must start with a program name", "command")
    return tuple(value)


def parse_open(msg: Mapping[str, Any]) -> OpenRequest:
    container_ref = require_str(msg, "containerId", max_len=256)
    command = _parse_command(msg)
    if command and msg.get("shell") is not None:
        raise invalid("Fields 'shell' and 'command' exclude each other", "command")
    shell = optional_str(msg, "shell", DEFAULT_SHELL, max_len=255)
    assert shell is not None
    if not _SHELL_RE.fullmatch(shell):
        raise invalid("Field 'shell' must be a program path or name without arguments, "
                      "e.g. /bin/bash", "shell")
    cols = optional_int(msg, "cols", DEFAULT_COLS, minimum=MIN_SIZE, maximum=MAX_SIZE)
    rows = optional_int(msg, "rows", DEFAULT_ROWS, minimum=MIN_SIZE, maximum=MAX_SIZE)
    tty = _optional_bool(msg, "tty", True)
    stdin = _optional_bool(msg, "stdin", True)
    session_id = optional_str(msg, "sessionId", None, max_len=128)
    last_seq: int | None = None
    if msg.get("lastSeq") is not None:
        if session_id is None:
            raise invalid("Field 'lastSeq' needs 'sessionId'", "lastSeq")
        last_seq = optional_int(msg, "lastSeq", 0, minimum=0, maximum=2**62)
    return OpenRequest(container_ref, shell, cols, rows, command=command, tty=tty, stdin=stdin,
                       session_id=session_id, last_seq=last_seq)


def parse_resize(msg: Mapping[str, Any]) -> tuple[int, int]:
    cols = require_int(msg, "cols", minimum=MIN_SIZE, maximum=MAX_SIZE)
    rows = require_int(msg, "rows", minimum=MIN_SIZE, maximum=MAX_SIZE)
    return cols, rows


def parse_input(msg: Mapping[str, Any]) -> bytes:
    """The bytes to write to the shell: `data` as UTF-8 (an empty string is a no-op)."""
    if "data" not in msg:
        raise invalid("Missing field 'data'", "data")
    data = msg["data"]
    if not isinstance(data, str):
        raise invalid("Field 'data' must be a string", "data")
    # Lone surrogates cannot be UTF-8: replace them rather than fail the whole input.
    return data.encode("utf-8", "replace")


class OutputDecoder:
    """Incremental UTF-8: a character split between two reads is emitted whole with the
    second read; invalid bytes become U+FFFD, never an error."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, chunk: bytes) -> str:
        return self._decoder.decode(chunk, final=False)

    def flush(self) -> str:
        """At EOF: an incomplete trailing sequence becomes U+FFFD."""
        return self._decoder.decode(b"", final=True)

    def pending(self) -> bytes:
        """The start of a character still waiting for its other bytes."""
        buffered: bytes = self._decoder.getstate()[0]
        return buffered


class ExecOutput:
    """Exec output bytes -> `terminal_output` messages (terminal extensions).

    With a TTY the bytes are one text stream (the specification's message). Without one
    the engine multiplexes stdout and stderr in 8-byte-header frames (the same framing
    as container logs, `engine.logs.split_frames`); each stream is decoded on its own and
    its messages carry `stream`.
    """

    __slots__ = ("_buf", "_decoders", "_first", "tty")

    def __init__(self, *, tty: bool) -> None:
        self.tty = tty
        self._buf = bytearray()
        self._decoders: dict[str, OutputDecoder] = {}
        self._first = True

    def _decoder(self, stream: str) -> OutputDecoder:
        decoder = self._decoders.get(stream)
        if decoder is None:
            decoder = self._decoders[stream] = OutputDecoder()
        return decoder

    def feed(self, chunk: bytes) -> list[Message]:
        if self.tty:
            text = self._decoder(STDOUT).feed(chunk)
            return [output_message(text)] if text else []
        self._buf += chunk
        frames, used = split_frames(self._buf)
        del self._buf[:used]
        out: list[Message] = []
        for stream, payload in frames:
            if self._first:
                self._first = False
                # A program that could not start: the engine writes the runtime's error
                # as stdout; it is an error message (docker exec prints it on stderr).
                if payload.startswith(START_FAILURE_PREFIX):
                    stream = STDERR
            text = self._decoder(stream).feed(payload)
            if text:
                out.append(output_message(text, stream))
        return out

    def pending_bytes(self) -> bytes:
        """Bytes read but not yet turned into text (a reload hands them on; without a
        TTY a character split across frames is not carried over)."""
        if self.tty:
            decoder = self._decoders.get(STDOUT)
            return decoder.pending() if decoder is not None else b""
        return bytes(self._buf)

    def flush(self) -> list[Message]:
        out: list[Message] = []
        if self._buf:  # a truncated last frame: pass on what there is
            text = self._decoder(STDOUT).feed(bytes(self._buf[8:]))
            self._buf.clear()
            if text:
                out.append(output_message(text, None if self.tty else STDOUT))
        for stream, decoder in self._decoders.items():
            tail = decoder.flush()
            if tail:
                out.append(output_message(tail, None if self.tty else stream))
        return out


class Phase(Enum):
    OPEN = auto()
    CLOSING = auto()
    CLOSED = auto()


def new_session_id() -> str:
    return f"session-{secrets.token_hex(8)}"


@dataclass
class TerminalState:
    """Counters, idle clock and the single close decision of one terminal session."""

    session_id: str
    container_ref: str
    container_id: str
    container_name: str
    shell: str
    started_at: float  # wall clock, for the audit log
    idle_timeout: float
    now: float  # monotonic clock at open
    phase: Phase = Phase.OPEN
    bytes_in: int = 0
    bytes_out: int = 0
    close_reason: str | None = None
    exit_code: int | None = None
    ended_at: float | None = None
    last_activity: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_activity = self.now

    @property
    def is_open(self) -> bool:
        return self.phase is Phase.OPEN

    def record_input(self, size: int, now: float) -> None:
        self.bytes_in += size
        self.last_activity = now

    def record_output(self, size: int) -> None:
        self.bytes_out += size

    def touch(self, now: float) -> None:
        """Client activity other than input (resize) also keeps the session alive."""
        self.last_activity = now

    def idle_deadline(self) -> float:
        return self.last_activity + self.idle_timeout

    def is_idle(self, now: float) -> bool:
        return now >= self.idle_deadline()

    def begin_close(self, reason: str) -> bool:
        """The first close wins (user, exit, idle, disconnect can race); False after."""
        if self.phase is not Phase.OPEN:
            return False
        self.phase = Phase.CLOSING
        self.close_reason = reason
        return True

    def finish(self, exit_code: int | None, ended_at: float) -> None:
        self.phase = Phase.CLOSED
        self.exit_code = exit_code
        self.ended_at = ended_at


def opened_message(container_ref: str, session_id: str, *, resumed: bool = False,
                   seq: int | None = None) -> Message:
    message: Message = {"type": "terminal_opened", "containerId": container_ref,
                        "sessionId": session_id}
    if resumed:
        message["resumed"] = True
    if seq is not None:
        message["seq"] = seq
    return message


def output_message(text: str, stream: str | None = None, seq: int | None = None) -> Message:
    message: Message = {"type": "terminal_output", "data": text}
    if stream is not None:
        message["stream"] = stream
    if seq is not None:
        message["seq"] = seq
    return message


def closed_message(reason: str, exit_code: int | None) -> Message:
    message: Message = {"type": "terminal_closed", "reason": reason}
    if reason == PROCESS_EXITED:
        message["exitCode"] = exit_code
    return message
