"""The /ws/logs gateway's `subscribe` handler, with plain calls (no engine is reached)."""

import asyncio

import pytest

import helpers
from fakes import Sink
from openpanel_ws.gateways.base import Session
from openpanel_ws.gateways.logs import LogsGateway
from openpanel_ws.gateways.logs.audience import Audience
from openpanel_ws.gateways.logs.fanout import LogsState
from openpanel_ws.gateways.logs.filters import EventFilter
from openpanel_ws.outbound import ClientWriter, WriteScheduler
from openpanel_ws.protocol import ErrorCode, ProtocolError
from openpanel_ws.sendqueue import QueueLimits
from openpanel_ws.services import Services

SCHEDULER = WriteScheduler(QueueLimits(1000, 10_000_000), 1.0)


def session() -> Session[LogsState]:
    sink = Sink()
    writer = ClientWriter(sink.ws, sink, SCHEDULER)
    sink.peer = writer
    return Session("c1", writer)


async def test_a_refused_subscribe_changes_nothing() -> None:
    """A `subscribe` refused because a replay is in progress leaves the filter alone
    (validate everything before changing anything)."""
    gateway = LogsGateway(Services.from_settings(helpers.make_settings()))
    s = session()
    gateway.clients.add(s, Audience(frozenset({"local"}), True))
    gateway.clients.set_filter(s, EventFilter.parse({"type": ["volume"]}))
    assert gateway.clients.begin_replay(s) is not None  # a replay is in progress
    assert s.state is not None
    before = s.state.filter
    with pytest.raises(ProtocolError) as refused:
        await gateway.dispatch(s, {"type": "subscribe", "filters": {"type": ["network"]},
                                   "since": 1})
    assert refused.value.code is ErrorCode.INVALID_MESSAGE
    assert s.state.filter is before
    gateway.clients.finish_replay(s, [])
    s.close(1000, "")
    await asyncio.wait_for(s.writer.wait_closed(), 2)
    await gateway.services.close()
