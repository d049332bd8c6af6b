"""Client subcommands of `openpanel-ws`: logs, stats, events, metrics, exec.

Like the Docker CLI, but through the gateway. Errors are one line on stderr and a
non-zero exit status, never a traceback.
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
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, Final, TextIO, TypeVar

import orjson

from openpanel_ws.client import (
    DEFAULT_URL,
    BackoffPolicy,
    ClientError,
    OpenPanelClient,
    StatsSample,
    SubscriptionEnded,
    TerminalSession,
)
from openpanel_ws.client.cli_text import (
    UsageError,
    event_json,
    format_event,
    metrics_table,
    since_option,
    stats_table,
    tail_option,
)
from openpanel_ws.client.messages import InvalidMessage
from openpanel_ws.protocol import DEFAULT_INTERVAL_MS, MAX_INTERVAL_MS, MIN_INTERVAL_MS

__all__ = [
    "PROG",
    "TOKEN_ENV",
    "URL_ENV",
    "parse_filters",
    "register",
    "take_trailing_options",
]

T = TypeVar("T")

TOKEN_ENV = "OPENPANEL_WS_TOKEN"
URL_ENV = "OPENPANEL_WS_URL"
PROG = "openpanel-ws"


# --- plumbing -----------------------------------------------------------------------


def _print_json(obj: Any, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    stream.write(orjson.dumps(obj).decode() + "\n")
    stream.flush()


class _Status:
    """Notices and errors on stderr, each on a line of its own: after output that did
    not end a line on the same terminal, a newline goes first (\\r\\n while the terminal
    is in raw mode)."""

    def __init__(self) -> None:
        self.raw = False
        self.line_open = False  # the last output written did not end with a newline
        self.signal: int | None = None  # SIGINT/SIGTERM that ended the command

    def output(self, data: bytes) -> None:
        if data:
            self.line_open = not data.endswith(b"\n")

    def fresh_line(self) -> None:
        if self.line_open and _same_terminal():
            sys.stderr.write("\r\n" if self.raw else "\n")
        self.line_open = False

    def __call__(self, text: str) -> None:
        self.fresh_line()
        sys.stderr.write(f"{PROG}: {text}" + ("\r\n" if self.raw else "\n"))
        sys.stderr.flush()


def _same_terminal() -> bool:
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.isatty(sys.stdout.fileno()) and os.isatty(sys.stderr.fileno())
    return False


def _client(args: argparse.Namespace, status: _Status, *, wait: bool = False) -> OpenPanelClient:
    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise UsageError(f"no token: pass --token or set {TOKEN_ENV}")
    return OpenPanelClient(
        args.url, token,
        backoff=BackoffPolicy(base=args.reconnect_base, cap=args.reconnect_max),
        wait_for_server=wait, on_status=status,
    )


Command = Callable[[argparse.Namespace, "_Status"], Coroutine[Any, Any, int]]


def _run(coro_fn: Command) -> Callable[[argparse.Namespace], int]:
    async def main(args: argparse.Namespace, status: _Status) -> int:
        # Ctrl-C and SIGTERM end the command the same way: context managers run, so a
        # raw terminal is restored and the gateway sees a clean close. Exit 128 + signal
        # (130 for Ctrl-C), as the Docker CLI.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop(sig: int) -> None:
            status.signal = status.signal or sig
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig)
        try:
            return await coro_fn(args, status)
        except asyncio.CancelledError:
            if status.signal is None:
                raise
            if status.signal == signal.SIGINT and _isatty(sys.stderr):
                sys.stderr.write("\n")  # the shell prompt is not glued to the echoed ^C
                sys.stderr.flush()
            return 128 + status.signal
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def command(args: argparse.Namespace) -> int:
        status = _Status()
        try:
            return asyncio.run(main(args, status))
        except UsageError as exc:
            status(str(exc))
            return 2
        except InvalidMessage as exc:  # an argument the server refused before streaming
            status(str(exc))
            return 2
        except ClientError as exc:
            status(str(exc))
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            # stdout went away (`| head`): not an error; keep the interpreter quiet too.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    return command


# --- commands ---------------------------------------------------------------------------


async def cmd_logs(args: argparse.Namespace, status: _Status) -> int:
    tail = tail_option(args.tail)
    since = since_option(args.since) if args.since else None
    async with _client(args, status) as client:
        try:
            async for line in client.logs(args.container, tail=tail, since=since, follow=args.follow):
                out = sys.stderr if line.stream == "stderr" else sys.stdout
                out.write(f"{line.timestamp} {line.data}\n" if args.timestamps else line.data + "\n")
                out.flush()
        except SubscriptionEnded as exc:  # e.g. removed: the end of the logs, not a failure
            status(str(exc))
    return 0


async def _until_ended(items: AsyncIterator[T], status: _Status) -> AsyncIterator[T]:
    try:
        async for item in items:
            yield item
    except SubscriptionEnded as exc:
        status(str(exc))


NO_STREAM_WAIT = 10.0
CLEAR = "\x1b[H\x1b[2J"


async def cmd_stats(args: argparse.Namespace, status: _Status) -> int:
    table = sys.stdout.isatty() and not args.json
    wanted = list(dict.fromkeys(args.containers))
    latest: dict[str, StatsSample | None] = dict.fromkeys(wanted)

    def draw() -> None:
        sys.stdout.write(("" if args.no_stream else CLEAR) + stats_table(latest) + "\n")
        sys.stdout.flush()

    async with _client(args, status) as client, contextlib.AsyncExitStack() as stack:
        samples = client.stats(*wanted, interval=args.interval)
        stack.push_async_callback(samples.aclose)
        try:
            # A stopped container sends no samples: --no-stream does not wait forever.
            async with asyncio.timeout(NO_STREAM_WAIT if args.no_stream else None):
                async for sample in _until_ended(samples, status):
                    if not table:
                        _print_json({"containerId": sample.container_id,
                                     "timestamp": sample.timestamp, "stats": sample.raw})
                    latest[sample.container_id] = sample
                    if table and not args.no_stream:
                        draw()
                    if args.no_stream and all(latest.values()):
                        break
        except TimeoutError:
            missing = ", ".join(c for c, v in latest.items() if v is None)
            status(f"no sample from {missing} within {NO_STREAM_WAIT:g}s (not running?)")
        if table and args.no_stream:
            draw()
    return 0


def parse_filters(items: Sequence[str]) -> dict[str, list[str]]:
    """`--filter key=value` (repeatable), as `docker events --filter`."""
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"--filter: expected KEY=VALUE, got {item!r}")
        filters.setdefault(key.strip(), []).append(value.strip())
    return filters


async def cmd_events(args: argparse.Namespace, status: _Status) -> int:
    filters = parse_filters(args.filter or [])
    async with _client(args, status) as client:
        async for item in client.events(filters or None):
            if args.json:
                _print_json(event_json(item))
            else:
                sys.stdout.write(format_event(item) + "\n")
                sys.stdout.flush()
    return 0


async def cmd_metrics(args: argparse.Namespace, status: _Status) -> int:
    table = sys.stdout.isatty() and not args.json
    async with _client(args, status) as client:
        async for m in client.metrics(interval=args.interval):
            if table:
                sys.stdout.write(("" if args.no_stream else CLEAR) + metrics_table(m) + "\n")
                sys.stdout.flush()
            else:
                _print_json({"timestamp": m.timestamp, "system": m.raw})
            if args.no_stream:
                break
    return 0


def _terminal_size() -> tuple[int, int] | None:
    for fd in (sys.stdout.fileno(), sys.stdin.fileno()):
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            if size.columns > 0 and size.lines > 0:
                return size.columns, size.lines
    return None


@contextlib.contextmanager
def _raw_mode(fd: int, status: _Status) -> Iterator[None]:
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


def _isatty(stream: TextIO | None) -> bool:
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return stream is not None and os.isatty(stream.fileno())
    return False


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
                                 "--reconnect-max": "reconnect_max"}


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


async def cmd_exec(args: argparse.Namespace, status: _Status) -> int:
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
    async with _client(args, status) as client:
        session = await client.terminal(
            args.container, shell=args.shell, command=args.command or None, tty=args.tty,
            stdin=args.interactive, cols=size[0] if size else None,
            rows=size[1] if size else None)
        loop = asyncio.get_running_loop()

        def on_winch() -> None:
            new = _terminal_size()
            if new:
                session.resize(*new)

        raw: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if args.tty and args.interactive and stdin_fd is not None:
            raw = _raw_mode(stdin_fd, status)
        elif args.tty and _isatty(sys.stdout):
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


# --- parser -------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get(URL_ENV, DEFAULT_URL),
                   help=f"gateway base URL (default {DEFAULT_URL}; env {URL_ENV})")
    p.add_argument("--token", help=f"JWT (default: env {TOKEN_ENV})")
    p.add_argument("--reconnect-base", type=float, default=1.0, metavar="S",
                   help="first reconnect delay ceiling in seconds (backoff with full jitter)")
    p.add_argument("--reconnect-max", type=float, default=30.0, metavar="S",
                   help="reconnect delay cap in seconds")


INTERVAL_HELP: Final = f"milliseconds between samples (default {DEFAULT_INTERVAL_MS})"


def _interval(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds, got {text!r}") from None
    if not MIN_INTERVAL_MS <= value <= MAX_INTERVAL_MS:
        raise argparse.ArgumentTypeError(f"must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS} ms")
    return value


def _sampling(p: argparse.ArgumentParser) -> None:
    """The options of the two sampling commands (`stats`, `metrics`)."""
    p.add_argument("--interval", type=_interval, help=INTERVAL_HELP)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--no-stream", action="store_true", help="print the first sample and exit")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("logs", help="print a container's logs (like docker logs)")
    p.add_argument("container", help="container name or id")
    p.add_argument("-f", "--follow", action="store_true", help="follow the log output")
    p.add_argument("--tail", default="all", help="lines from the end to show first (N or all)")
    p.add_argument("--since", help="RFC 3339 time, unix seconds, or a duration like 10m")
    p.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its time")
    _common(p)
    p.set_defaults(func=_run(cmd_logs))

    p = subparsers.add_parser("stats", help="live resource usage of containers (like docker stats)")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    _sampling(p)
    _common(p)
    p.set_defaults(func=_run(cmd_stats))

    p = subparsers.add_parser("events", help="Docker events and system logs (like docker events)")
    p.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE",
                   help="only matching events: type, event, container, image, label, ... (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _common(p)
    p.set_defaults(func=_run(cmd_events))

    p = subparsers.add_parser("metrics", help="host CPU, memory, disk and network")
    _sampling(p)
    _common(p)
    p.set_defaults(func=_run(cmd_metrics))

    p = subparsers.add_parser("exec", help="run a command or a shell in a container (like docker exec)")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="keep standard input open (file, pipe, /dev/null or terminal)")
    p.add_argument("-t", "--tty", action="store_true",
                   help="allocate a TTY (raw local terminal, window size follows)")
    p.add_argument("--shell", help="shell to run when no COMMAND is given (server default /bin/sh)")
    p.add_argument("container", help="container name or id")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="command and arguments to run instead of the shell")
    _common(p)
    p.set_defaults(func=_run(cmd_exec))
