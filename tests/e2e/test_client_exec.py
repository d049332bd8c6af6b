"""`openpanel-ws exec -it` driven through a real pseudo-terminal, against a real container."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import struct
import termios
import time

from client_support import PYTHON, cli_env, run_cli, ws_url
from helpers import Containers, RunningServer, docker, eventually, make_token, scaled


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _controlling_tty() -> None:
    # Runs in the child after setsid(): the pty becomes its controlling terminal, so
    # the kernel delivers SIGWINCH to it on a resize, as in a real terminal emulator.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyCli:
    """The CLI with a pty as its terminal; we play the user at the master side."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int, slave: int) -> None:
        self.proc = proc
        self.master = master
        self.slave = slave  # kept open to read the terminal mode after the CLI exits
        self.output = bytearray()
        self._seen = 0
        self._data = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._on_readable)

    @classmethod
    async def spawn(cls, *args: str, rows: int = 24, cols: int = 80,
                    env: dict[str, str] | None = None) -> PtyCli:
        master, slave = os.openpty()
        set_size(slave, rows, cols)
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "openpanel_ws", *args, stdin=slave, stdout=slave, stderr=slave,
            env=env or cli_env(), start_new_session=True, preexec_fn=_controlling_tty)
        return cls(proc, master, slave)

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self.master)
        self.output += chunk
        self._data.set()

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    async def expect(self, pattern: bytes, timeout: float = 30.0) -> re.Match[bytes]:
        """Wait for `pattern` (a regex) in the output after what was matched before."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + scaled(timeout)
        while True:
            match = regex.search(self.output, self._seen)
            if match:
                self._seen = match.end()
                return match
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.returncode is not None:
                raise AssertionError(f"no {pattern!r} in output: {bytes(self.output[-800:])!r}")
            self._data.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._data.wait(), min(left, 0.5))

    async def wait(self, timeout: float = 30.0) -> int:
        return await asyncio.wait_for(self.proc.wait(), scaled(timeout))

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


PROMPT = rb"# "


async def test_exec_interactive_shell_resize_ctrl_c_and_exit_code(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run("sleep 3600")
    cli = await PtyCli.spawn("exec", "-it", name, "--url", ws_url(server.url), rows=24, cols=80)
    try:
        before = termios.tcgetattr(cli.slave)
        await cli.expect(PROMPT)
        # the initial window size was applied before the first prompt
        cli.write(b"stty size\r")
        await cli.expect(rb"\r\n24 80\r\n")
        # type a command, see its output
        cli.write(b"echo $((6*7))ok\r")
        await cli.expect(rb"\r\n42ok\r\n")
        # raw mode locally: the remote tty echoes, our pty must not (no doubled echo)
        assert termios.tcgetattr(cli.slave)[3] & termios.ECHO == 0
        # resize: SIGWINCH -> `resize` -> the remote tty has the new size
        set_size(cli.master, 40, 120)

        async def resized() -> bool:
            cli.write(b"stty size\r")
            match = await cli.expect(rb"\r\n(\d+) (\d+)\r\n")
            return match.groups() == (b"40", b"120")

        await eventually(resized, 10, step=0.3, what="the resize reaching the remote terminal")
        # Ctrl-C and arrow keys pass through as bytes: interrupt a long sleep remotely
        cli.write(b"sleep 60\r")
        await eventually(lambda: containers.has_process(name, "sleep 60"), 10, what="sleep 60")
        cli.write(b"\x03")
        cli.write(b"echo after-\x1b[D\x1b[Cint\r")  # left then right arrow: a no-op edit
        await cli.expect(rb"after-int\r\n", timeout=30)
        assert cli.proc.returncode is None
        # the remote shell's exit code becomes the CLI's
        cli.write(b"exit 3\r")
        assert await cli.wait(30) == 3
        # and the local terminal mode is restored
        assert termios.tcgetattr(cli.slave) == before
    finally:
        await cli.close()


async def test_held_key_burst_arrives_complete_without_rate_limit(
        server: RunningServer, containers: Containers) -> None:
    name = await containers.run("sleep 3600")
    cli = await PtyCli.spawn("exec", "-it", name, "--url", ws_url(server.url))
    try:
        await cli.expect(PROMPT)
        cli.write(b"cat > /tmp/burst\r")
        await eventually(lambda: containers.has_process(name, "cat"), 10, what="cat reading")
        keys = bytes(ord("a") + i % 26 for i in range(200))
        started = time.monotonic()
        for i, key in enumerate(keys):  # 200 keystrokes in one second
            cli.write(bytes([key]))
            await asyncio.sleep(max(0.0, started + (i + 1) * 0.005 - time.monotonic()))
        cli.write(b"\r\x04")
        await cli.expect(PROMPT)
        cli.write(b"wc -c < /tmp/burst\r")
        await cli.expect(rb"\r\n\s*201\r\n", timeout=30)
        content = await docker("exec", name, "cat", "/tmp/burst")
        assert content == keys.decode()
        assert b"Rate limit" not in cli.output and b"RATE_LIMIT" not in cli.output
        cli.write(b"exit\r")
        assert await cli.wait(30) == 0
    finally:
        await cli.close()


async def test_exec_errors_are_one_line(server: RunningServer, containers: Containers) -> None:
    url = ws_url(server.url)
    rc, _, err = await run_cli("exec", "-i", "opws-no-such-container-x", "--url", url, stdin=b"")
    assert rc == 1
    assert err.startswith("openpanel-ws: container 'opws-no-such-container-x' not found"), err
    assert err.count("\n") == 1
    name = await containers.run("sleep 3600")
    rc, _, err = await run_cli("exec", "-i", name, "--url", url, stdin=b"",
                               env=cli_env(make_token("viewer", roles=["viewer"])))
    assert rc == 1 and err.startswith("openpanel-ws: permission denied"), err
    rc, _, err = await run_cli("exec", "-it", name, "--url", url, stdin=b"")
    assert rc == 2 and "not a TTY" in err


async def test_exec_piped_script(server: RunningServer, containers: Containers) -> None:
    name = await containers.run("sleep 3600")
    rc, out, err = await run_cli("exec", "-i", name, "--url", ws_url(server.url),
                                 stdin=b"echo piped-$((2+3))\nexit 4\n")
    assert rc == 4, err
    assert "piped-5" in out


async def test_library_terminal_session(server: RunningServer, containers: Containers) -> None:
    from openpanel_ws.client import OpenPanelClient

    name = await containers.run("sleep 3600")
    async with OpenPanelClient(ws_url(server.url), make_token()) as client:
        session = await client.terminal(name, cols=90, rows=30)
        assert session.session_id
        session.write("stty size\n")
        output = ""
        chunks = aiter(session)
        while "30 90" not in output:  # the size given at open applies from the start
            output += await asyncio.wait_for(anext(chunks), scaled(30))
        session.resize(2000, 5)  # clamped to the accepted range, never a session killer
        deadline = time.monotonic() + scaled(30)
        while "5 1000" not in output[output.rfind("30 90"):]:  # the resize applies asynchronously
            assert time.monotonic() < deadline, output[-300:]
            session.write("stty size\n")
            output += await asyncio.wait_for(anext(chunks), scaled(30))
        session.write("exit 5\n")
        output += "".join([chunk async for chunk in chunks])
        assert "5 1000" in output
        assert session.exit_code == 5
        await session.close()
