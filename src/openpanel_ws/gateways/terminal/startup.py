"""A new terminal's exec start-up: create it, start it, apply the initial size, and
turn the engine's refusals into the client's `terminal_error` (naming the container as
the client did, and the host)."""

from __future__ import annotations

from openpanel_ws.engine.client import EngineError, EngineNotFound, EngineUnavailable
from openpanel_ws.engine.exec import ExecProcess, start_failure_message
from openpanel_ws.gateways.access import docker_unavailable
from openpanel_ws.gateways.terminal.messages import (
    NOT_FOUND_OR_NOT_RUNNING,
    OpenRequest,
    TerminalRefused,
    start_failed,
)

__all__ = ["create_exec", "start_exec"]


async def create_exec(proc: ExecProcess, ref: str, host: str) -> None:
    """Create the exec of a new terminal on host `host`; the engine's refusals become the
    client's (naming the container as the client did, and the host)."""
    try:
        await proc.create()
    except EngineUnavailable:
        raise docker_unavailable(ref, host) from None
    except EngineNotFound:
        raise TerminalRefused(NOT_FOUND_OR_NOT_RUNNING, containerId=ref, host=host) from None
    except EngineError as exc:
        if exc.status == 409:  # stopped or paused meanwhile
            raise TerminalRefused(NOT_FOUND_OR_NOT_RUNNING, containerId=ref, host=host) from None
        raise TerminalRefused(start_failed(exc.message), containerId=ref, host=host) from None


async def start_exec(proc: ExecProcess, request: OpenRequest, host: str) -> bytes:
    """Start the exec and apply the initial size before any output is forwarded.

    Returns output already read (a shell that ended at once). Raises TerminalRefused
    when the shell could not be started at all.
    """
    ref = request.container_ref
    try:
        await proc.start()
    except EngineUnavailable:
        raise docker_unavailable(ref, host) from None
    except EngineError as exc:
        raise TerminalRefused(start_failed(exc.message), containerId=ref, host=host) from None
    if not proc.tty:
        return b""  # nothing to size; a failed start shows as output and exit code
    try:
        # The engine waits until the process is ready, then resizes: right after
        # start, before the first prompt reaches the client.
        await proc.resize(request.cols, request.rows)
    except EngineError:
        # 404: the exec has already ended, e.g. the shell does not exist.
        output = await proc.read_until_eof(timeout=5.0)
        code = await proc.wait_exit_code(timeout=3.0)
        reason = start_failure_message(request.program, output, code)
        if reason is not None:
            raise TerminalRefused(reason, containerId=ref, host=host) from None
        return output
    return b""
