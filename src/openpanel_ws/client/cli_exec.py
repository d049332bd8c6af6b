"""`openpanel-ws exec`: `docker exec [-i] [-t]` through the terminal gateway.

The local side of a remote program: a raw local terminal (-t) whose window size
follows, standard input pumped to the program (-i) at the pace it can be sent, the
output written per stream, and the program's exit status as ours.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import os
import signal
import stat
import sys
from collections.abc import Iterator
from typing import Any, Final

from openpanel_ws.client import TerminalSession
from openpanel_ws.client.cli_runner import (
    StatusWriter,
    common_options,
    host_option,
    isatty,
    make_client,
    run_command,
)
from openpanel_ws.client.cli_text import UsageError, split_target

__all__ = ["LOST_EXIT", "add_exec_parser", "cmd_exec", "take_trailing_options"]


def _terminal_size() -> tuple[int, int] | None:
    for fd in (sys.stdout.fileno(), sys.stdin.fileno()):
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            if size.columns > 0 and size.lines > 0:
                return size.columns, size.lines
    return None


@contextlib.contextmanager
def _raw_mode(fd: int, status: StatusWriter) -> Iterator[None]:
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)
    status.raw = True
    try:
        yield
    finally:
        status.raw = False
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _stdin_fd() -> int | None:
    """Standard input's descriptor, or None when it is closed (`<&-`)."""
    if sys.stdin is None:  # fd 0 was closed at start-up (it may be reused since)
        return None
    try:
        fd = sys.stdin.fileno()
        os.fstat(fd)
    except (OSError, ValueError, AttributeError):
        return None
    return fd


def _pollable(fd: int) -> bool:
    """Pipes, sockets and terminals can be watched by the event loop; regular files and
    devices such as /dev/null cannot (epoll refuses them), they are read in a thread."""
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


async def _pump_stdin(fd: int | None, session: TerminalSession, *, tty: bool) -> None:
    """Standard input -> the program, then (without a TTY) end its input, as a pipe
    into `docker exec -i` does. Text protocol: bytes are decoded as UTF-8."""
    loop = asyncio.get_running_loop()
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    if fd is not None:
        if _pollable(fd):
            # Read in the readiness callback itself: only then is a read sure not to block.
            chunks: asyncio.Queue[bytes] = asyncio.Queue()

            def on_readable() -> None:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    return
                except OSError:
                    chunk = b""
                if not chunk:
                    loop.remove_reader(fd)
                chunks.put_nowait(chunk)

            loop.add_reader(fd, on_readable)
            try:
                while chunk := await chunks.get():
                    session.write(decoder.decode(chunk))
                    loop.remove_reader(fd)  # read no faster than input can be sent
                    await session.drain()
                    loop.add_reader(fd, on_readable)
            finally:
                loop.remove_reader(fd)
        else:
            while chunk := await loop.run_in_executor(None, os.read, fd, 65536):
                session.write(decoder.decode(chunk))
                await session.drain()
    session.write(decoder.decode(b"", final=True))
    if not tty:
        session.eof()


# Options of our own that may also follow the container (`exec web --url …`): taken
# as options until the first word that is not one.
_EXEC_TRAILING_OPTIONS: Final = {"--url": "url", "--token": "token", "--shell": "shell",
                                 "--reconnect-base": "reconnect_base",
                                 "--reconnect-max": "reconnect_max", "--host": "host"}


def take_trailing_options(args: argparse.Namespace) -> None:
    rest = list(args.command)
    while rest:
        word = rest[0]
        if word == "--":
            rest.pop(0)
            break
        name, eq, value = word.partition("=")
        dest = _EXEC_TRAILING_OPTIONS.get(name)
        if dest is None:
            break
        if not eq:
            if len(rest) < 2:
                raise UsageError(f"{name}: expected a value")
            value = rest[1]
            rest.pop(0)
        rest.pop(0)
        if dest.startswith("reconnect"):
            try:
                setattr(args, dest, float(value))
            except ValueError:
                raise UsageError(f"{name}: expected seconds, got {value!r}") from None
        else:
            setattr(args, dest, value)
    args.command = rest


# Exit status when the container went away under the program, as `docker exec`.
LOST_EXIT: Final = 137


@contextlib.contextmanager
def _raw_output(fd: int) -> Iterator[None]:
    """No local output processing (\\n -> \\r\\n) while a remote TTY writes to us."""
    import termios

    saved = termios.tcgetattr(fd)
    mode = list(saved)
    mode[1] &= ~termios.OPOST
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def cmd_exec(args: argparse.Namespace, status: StatusWriter) -> int:
    """`docker exec [-i] [-t] CONTAINER [COMMAND...]` through the gateway.

    -t: a TTY (raw local terminal, window size follows); without it plain bytes, stdout
    and stderr kept apart. -i: standard input goes to the program; without it the
    program gets none. Exit status: the program's.
    """
    take_trailing_options(args)
    stdin_fd = _stdin_fd() if args.interactive else None
    if args.tty and args.interactive and (stdin_fd is None or not os.isatty(stdin_fd)):
        raise UsageError("the input device is not a TTY (drop -t)")
    if args.shell and args.command:
        raise UsageError("--shell and a COMMAND exclude each other")
    size = _terminal_size() if args.tty else None
    host, container = split_target(args.container, args.host)
    async with make_client(args, status) as client:
        session = await client.terminal(
            container, shell=args.shell, command=args.command or None, tty=args.tty,
            stdin=args.interactive, cols=size[0] if size else None,
            rows=size[1] if size else None, host=host)
        loop = asyncio.get_running_loop()

        def on_winch() -> None:
            new = _terminal_size()
            if new:
                session.resize(*new)

        raw: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if args.tty and args.interactive and stdin_fd is not None:
            raw = _raw_mode(stdin_fd, status)
        elif args.tty and isatty(sys.stdout):
            raw = _raw_output(sys.stdout.fileno())  # the remote TTY already wrote \r\n
        feeder: asyncio.Task[None] | None = None
        with raw:
            if args.interactive:
                feeder = loop.create_task(_pump_stdin(stdin_fd, session, tty=args.tty))
            if args.tty:
                loop.add_signal_handler(signal.SIGWINCH, on_winch)
            try:
                async for chunk in session.output():
                    data = chunk.data.encode("utf-8", "replace")
                    out = sys.stderr.buffer if chunk.stream == "stderr" else sys.stdout.buffer
                    out.write(data)
                    out.flush()
                    status.output(data)
            finally:
                if feeder is not None:
                    feeder.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await feeder
                if args.tty:
                    loop.remove_signal_handler(signal.SIGWINCH)
                await session.close()
    if session.container_lost:
        status(f"container '{args.container}' stopped, restarted or was removed during exec")
        return LOST_EXIT
    if session.reason and session.reason != "Process exited":
        status(f"terminal closed: {session.reason}")
        return 1
    return session.exit_code if session.exit_code is not None else 0


def add_exec_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("exec", help="run a command or a shell in a container (like docker exec)")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="keep standard input open (file, pipe, /dev/null or terminal)")
    p.add_argument("-t", "--tty", action="store_true",
                   help="allocate a TTY (raw local terminal, window size follows)")
    p.add_argument("--shell", help="shell to run when no COMMAND is given (server default /bin/sh)")
    p.add_argument("container", metavar="[HOST/]CONTAINER", help="container name or id")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="command and arguments to run instead of the shell")
    host_option(p)
    common_options(p)
    p.set_defaults(func=run_command(cmd_exec))
