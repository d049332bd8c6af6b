"""Client subcommands of `openpanel-ws`: logs, stats, events, metrics, exec, hosts.

Like the Docker CLI, but through the gateway. Errors are one line on stderr and a
non-zero exit status, never a traceback (`openpanel_ws.client.cli_runner`); `exec` is
in `openpanel_ws.client.cli_exec`, the pure parts in `openpanel_ws.client.cli_text`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final, TypeVar

from openpanel_ws.client import StatsSample, SubscriptionEnded
from openpanel_ws.client.cli_exec import add_exec_parser
from openpanel_ws.client.cli_runner import (
    StatusWriter,
    common_options,
    host_option,
    make_client,
    print_json,
    run_command,
)
from openpanel_ws.client.cli_text import (
    UsageError,
    event_json,
    format_event,
    hosts_table,
    metrics_table,
    since_option,
    split_target,
    stats_table,
    tail_option,
)
from openpanel_ws.protocol import DEFAULT_INTERVAL_MS, MAX_INTERVAL_MS, MIN_INTERVAL_MS

__all__ = ["parse_filters", "register"]

T = TypeVar("T")


# --- commands ---------------------------------------------------------------------------


async def cmd_logs(args: argparse.Namespace, status: StatusWriter) -> int:
    tail = tail_option(args.tail)
    since = since_option(args.since) if args.since else None
    host, container = split_target(args.container, args.host)
    async with make_client(args, status) as client:
        try:
            async for line in client.logs(container, tail=tail, since=since, follow=args.follow,
                                          host=host):
                out = sys.stderr if line.stream == "stderr" else sys.stdout
                out.write(f"{line.timestamp} {line.data}\n" if args.timestamps else line.data + "\n")
                out.flush()
        except SubscriptionEnded as exc:  # e.g. removed: the end of the logs, not a failure
            status(str(exc))
    return 0


async def _until_ended(items: AsyncIterator[T], status: StatusWriter) -> AsyncIterator[T]:
    try:
        async for item in items:
            yield item
    except SubscriptionEnded as exc:
        status(str(exc))


NO_STREAM_WAIT = 10.0
CLEAR = "\x1b[H\x1b[2J"


async def cmd_stats(args: argparse.Namespace, status: StatusWriter) -> int:
    table = sys.stdout.isatty() and not args.json
    wanted = list(dict.fromkeys(args.containers))
    targets = {name: split_target(name, args.host) for name in wanted}
    latest: dict[str, StatsSample | None] = dict.fromkeys(wanted)

    def shown_as(sample: StatsSample) -> str:
        """The argument a sample answers (`web` or `prod-2/web`)."""
        return next((name for name, (host, c) in targets.items() if c == sample.container_id
                     and (host is None or sample.host is None or host == sample.host)),
                    sample.container_id)

    def draw() -> None:
        sys.stdout.write(("" if args.no_stream else CLEAR) + stats_table(latest) + "\n")
        sys.stdout.flush()

    async with make_client(args, status) as client, contextlib.AsyncExitStack() as stack:
        samples = client.stats(*targets.values(), interval=args.interval)
        stack.push_async_callback(samples.aclose)
        try:
            # A stopped container sends no samples: --no-stream does not wait forever.
            async with asyncio.timeout(NO_STREAM_WAIT if args.no_stream else None):
                async for sample in _until_ended(samples, status):
                    if not table:
                        print_json({"containerId": sample.container_id,
                                     **({"host": sample.host} if sample.host else {}),
                                     "timestamp": sample.timestamp, "stats": sample.raw})
                    latest[shown_as(sample)] = sample
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


async def cmd_events(args: argparse.Namespace, status: StatusWriter) -> int:
    filters = parse_filters(args.filter or [])
    async with make_client(args, status) as client:
        client.host, client.host_route = None, args.host  # one host: its own route
        async for item in client.events(filters or None, host_status=True):
            if args.json:
                print_json(event_json(item))
            else:
                sys.stdout.write(format_event(item) + "\n")
                sys.stdout.flush()
    return 0


async def cmd_metrics(args: argparse.Namespace, status: StatusWriter) -> int:
    table = sys.stdout.isatty() and not args.json
    async with make_client(args, status) as client:
        async for m in client.metrics(interval=args.interval, host=args.host):
            if table:
                sys.stdout.write(("" if args.no_stream else CLEAR) + metrics_table(m) + "\n")
                sys.stdout.flush()
            else:
                print_json({"timestamp": m.timestamp, "system": m.raw})
            if args.no_stream:
                break
    return 0


async def cmd_hosts(args: argparse.Namespace, status: StatusWriter) -> int:
    async with make_client(args, status) as client:
        hosts = await client.hosts()
    if args.json:
        for h in hosts:
            print_json(h)
    else:
        sys.stdout.write(hosts_table(hosts) + "\n")
    return 0


# --- parser -------------------------------------------------------------------------------


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
    p.add_argument("container", metavar="[HOST/]CONTAINER", help="container name or id")
    p.add_argument("-f", "--follow", action="store_true", help="follow the log output")
    p.add_argument("--tail", default="all", help="lines from the end to show first (N or all)")
    p.add_argument("--since", help="RFC 3339 time, unix seconds, or a duration like 10m")
    p.add_argument("-t", "--timestamps", action="store_true", help="prefix each line with its time")
    common_options(p)
    host_option(p)
    p.set_defaults(func=run_command(cmd_logs))

    p = subparsers.add_parser("stats", help="live resource usage of containers (like docker stats)")
    p.add_argument("containers", nargs="+", metavar="[HOST/]CONTAINER")
    host_option(p)
    _sampling(p)
    common_options(p)
    p.set_defaults(func=run_command(cmd_stats))

    p = subparsers.add_parser("events", help="Docker events and system logs (like docker events)")
    p.add_argument("-f", "--filter", action="append", metavar="KEY=VALUE",
                   help="only matching events: type, event, container, image, label, ... (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    host_option(p, "only the events of this Docker host (default: every host the token may see)")
    common_options(p)
    p.set_defaults(func=run_command(cmd_events))

    p = subparsers.add_parser("metrics", help="machine CPU, memory, disk and network")
    _sampling(p)
    host_option(p, "metrics of this Docker host's machine (only a host on the gateway's machine)")
    common_options(p)
    p.set_defaults(func=run_command(cmd_metrics))

    p = subparsers.add_parser("hosts", help="the gateway's Docker hosts and their state")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    common_options(p)
    p.set_defaults(func=run_command(cmd_hosts))
    add_exec_parser(subparsers)
