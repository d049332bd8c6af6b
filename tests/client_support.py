"""Shared pieces of the client's end-to-end tests (no tests here).

The CLI runs as a real subprocess (`python -m openpanel_ws`); servers are either the
in-process fixture or a real `serve` subprocess that a test can kill and restart.
Everything is awaited, never blocking: the in-process server shares the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from helpers import SECRET, eventually, make_token, scaled

PYTHON = sys.executable


def cli_env(token: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPANEL_WS_")}
    env["OPENPANEL_WS_TOKEN"] = make_token() if token is None else token
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def ws_url(http_url: str) -> str:
    return "ws://" + http_url.split("://", 1)[1]


async def run_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
                  timeout: float = 60.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "openpanel_ws", *args, env=env or cli_env(),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), scaled(timeout))
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class CliStream:
    """A long-running CLI command whose stdout is read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, *args: str, env: dict[str, str] | None = None) -> CliStream:
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "openpanel_ws", *args, env=env or cli_env(),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        return cls(proc)

    async def readline(self, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), scaled(timeout))
        if not raw:
            raise EOFError(f"CLI ended (rc={await self.proc.wait()}): {await self.stderr()}")
        line = raw.decode().rstrip("\n")
        self.lines.append(line)
        return line

    async def read_until(self, predicate: object, timeout: float = 60.0) -> list[str]:
        assert callable(predicate)
        deadline = time.monotonic() + timeout  # readline scales what is left
        while True:
            line = await self.readline(max(0.1, deadline - time.monotonic()))
            if predicate(line):
                return self.lines

    async def stderr(self) -> str:
        if self.proc.stderr is None:
            return ""
        with contextlib.suppress(TimeoutError):
            return (await asyncio.wait_for(self.proc.stderr.read(), scaled(5))).decode()
        return ""

    async def stop(self) -> int:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), scaled(10))
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode


class ServerProcess:
    """`openpanel-ws serve` as a real process on a fixed port, to kill and restart."""

    def __init__(self, port: int, state_dir: Path) -> None:
        self.port = port
        self.state_dir = state_dir
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPANEL_WS_")}
        env.update(OPENPANEL_WS_JWT_SECRET=SECRET, XDG_STATE_HOME=str(self.state_dir),
                   PYTHONUNBUFFERED="1")
        return env

    async def start(self, timeout: float = 30.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "openpanel_ws", "serve", "--port", str(self.port), env=self.environment(),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        proc = self.proc

        async def listening() -> bool:
            if proc.returncode is not None:
                raise AssertionError(f"server on port {self.port} exited with {proc.returncode}")
            return await _port_open(self.port)

        await eventually(listening, timeout, step=0.1, what=f"a server listening on port {self.port}")

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def terminate(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), scaled(15))
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), scaled(0.5))
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class EngineProxy:
    """A TCP port in front of the local engine's unix socket: a Docker host the test can
    take down (`stop` closes the port and every connection through it) and bring back."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.socket_path)
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))
