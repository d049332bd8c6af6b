"""Terminal audit log: one JSON line when a session starts and one when it ends.

Records carry who, where, which shell, when, how it ended, how many bytes went each
way and, when the session is recorded, the recording's path; never the typed content or
the output. Each line is written with a single
`write()` on an O_APPEND descriptor, so lines from concurrent sessions (or processes)
never interleave.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

from openpanel_ws.gateways.terminal.state import TerminalState
from openpanel_ws.protocol import rfc3339

__all__ = [
    "AuditLog",
    "end_record",
    "start_record",
]

log = logging.getLogger(__name__)


def _base(state: TerminalState, user: str, client_id: str, remote: str) -> dict[str, Any]:
    return {
        "sessionId": state.session_id,
        "user": user,
        "clientId": client_id,
        "remote": remote,
        "container": state.container_id,
        "containerName": state.container_name,
        "containerRef": state.container_ref,
        "shell": state.shell,
        "start": rfc3339(state.started_at),
    }


def start_record(state: TerminalState, *, user: str, client_id: str, remote: str,
                 recording: str | None = None) -> dict[str, Any]:
    record = {"event": "terminal_start", "timestamp": rfc3339(state.started_at),
              **_base(state, user, client_id, remote)}
    if recording is not None:
        record["recording"] = recording
    return record


def end_record(state: TerminalState, *, user: str, client_id: str, remote: str,
               recording: str | None = None) -> dict[str, Any]:
    ended = state.ended_at if state.ended_at is not None else state.started_at
    extra = {"recording": recording} if recording is not None else {}
    return {
        "event": "terminal_end",
        "timestamp": rfc3339(ended),
        **_base(state, user, client_id, remote),
        "end": rfc3339(ended),
        "durationSeconds": round(max(0.0, ended - state.started_at), 3),
        "reason": state.close_reason,
        "exitCode": state.exit_code,
        "bytesIn": state.bytes_in,
        "bytesOut": state.bytes_out,
        **extra,
    }


class AuditLog:
    """Appends JSON lines to `path`; a disabled log (path None) accepts and drops."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def write(self, record: dict[str, Any]) -> bool:
        """True when the line is on disk (or the log is disabled)."""
        if self.path is None:
            return True
        line = orjson.dumps(record) + b"\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("terminal audit log %s not writable: %s", self.path, exc)
            return False
        return True
