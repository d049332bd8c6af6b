"""The shared logs upstream's live delivery, with plain calls (no engine is asked)."""

from __future__ import annotations

import asyncio

from fakes import Sink
from openpanel_ws.engine.client import DockerEngine
from openpanel_ws.engine.logs import ContainerLogLine
from openpanel_ws.gateways.base import Session
from openpanel_ws.gateways.containers.history import HistoryLimits, Turns
from openpanel_ws.gateways.containers.logs import LogSub, LogUpstream
from openpanel_ws.gateways.containers.upstream import ContainersState, UpstreamLinks
from openpanel_ws.gateways.hold import Hold
from openpanel_ws.outbound import ClientWriter, WriteScheduler
from openpanel_ws.protocol import SLOW_CONSUMER_REASON
from openpanel_ws.sendqueue import QueueLimits

SCHEDULER = WriteScheduler(QueueLimits(1000, 10_000_000), 1.0)
HELD = QueueLimits(8, 1_000_000)


def subscriber(upstream: LogUpstream) -> tuple[LogSub, Sink]:
    sink = Sink()
    writer = ClientWriter(sink.ws, sink, SCHEDULER)
    sink.peer = writer
    session: Session[ContainersState] = Session("c1", writer)
    return LogSub(session, "web", ("web",), upstream), sink


def lines(n: int, start: int = 1) -> list[ContainerLogLine]:
    return [ContainerLogLine("stdout", i * 1_000_000_000, f"line {i}")
            for i in range(start, start + n)]


async def test_lines_held_past_the_send_queue_bound_close_with_the_one_reason() -> None:
    upstream = LogUpstream(UpstreamLinks(DockerEngine(), lambda u: None, lambda u: None), "c" * 64,
                           tty=True, max_line=16384, limits=HELD,
                           history=HistoryLimits(1000, 1 << 20, 2, 16), turns=Turns(2, 16))
    held, held_sink = subscriber(upstream)
    live, live_sink = subscriber(upstream)
    held.held = Hold(upstream.limits)  # its history is being fetched
    upstream.subs[held] = None
    upstream.subs[live] = None
    upstream.deliver(lines(HELD.max_frames + 1))
    assert held.session.closed and not live.session.closed
    for sub in (held, live):
        sub.session.close(1000, "")
        await asyncio.wait_for(sub.session.writer.wait_closed(), 2)
    assert held_sink.frames == []  # nothing held was sent
    assert held_sink.closed == (1013, SLOW_CONSUMER_REASON.encode())
    assert len(live_sink.frames) == HELD.max_frames + 1  # the others are not disturbed
