"""The terminal gateway's wire format: request parsers, message builders, and the
client-facing texts of `terminal_closed` and `terminal_error` (docs/protocol.md
"Terminal" and "Terminal extensions"). Plain code, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from openpanel_ws.protocol import (
    TERMINAL_MAX_SIZE,
    TERMINAL_MIN_SIZE,
    ErrorCode,
    Message,
    ProtocolError,
    invalid,
    optional_int,
    optional_str,
    require_int,
    require_str,
)

__all__ = [
    "ALREADY_OPEN",
    "AUDIT_UNWRITABLE",
    "CONNECTION_CLOSED",
    "DEFAULT_COLS",
    "DEFAULT_ROWS",
    "DEFAULT_SHELL",
    "GRACE_EXPIRED",
    "IDLE_TIMEOUT",
    "INPUT_NOT_READ",
    "MAX_COMMAND_ARGS",
    "MAX_COMMAND_ARG_LEN",
    "MAX_SIZE",
    "MIN_SIZE",
    "NOT_FOUND_OR_NOT_RUNNING",
    "NO_TERMINAL",
    "NO_TTY_RESIZE",
    "PERMISSION_REVOKED",
    "PROCESS_EXITED",
    "REAUTH_DENIED",
    "RECORDING_UNWRITABLE",
    "RESUMED_ELSEWHERE",
    "SERVER_SHUTDOWN",
    "SERVICE_RESTART",
    "SHUTTING_DOWN",
    "STDIN_CLOSED",
    "USER_CLOSED",
    "OpenRequest",
    "TerminalRefused",
    "closed_message",
    "opened_message",
    "output_message",
    "parse_input",
    "parse_open",
    "parse_resize",
    "permission_denied",
    "program_not_found",
    "resize_failed",
    "start_failed",
    "terminals_off",
]

DEFAULT_SHELL: Final = "/bin/sh"
DEFAULT_COLS: Final = 80
DEFAULT_ROWS: Final = 24
MIN_SIZE: Final = TERMINAL_MIN_SIZE
MAX_SIZE: Final = TERMINAL_MAX_SIZE

# Reasons of `terminal_closed`.
USER_CLOSED: Final = "User closed"
PROCESS_EXITED: Final = "Process exited"
IDLE_TIMEOUT: Final = "Idle timeout"
PERMISSION_REVOKED: Final = "Permission revoked"
# A re-auth's claims no longer allow the terminal (as `subscription_ended` on /ws/containers).
REAUTH_DENIED: Final = "permission"
# Internal reasons (the client is gone, nothing is sent; they reach the audit log).
CONNECTION_CLOSED: Final = "Connection closed"
SERVER_SHUTDOWN: Final = "Server shutdown"
GRACE_EXPIRED: Final = "Detached too long"  # grace over (docs/protocol.md "Terminal sessions")
# A reload ends the terminals it cannot hand on (their host's engine is reached over TLS
# or SSH; docs/terminal.md "Reload").
SERVICE_RESTART: Final = "Service restart"
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
INPUT_NOT_READ: Final = "Input not delivered: the shell is not reading its input"
SHUTTING_DOWN: Final = "Server is shutting down"
AUDIT_UNWRITABLE: Final = "Terminal refused: the audit log cannot be written"
RECORDING_UNWRITABLE: Final = "Terminal refused: the recording cannot be written"


def program_not_found(program: str, *, is_command: bool) -> str:
    return f"{'Command' if is_command else 'Shell'} not found in the container: {program}"


def terminals_off(host: str) -> str:
    return f"Terminals are switched off on host '{host}'"


def start_failed(detail: str) -> str:
    return f"Could not start the shell: {detail}"


def resize_failed(detail: str) -> str:
    return f"Resize failed: {detail}"


class TerminalRefused(Exception):
    """A terminal request refused: becomes one `terminal_error` {message, ...context};
    nothing else changes (docs/protocol.md "Error codes")."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def to_message(self) -> Message:
        return {"type": "terminal_error", "message": self.message, **self.context}


def permission_denied() -> ProtocolError:
    """The shared `error` PERMISSION_DENIED of every terminal message."""
    return ProtocolError(ErrorCode.PERMISSION_DENIED,
                         "Permission denied: the terminal needs the admin role or the "
                         "'terminal' permission")


@dataclass(frozen=True, slots=True)
class OpenRequest:
    container_ref: str
    shell: str
    cols: int
    rows: int
    # docs/protocol.md "Terminal extensions": defaults are the specification's behaviour.
    command: tuple[str, ...] = ()  # run this instead of `shell`
    tty: bool = True
    stdin: bool = True
    # docs/protocol.md "Terminal sessions": reattach to a live session.
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


def opened_message(container_ref: str, session_id: str, host: str, *, resumed: bool = False,
                   seq: int | None = None) -> Message:
    message: Message = {"type": "terminal_opened", "containerId": container_ref,
                        "host": host, "sessionId": session_id}
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
