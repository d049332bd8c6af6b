"""Terminal audit log: one JSON line when a session starts and one when it ends.

Records carry who, where (host and container), which shell, when, how it ended, how many
bytes went each way and, when the session is recorded, the recording's path; never the
typed content or the output. Each line is written with a single `write()` on an O_APPEND
descriptor, so lines from concurrent sessions (or processes)
never interleave.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

from openpanel_ws.gateways.terminal.lifecycle import TerminalLifecycle
from openpanel_ws.protocol import rfc3339

__all__ = [
    "AuditLog",
    "end_record",
    "start_record",
]

log = logging.getLogger(__name__)


def _base(lifecycle: TerminalLifecycle, user: str, client_id: str, remote: str) -> dict[str, Any]:
    return {
        "sessionId": lifecycle.session_id,
        "user": user,
        "clientId": client_id,
        "remote": remote,
        "host": lifecycle.host,
        "container": lifecycle.container_id,
        "containerName": lifecycle.container_name,
        "containerRef": lifecycle.container_ref,
        "shell": lifecycle.shell,
        "start": rfc3339(lifecycle.started_at),
    }


def start_record(lifecycle: TerminalLifecycle, *, user: str, client_id: str, remote: str,
                 recording: str | None = None) -> dict[str, Any]:
    record = {"event": "terminal_start", "timestamp": rfc3339(lifecycle.started_at),
              **_base(lifecycle, user, client_id, remote)}
    if recording is not None:
        record["recording"] = recording
    return record


def end_record(lifecycle: TerminalLifecycle, *, user: str, client_id: str, remote: str,
               recording: str | None = None) -> dict[str, Any]:
    ended = lifecycle.ended_at if lifecycle.ended_at is not None else lifecycle.started_at
    extra = {"recording": recording} if recording is not None else {}
    return {
        "event": "terminal_end",
        "timestamp": rfc3339(ended),
        **_base(lifecycle, user, client_id, remote),
        "end": rfc3339(ended),
        "durationSeconds": round(max(0.0, ended - lifecycle.started_at), 3),
        "reason": lifecycle.close_reason,
        "exitCode": lifecycle.exit_code,
        "bytesIn": lifecycle.bytes_in,
        "bytesOut": lifecycle.bytes_out,
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
