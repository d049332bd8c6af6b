"""Interactive Docker exec: create, attach (hijacked TTY socket), resize, exit code, kill.

How the engine behaves (measured on Engine API 1.41) drives every choice here:
- attach is a raw socket after `101 UPGRADED` (`DockerEngine.hijack`); with a TTY the
  stream is not multiplexed;
- resize answers 500 before the exec has started and 404 after it has exited, so the
  initial size is applied right after start (the engine waits for the process to be
  ready before resizing);
- with a TTY, closing the attach socket does NOT end the shell and the engine has no
  kill-exec API. Each shell is started with a unique marker in its environment; `kill()`
  runs a second exec that finds the marked processes (and everything in their sessions,
  which catches children started with a cleared environment) through /proc and sends
  HUP, then KILL to whatever survives the grace period. Only the Engine API is used, so
  it works the same for a remote engine over tcp://.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from openpanel_ws.engine.client import DockerEngine, EngineError, EngineNotFound, EngineUnavailable

__all__ = [
    "MARKER_ENV",
    "START_FAILURE_CODES",
    "START_FAILURE_PREFIX",
    "TERM_ENV",
    "ExecProcess",
    "exit_code_of",
    "path_exists",
    "start_failure_message",
]

log = logging.getLogger(__name__)

MARKER_ENV = "OPENPANEL_WS_SESSION"
TERM_ENV = "TERM=xterm-256color"

# Run by the kill exec as `sh -c KILL_SCRIPT openpanel-ws-kill NAME=VALUE`. The marker is
# an argument, not in the killer's own environment, so it never matches itself.
# /proc/PID/environ is NUL-separated and busybox grep stops at NUL: translate first.
# stat field 5 (after "pid (comm) ") is the session id; 4 the process group.
KILL_SCRIPT = r"""
m=$1
self=$$
marked=""
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$self" ] && continue
  tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qxF "$m" && marked="$marked $p"
done
[ -z "$marked" ] && exit 0
targets=$marked
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$self" ] && continue
  s=$(cat "$d/stat" 2>/dev/null) || continue
  set -- ${s##*) }
  for q in $marked; do
    if [ "$3" = "$q" ] || [ "$4" = "$q" ]; then targets="$targets $p"; break; fi
  done
done
kill -HUP $targets 2>/dev/null
kill -CONT $targets 2>/dev/null
i=0
while [ $i -lt 10 ]; do
  alive=""
  for p in $targets; do
    [ -r "/proc/$p/stat" ] || continue
    s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    set -- ${s##*) }
    [ "$1" = "Z" ] || alive="$alive $p"
  done
  [ -z "$alive" ] && exit 0
  sleep 0.05
  i=$((i+1))
done
kill -KILL $alive 2>/dev/null
exit 0
"""

# Exit codes of an exec whose program could not be started at all (runc: 126/127).
START_FAILURE_CODES = frozenset({126, 127})
START_FAILURE_PREFIX = b"OCI runtime exec failed"


def start_failure_message(program: str, output: bytes, exit_code: int | None) -> str | None:
    """A client-facing reason when `output` shows the engine could not start `program`.

    Pure: the engine writes the runtime's error into the attach stream, then EOF, and
    the exec ends with 126/127.
    """
    if exit_code not in START_FAILURE_CODES or START_FAILURE_PREFIX not in output[:4096]:
        return None
    text = output[:4096].decode("utf-8", "replace")
    if "no such file or directory" in text or "not found" in text:
        return f"Shell not found in the container: {program}"
    if "permission denied" in text:
        return f"Shell is not executable in the container: {program}"
    return f"Shell could not be started: {program}"


class ExecProcess:
    """One interactive exec with a TTY and stdin, identified by its env marker.

    Terminal extensions (docs/protocol.md): `args` follow the program, `tty=False` gives
    multiplexed stdout/stderr frames instead of a TTY, `stdin=False` attaches no stdin.
    """

    def __init__(self, engine: DockerEngine, container_id: str, program: str, marker: str, *,
                 args: Sequence[str] = (), tty: bool = True, stdin: bool = True) -> None:
        self.engine = engine
        self.container_id = container_id
        self.program = program
        self.marker = marker
        self.args = list(args)
        self.tty = tty
        self.stdin = stdin
        self.exec_id: str | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    @property
    def _marker_env(self) -> str:
        return f"{MARKER_ENV}={self.marker}"

    async def create(self) -> str:
        body: dict[str, Any] = {
            "AttachStdin": self.stdin,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": self.tty,
            "Cmd": [self.program, *self.args],
            "Env": [TERM_ENV, self._marker_env],
        }
        result = await self.engine.post(f"/containers/{quote(self.container_id, safe='')}/exec", body)
        self.exec_id = str(result["Id"])
        return self.exec_id

    async def start(self) -> None:
        """Start and attach: afterwards `reader`/`writer` are the raw TTY stream (without
        a TTY: 8-byte-header frames, see `engine.logs.split_frames`)."""
        assert self.exec_id is not None
        self.reader, self.writer = await self.engine.hijack(
            f"/exec/{self.exec_id}/start", {"Detach": False, "Tty": self.tty}
        )

    async def resize(self, cols: int, rows: int, timeout: float = 15.0) -> None:
        """Raises EngineNotFound when the exec has already exited."""
        assert self.exec_id is not None
        await self.engine.request(
            "POST", f"/exec/{self.exec_id}/resize", params={"h": rows, "w": cols}, timeout=timeout
        )

    async def wait_exit_code(self, timeout: float = 5.0) -> int | None:
        """The exit code once the engine reports the exec ended (EOF comes a few ms
        before `Running:false`); None if it does not within `timeout`."""
        assert self.exec_id is not None
        return await exit_code_of(self.engine, self.exec_id, timeout)

    def write(self, data: bytes) -> None:
        """Queue bytes for the shell without waiting (see `backlog`)."""
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(data)

    def close_stdin(self) -> None:
        """Half-close the attach socket: the engine closes the exec's stdin (EOF), output
        keeps flowing."""
        if self.writer is not None and not self.writer.is_closing() and self.writer.can_write_eof():
            with contextlib.suppress(OSError):
                self.writer.write_eof()

    @property
    def backlog(self) -> int:
        """Bytes written but not yet accepted by the engine socket."""
        if self.writer is None or self.writer.is_closing():
            return 0
        return self.writer.transport.get_write_buffer_size()

    async def read(self, size: int = 65536) -> bytes:
        """Next output chunk as soon as any is available; b"" at EOF."""
        if self.reader is None:
            return b""
        try:
            return await self.reader.read(size)
        except (ConnectionError, OSError):
            return b""

    async def read_until_eof(self, timeout: float, limit: int = 65536) -> bytes:
        out = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with contextlib.suppress(TimeoutError):
            while len(out) < limit:
                chunk = await asyncio.wait_for(self.read(), max(0.0, deadline - loop.time()))
                if not chunk:
                    break
                out += chunk
        return out

    def close_socket(self) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.close()

    def hand_over_socket(self) -> tuple[int, bytes] | None:
        """For a reload (docs/terminal.md): stop reading, and return an inheritable
        duplicate of the attach socket with the bytes already read but not consumed.
        The original descriptor may then be closed: the connection lives on in the
        duplicate. None when there is no open attach socket, or the host's transport
        cannot hand one over (TLS, SSH: docs/hosts.md "What each transport supports")."""
        if self.writer is None or self.reader is None or self.writer.is_closing():
            return None
        if not self.engine.transport.hands_over:
            return None
        transport = self.writer.transport
        sock = transport.get_extra_info("socket")
        if sock is None:
            return None
        with contextlib.suppress(RuntimeError, AttributeError):
            transport.pause_reading()  # type: ignore[attr-defined]
        buffered: bytearray = getattr(self.reader, "_buffer", bytearray())
        pending = bytes(buffered)
        buffered.clear()
        fd = os.dup(sock.fileno())
        os.set_inheritable(fd, True)
        return fd, pending

    async def adopt_socket(self, fd: int) -> None:
        """The other half of `hand_over_socket`, in the re-executed gateway."""
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        self.reader, self.writer = await asyncio.open_connection(sock=sock)

    async def kill(self, timeout: float = 20.0) -> bool:
        """End the shell and everything it started, through a second exec.

        Returns True when the kill exec ran. Falls back to the session's own program
        when the container has no /bin/sh.
        """
        programs = ["/bin/sh"]
        if self.program not in programs:
            programs.append(self.program)
        for program in programs:
            try:
                created = await self.engine.post(
                    f"/containers/{quote(self.container_id, safe='')}/exec",
                    {
                        "AttachStdout": True,
                        "AttachStderr": True,
                        "Tty": False,
                        "User": "0",  # must read every environ and signal every process
                        "Cmd": [program, "-c", KILL_SCRIPT, "openpanel-ws-kill", self._marker_env],
                    },
                )
                kill_id = str(created["Id"])
                # Without Detach the engine answers when the exec has finished.
                await self.engine.request(
                    "POST", f"/exec/{kill_id}/start", body={"Detach": False, "Tty": False},
                    timeout=timeout,
                )
                code = await exit_code_of(self.engine, kill_id, 5.0)
            except EngineNotFound:
                return True  # container gone: so are its processes
            except EngineUnavailable as exc:
                log.warning("terminal kill exec failed, engine unavailable: %s", exc)
                return False
            except EngineError as exc:
                if exc.status == 409:  # container not running: nothing left to kill
                    return True
                log.warning("terminal kill exec failed: %s", exc)
                return False
            if code not in START_FAILURE_CODES:
                return True
        log.warning("terminal kill exec could not run in container %s", self.container_id[:12])
        return False


async def exit_code_of(engine: DockerEngine, exec_id: str, timeout: float) -> int | None:
    """Poll the exec until the engine reports it ended; its exit code, or None."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.01
    while True:
        try:
            info = await engine.get(f"/exec/{exec_id}/json")
        except EngineError:
            return None
        if not info.get("Running"):
            code = info.get("ExitCode")
            return code if isinstance(code, int) else None
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


async def path_exists(engine: DockerEngine, container_id: str, path: str) -> bool | None:
    """Whether `path` exists in the container (HEAD archive: a stat, no exec, no body).

    None when the engine could not tell.
    """
    try:
        await engine.request(
            "HEAD", f"/containers/{quote(container_id, safe='')}/archive", params={"path": path},
            timeout=10,
        )
    except EngineNotFound:
        return False
    except EngineError:
        return None
    return True
