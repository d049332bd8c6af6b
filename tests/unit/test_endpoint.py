"""`ServerConnection.apply`, the one place where the actions of `Connection` are carried
out: every action, from a received message and from the timer wheel alike (fake socket:
tests/fakes.py; the real one: tests/e2e/test_lifecycle.py)."""

import asyncio
import json
from typing import Any

from fakes import Sink
from helpers import loop_turns
from helpers import make_settings as settings_with
from openpanel_ws.auth import Principal
from openpanel_ws.clock import TimerWheel
from openpanel_ws.connection import Authenticated, Close, Dispatch, PingFrame, Send
from openpanel_ws.endpoint import Endpoint, ServerConnection
from openpanel_ws.gateways.base import Gateway, Session
from openpanel_ws.origins import RefusedOrigins
from openpanel_ws.outbound import OP_PING, ClientWriter, WriteScheduler
from openpanel_ws.sendqueue import QueueLimits


class Recorder(Gateway[Any]):
    name = "containers"  # its settings (rate limit) apply

    def __init__(self, services: Any) -> None:
        super().__init__(services)
        self.calls: list[Any] = []

    async def on_authenticated(self, session: Session[Any]) -> None:
        self.calls.append(("auth", session.principal))

    async def on_principal_changed(self, session: Session[Any]) -> None:
        self.calls.append(("changed", session.principal))

    async def dispatch(self, session: Session[Any], message: Any) -> None:
        self.calls.append(("dispatch", message["type"]))


class Services:
    def __init__(self) -> None:
        self.settings = settings_with()
        self.verifier = self

    def verify(self, token: str) -> Principal:
        return Principal(token)


class Request:
    remote = "127.0.0.1"
    protocol = object()
    match_info: dict[str, str] = {}  # noqa: RUF012 - a plain /ws/* route names no host


def connection() -> tuple[ServerConnection, Recorder, Sink, TimerWheel]:
    services: Any = Services()
    gateway = Recorder(services)
    scheduler = WriteScheduler(QueueLimits(100, 100_000), 1.0)
    wheel = TimerWheel()
    endpoint = Endpoint(gateway, services, set(), scheduler, wheel, RefusedOrigins())
    sink = Sink()
    writer = ClientWriter(sink.ws, sink, scheduler)  # type: ignore[arg-type]
    return ServerConnection(endpoint, sink.ws, writer, Request()), gateway, sink, wheel  # type: ignore[arg-type]


async def test_apply_carries_out_send_ping_dispatch_and_close_in_order() -> None:
    conn, gateway, sink, wheel = connection()
    conn.apply([Send({"type": "a"}), PingFrame(), Dispatch({"type": "req"}), Close(4002, "bye")])
    await loop_turns(3)
    assert [json.loads(f)["type"] for f, op in zip(sink.frames, sink.opcodes, strict=True)
            if op == 1] == ["a"]
    assert OP_PING in sink.opcodes
    assert sink.closed == (4002, b"bye")
    assert conn.session.closed
    assert gateway.calls == [("dispatch", "req")]
    await conn.lanes.close()
    wheel.stop()


async def test_authenticated_sets_the_principal_and_its_hook_runs_before_later_dispatches() -> None:
    conn, gateway, _sink, wheel = connection()
    principal = Principal("u1")
    conn.apply([Authenticated(principal, first=True)])
    assert conn.session.principal is principal
    assert gateway.calls == []  # the hook is the read loop's to await, before the next message
    hook = conn.take_hook()
    assert hook is not None and conn.take_hook() is None
    await hook
    conn.apply([Authenticated(Principal("u1", roles=frozenset({"viewer"})), first=False)])
    hook = conn.take_hook()
    assert hook is not None and conn.take_hook() is None
    await hook  # as the read loop does, before it reads (and dispatches) the next message
    conn.apply([Dispatch({"type": "req"})])
    await loop_turns(3)
    assert gateway.calls == [("auth", principal), ("changed", Principal("u1", roles=frozenset({"viewer"}))),
                             ("dispatch", "req")]
    await conn.lanes.close()
    wheel.stop()


async def test_the_timer_wheel_fires_through_the_same_apply() -> None:
    conn, _gateway, sink, wheel = connection()
    now = conn.conn.next_deadline()  # auth timeout and first heartbeat: whichever is first
    assert conn.fire(now + 3600) is False  # auth timed out: error, then close 4001
    await loop_turns(3)
    assert sink.closed is not None and sink.closed[0] == 4001
    assert json.loads(sink.frames[-1])["code"] == "AUTH_TIMEOUT"
    wheel.stop()
    await asyncio.sleep(0)
