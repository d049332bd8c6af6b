"""Reload (SIGHUP, docs/terminal.md "Reload"): live terminals handed to the re-executed
gateway.

The reloading gateway suspends each live terminal (`Terminal.suspend`), describes it in
one JSON record and writes the records to a hand-off file whose path it passes to its
re-executed self in `HANDOFF_ENV`. The attach sockets stay open across exec; the new
image (same pid) reads the file and rebuilds each terminal around its socket, on the same
host.

Only a plain socket can be handed on (the host's `engine.transport.hands_over`): a unix
socket, or TCP without TLS. The attach stream of an engine reached over TLS or SSH lives in this process's TLS
state or SSH connection, which exec does not keep, and the engine cannot attach to a
running exec again; the gateway ends those terminals before the reload (reason
`SERVICE_RESTART`), killing their processes first.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from pathlib import Path
from typing import Any, Final

import orjson

from openpanel_ws import statedir
from openpanel_ws.engine.exec import ExecProcess
from openpanel_ws.gateways.terminal.lifecycle import TerminalLifecycle
from openpanel_ws.gateways.terminal.live import Suspended, Terminal, TerminalHost
from openpanel_ws.gateways.terminal.recording import CastRecorder, quota_for
from openpanel_ws.gateways.terminal.ring import OutputRing

__all__ = ["HANDOFF_ENV", "Record", "adopt", "pending_output", "read_records", "record",
           "write_records"]

log = logging.getLogger(__name__)

# Set by a reloading gateway for its re-executed self: the hand-off file.
HANDOFF_ENV: Final = "OPENPANEL_WS_TERMINAL_HANDOFF"

Record = dict[str, Any]


def record(terminal: Terminal, suspended: Suspended) -> Record:
    """What the next gateway image needs to adopt `terminal` (suspended)."""
    lifecycle = terminal.lifecycle
    proc = terminal.proc
    now = time.monotonic()
    recorder = terminal.recorder
    return {
        "sessionId": lifecycle.session_id, "host": lifecycle.host, "user": terminal.user,
        "clientId": terminal.client_id,
        "remote": terminal.remote, "containerRef": lifecycle.container_ref,
        "containerId": lifecycle.container_id, "containerName": lifecycle.container_name,
        "containerStartedAt": terminal.container_started_at, "shell": lifecycle.shell,
        "program": proc.program, "args": proc.args, "tty": proc.tty,
        "stdin": proc.stdin, "stdinOpen": terminal.stdin_open,
        "execId": proc.exec_id, "fd": suspended.fd,
        "pending": base64.b64encode(suspended.pending).decode(),
        "startedAt": lifecycle.started_at, "idleTimeout": lifecycle.idle_timeout,
        "idleFor": now - lifecycle.last_activity, "bytesIn": lifecycle.bytes_in,
        "bytesOut": lifecycle.bytes_out, "cols": terminal.cols, "rows": terminal.rows,
        "ring": terminal.ring.pieces(), "ringSeq": terminal.ring.seq,
        "recording": recorder.path if recorder is not None else None,
        "recordingElapsed": now - recorder.started if recorder is not None else 0.0,
        "recordInput": recorder.record_input if recorder is not None else False,
        "audited": terminal.audited, "journaled": terminal.journaled,
    }


def write_records(state_dir: Path, records: list[Record]) -> Path | None:
    """The hand-off file (0600) holding `records`, at a name no one can guess (the
    re-executed process learns it from `HANDOFF_ENV`), written through a temporary file
    and a rename (docs/security.md "The state directory"); None when it cannot be written."""
    path = state_dir / statedir.unique_name(f"terminal-handoff-{os.getpid()}-", ".json")
    try:
        statedir.ensure_private_dir(state_dir, "state directory")
        statedir.write_private(path, orjson.dumps({"pid": os.getpid(), "sessions": records}))
    except OSError as exc:
        log.error("terminal hand-off file %s: %s; the sessions will be reaped", path, exc)
        return None
    return path


def read_records(path: Path) -> list[Record]:
    """The records of a hand-off file, which is deleted; none when it is unreadable, not
    a private regular file of this user's (a symlink is never followed), or not this very
    process's (only the re-executed process, same pid, may adopt the descriptors).
    Blocking: call it in a thread."""
    try:
        raw = statedir.read_private(path, "terminal hand-off file")
        if raw is None:
            raise FileNotFoundError(f"{path}: no such file")
        data = orjson.loads(raw)
        path.unlink()
    except (OSError, orjson.JSONDecodeError) as exc:
        log.error("terminal hand-off file %s unreadable: %s", path, exc)
        return []
    if not isinstance(data, dict) or data.get("pid") != os.getpid():
        log.error("terminal hand-off file %s is not this process's; ignored", path)
        return []
    sessions = data.get("sessions", [])
    return [r for r in sessions if isinstance(r, dict)] if isinstance(sessions, list) else []


async def adopt(gateway: TerminalHost, rec: Record) -> Terminal:
    """Rebuild a handed-on terminal around its attach socket (not yet started), on its
    host (a record without one is the default host's). Raises ValueError when that host
    is no longer configured or no longer allows terminals."""
    session_id = str(rec["sessionId"])
    hosts = gateway.services.hosts
    host = hosts.get(str(rec["host"])) if "host" in rec else hosts.default
    if host is None or not host.terminals:
        raise ValueError(f"host {rec.get('host')!r} is not configured or has terminals off")
    proc = ExecProcess(host.engine, rec["containerId"], rec["program"],
                       marker=session_id, args=rec["args"], tty=rec["tty"], stdin=rec["stdin"])
    proc.exec_id = rec["execId"]
    await proc.adopt_socket(int(rec["fd"]))
    now = time.monotonic()
    settings = gateway.settings
    lifecycle = TerminalLifecycle(
        session_id=session_id, host=host.id, container_ref=rec["containerRef"],
        container_id=rec["containerId"], container_name=rec["containerName"],
        shell=rec["shell"], started_at=rec["startedAt"],
        idle_timeout=settings.terminal_idle_timeout, now=now - float(rec["idleFor"]))
    lifecycle.bytes_in, lifecycle.bytes_out = rec["bytesIn"], rec["bytesOut"]
    terminal = Terminal(gateway, host, lifecycle, proc, user=rec["user"], client_id=rec["clientId"],
                        remote=rec["remote"], cols=rec["cols"], rows=rec["rows"])
    terminal.ring = OutputRing.restore(settings.terminal_ring_bytes,
                                       [(t, st, e) for t, st, e in rec["ring"]], rec["ringSeq"])
    terminal.stdin_open = rec["stdinOpen"]
    terminal.audited = rec["audited"]
    terminal.journaled = rec["journaled"]
    terminal.container_started_at = rec["containerStartedAt"]
    if rec["recording"]:
        try:
            terminal.recorder = CastRecorder.reopen(
                rec["recording"], now - float(rec["recordingElapsed"]),
                record_input=rec["recordInput"], quota=quota_for(
                    Path(rec["recording"]).parent, settings.terminal_record_max_bytes,
                    settings.terminal_record_dir_max_bytes))
        except OSError as exc:
            log.error("terminal recording %s not continued: %s", rec["recording"], exc)
    return terminal


def pending_output(rec: Record) -> bytes:
    """Output bytes read before the reload, emitted first by the adopted pump."""
    return base64.b64decode(rec["pending"])
