"""How a client command of `openpanel-ws` runs: its client, its notices, its exit status.

A command is an async function of the parsed arguments; `run_command` runs it in its
own event loop, turns Ctrl-C/SIGTERM into a clean end (exit 128 + signal) and every
`ClientError` into one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO

import orjson

from openpanel_ws.client import DEFAULT_URL, BackoffPolicy, ClientError, OpenPanelClient
from openpanel_ws.client.cli_text import UsageError
from openpanel_ws.client.messages import InvalidMessage

__all__ = [
    "HOST_HELP",
    "PROG",
    "TOKEN_ENV",
    "URL_ENV",
    "Command",
    "StatusWriter",
    "cli_token",
    "common_options",
    "host_option",
    "isatty",
    "make_client",
    "print_json",
    "run_command",
]

TOKEN_ENV = "OPENPANEL_WS_TOKEN"
URL_ENV = "OPENPANEL_WS_URL"
PROG = "openpanel-ws"


def print_json(obj: Any, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    stream.write(orjson.dumps(obj).decode() + "\n")
    stream.flush()


class StatusWriter:
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


def make_client(args: argparse.Namespace, status: StatusWriter, *, wait: bool = False) -> OpenPanelClient:
    token = cli_token(args)
    if not (args.reconnect_base > 0 and args.reconnect_max > 0):
        raise UsageError("--reconnect-base and --reconnect-max: expected positive seconds")
    return OpenPanelClient(
        args.url, token,
        backoff=BackoffPolicy(base=args.reconnect_base, cap=args.reconnect_max),
        wait_for_server=wait, on_status=status, host=getattr(args, "host", None),
    )


def cli_token(args: argparse.Namespace) -> str:
    token: str = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise UsageError(f"no token: pass --token or set {TOKEN_ENV}")
    return token


Command = Callable[[argparse.Namespace, StatusWriter], Coroutine[Any, Any, int]]


def run_command(coro_fn: Command) -> Callable[[argparse.Namespace], int]:
    async def main(args: argparse.Namespace, status: StatusWriter) -> int:
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
            if status.signal == signal.SIGINT and isatty(sys.stderr):
                sys.stderr.write("\n")  # the shell prompt is not glued to the echoed ^C
                sys.stderr.flush()
            return 128 + status.signal
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def command(args: argparse.Namespace) -> int:
        status = StatusWriter()
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


def isatty(stream: TextIO | None) -> bool:
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return stream is not None and os.isatty(stream.fileno())
    return False


HOST_HELP = ("Docker host of the gateway (default: its default host); a container may also "
             "be named HOST/CONTAINER, which wins (a container name never contains '/')")


def host_option(p: argparse.ArgumentParser, text: str = HOST_HELP) -> None:
    p.add_argument("--host", metavar="ID", help=text)


def common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get(URL_ENV, DEFAULT_URL),
                   help=f"gateway base URL (default {DEFAULT_URL}; env {URL_ENV})")
    p.add_argument("--token", help=f"JWT (default: env {TOKEN_ENV})")
    p.add_argument("--reconnect-base", type=float, default=1.0, metavar="S",
                   help="first reconnect delay ceiling in seconds (backoff with full jitter)")
    p.add_argument("--reconnect-max", type=float, default=30.0, metavar="S",
                   help="reconnect delay cap in seconds")
