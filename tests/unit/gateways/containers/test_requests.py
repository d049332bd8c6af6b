"""Validation of /ws/containers requests (no engine involved)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

import helpers
from fakes import Sink
from openpanel_ws.auth import Principal
from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.gateways.base import Session
from openpanel_ws.gateways.containers.gateway import ContainersGateway, ended_message
from openpanel_ws.gateways.containers.requests import DEFAULT_TAIL, parse_tail
from openpanel_ws.hosts.config import HostConfig
from openpanel_ws.outbound import ClientWriter, WriteScheduler
from openpanel_ws.protocol import ErrorCode, ProtocolError, optional_since
from openpanel_ws.sendqueue import QueueLimits
from openpanel_ws.services import Services


@pytest.mark.parametrize(
    ("value", "expected"), [(None, DEFAULT_TAIL), (0, 0), (5, 5), (7.0, 7), ("all", "all")])
def test_tail(value: Any, expected: Any) -> None:
    assert parse_tail({"tail": value}) == expected


@pytest.mark.parametrize("value", [-1, 1.5, "5", "ALL", True, [], {}, 10**7])
def test_bad_tail(value: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_tail({"tail": value})
    assert (info.value.code, info.value.field) == (ErrorCode.INVALID_MESSAGE, "tail")


@pytest.mark.parametrize(
    ("value", "nanos"),
    [
        (None, None),
        (1795738074, 1795738074_000000000),
        (1795738074.5, 1795738074_500000000),
        ("1795738074.000000001", 1795738074_000000001),
        ("2026-11-27T00:07:54.913594017Z", 1795738074_913594017),
        ("2026-11-27T01:07:54+01:00", 1795738074_000000000),
    ],
)
def test_since(value: Any, nanos: int | None) -> None:
    assert optional_since({"since": value}) == nanos


@pytest.mark.parametrize("value", [
    "yesterday", "", -1, "-5", "nan", "inf", float("nan"), float("inf"), True, [1], "2026-13-01T00:00:00Z"])
def test_bad_since(value: Any) -> None:
    with pytest.raises(ProtocolError) as info:
        optional_since({"since": value})
    assert (info.value.code, info.value.field) == (ErrorCode.INVALID_MESSAGE, "since")


def test_ended_message() -> None:
    msg = ended_message("stats", "web")
    assert msg["type"] == "subscription_ended"
    assert (msg["subscription"], msg["containerId"], msg["reason"]) == ("stats", "web", "container_removed")
    assert "host" not in msg
    assert ended_message("logs", "web", "permission", "h1")["host"] == "h1"


# --- the gateway's handlers, before any engine call ------------------------------------


def gateway_and_session() -> tuple[ContainersGateway, Session[Any], Sink]:
    gateway = ContainersGateway(Services.from_settings(helpers.make_settings()))
    sink = Sink()
    writer = ClientWriter(sink.ws, sink, WriteScheduler(QueueLimits(100, 1_000_000), 1.0))
    sink.peer = writer
    session: Session[Any] = Session("c1", writer)
    session.principal = Principal("tester")
    return gateway, session, sink


async def test_unsubscribing_what_was_never_subscribed_makes_no_state() -> None:
    gateway, session, sink = gateway_and_session()
    for kind in ("logs", "stats"):
        await gateway.dispatch(session, {"type": f"unsubscribe_{kind}", "containerId": "web"})
    await gateway.on_disconnect(session)
    assert session.state is None  # an idle connection holds nothing
    session.close(1000, "")
    await asyncio.wait_for(session.writer.wait_closed(), 2)
    assert [orjson.loads(f) for f in sink.frames] == [
        {"type": "unsubscribed_logs", "containerId": "web", "host": "local"},
        {"type": "unsubscribed_stats", "containerId": "web", "host": "local"},
    ]
    await gateway.services.close()


@pytest.mark.parametrize(("message", "field"), [
    ({"type": "subscribe_logs"}, "containerId"),
    ({"type": "subscribe_logs", "containerId": "web", "tail": -1}, "tail"),
    ({"type": "subscribe_logs", "containerId": "web", "since": "yesterday"}, "since"),
    ({"type": "subscribe_stats", "containerId": "web", "interval": 10}, "interval"),
    ({"type": "unsubscribe_stats", "containerId": ""}, "containerId"),
])
async def test_a_bad_request_names_its_field_and_changes_nothing(message: Any, field: str) -> None:
    gateway, session, _ = gateway_and_session()
    with pytest.raises(ProtocolError) as info:
        await gateway.dispatch(session, message)
    assert (info.value.code, info.value.field) == (ErrorCode.INVALID_MESSAGE, field)
    assert session.state is None or not session.state.subs
    assert gateway.upstream_counts() == {"logs": 0, "stats": 0}
    await gateway.services.close()


# --- hosts ----------------------------------------------------------------------------


def two_host_gateway(principal: Principal, route: str | None = None
                     ) -> tuple[ContainersGateway, Session[Any], Sink]:
    # `far`'s engine socket does not exist: any request that reached it would fail with
    # DOCKER_UNAVAILABLE, so the answers below show that no engine was asked.
    hosts = (HostConfig("local", EngineTarget("unix:///var/run/docker.sock")),
             HostConfig("far", EngineTarget("unix:///nonexistent/docker.sock")))
    gateway = ContainersGateway(Services.from_settings(helpers.make_settings(hosts=hosts)))
    sink = Sink()
    writer = ClientWriter(sink.ws, sink, WriteScheduler(QueueLimits(100, 1_000_000), 1.0))
    sink.peer = writer
    session: Session[Any] = Session("c1", writer, host=route)
    session.principal = principal
    return gateway, session, sink


async def test_unsubscribe_names_the_host_it_was_about() -> None:
    gateway, session, sink = two_host_gateway(Principal("tester"))
    await gateway.dispatch(session, {"type": "unsubscribe_logs", "containerId": "web",
                                     "host": "far"})
    session.close(1000, "")
    await asyncio.wait_for(session.writer.wait_closed(), 2)
    assert [orjson.loads(f) for f in sink.frames] == [
        {"type": "unsubscribed_logs", "containerId": "web", "host": "far"}]
    await gateway.services.close()


@pytest.mark.parametrize(("principal", "route", "message", "code", "context"), [
    (Principal("t", host_scopes=("loc*",)), None, {"host": "far"}, ErrorCode.PERMISSION_DENIED,
     {"containerId": "web", "host": "far"}),
    (Principal("t", host_scopes=("loc*",)), None, {"host": "nowhere"},
     ErrorCode.PERMISSION_DENIED, {"containerId": "web", "host": "nowhere"}),
    (Principal("t", host_scopes=("loc*",)), "far", {}, ErrorCode.PERMISSION_DENIED,
     {"containerId": "web", "host": "far"}),
    (Principal("t"), None, {"host": "nowhere"}, ErrorCode.INVALID_MESSAGE,
     {"containerId": "web", "host": "nowhere"}),
    (Principal("t"), "far", {"host": "local"}, ErrorCode.INVALID_MESSAGE,
     {"containerId": "web", "host": "local"}),
    (Principal("t"), None, {"host": ["far"]}, ErrorCode.INVALID_MESSAGE, {"containerId": "web"}),
])
async def test_the_host_check_comes_first_and_asks_no_engine(
        principal: Principal, route: str | None, message: dict[str, Any], code: ErrorCode,
        context: dict[str, Any]) -> None:
    gateway, session, _ = two_host_gateway(principal, route)
    for kind in ("subscribe_logs", "subscribe_stats", "unsubscribe_stats"):
        with pytest.raises(ProtocolError) as info:
            await gateway.dispatch(session, {"type": kind, "containerId": "web", **message})
        assert (info.value.code, info.value.context) == (code, context)
    assert session.state is None or not session.state.subs
    assert gateway.upstream_counts() == {"logs": 0, "stats": 0}
    await gateway.services.close()


def test_lanes_are_per_kind_host_and_container() -> None:
    gateway, _, _ = two_host_gateway(Principal("t"))
    lanes = {gateway.lane({"type": t, "containerId": "web", **h})
             for t in ("subscribe_logs", "subscribe_stats")
             for h in ({}, {"host": "local"}, {"host": "far"})}
    assert len(lanes) == 6
    assert gateway.lane({"type": "unsubscribe_logs", "containerId": "web", "host": "far"}) in lanes
