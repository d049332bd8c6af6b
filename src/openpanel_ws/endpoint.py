"""One WebSocket route (`Endpoint`) and one socket on it (`ServerConnection`).

An `Endpoint` exists once per gateway route: it accepts (origin check, upgrade) and runs
a `ServerConnection` per socket. The `ServerConnection` owns the aiohttp socket, the
sans-I/O `Connection`, its place in the `TimerWheel`, its lanes and the gateway
`Session`; its one `apply` carries out every `connection.Action`, from the read loop and
from the timer wheel alike (docs/protocol.md "Connection lifecycle", "Heartbeat").
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Coroutine
from typing import Any, assert_never

from aiohttp import WSMessage, WSMsgType, web

from openpanel_ws import protocol
from openpanel_ws.aiohttp_edge import prepare_stream
from openpanel_ws.clock import PING_FRAME, TimerWheel
from openpanel_ws.connection import (
    Action,
    Authenticated,
    Close,
    Connection,
    Dispatch,
    LifecycleConfig,
    PingFrame,
    Send,
    State,
)
from openpanel_ws.gateways.base import Gateway, Session
from openpanel_ws.handshake import HandshakeGuard
from openpanel_ws.origins import RefusedOrigins, origin_allowed, origin_refused
from openpanel_ws.outbound import OP_PONG, ClientWriter, WriteScheduler, control_frame
from openpanel_ws.protocol import CloseCode, ErrorCode, Message, ProtocolError
from openpanel_ws.services import Services

__all__ = [
    "Endpoint",
    "ServerConnection",
    "new_client_id",
]

log = logging.getLogger(__name__)

_client_ids = itertools.count(1)


def new_client_id() -> str:
    # Unique per process; the random part keeps ids from repeating across restarts.
    return f"client-{os.getpid():x}{next(_client_ids):x}-{os.urandom(3).hex()}"


class Endpoint:
    """One gateway's route: what every connection on it shares (settings, lifecycle
    config, the server's write scheduler and timer wheel, the set of open sessions)."""

    def __init__(self, gateway: Gateway[Any], services: Services, clients: set[Session[Any]],
                 scheduler: WriteScheduler, wheel: TimerWheel, refused: RefusedOrigins,
                 guard: HandshakeGuard | None = None) -> None:
        self.gateway = gateway
        self.services = services
        self.settings = settings = services.settings
        self.clients = clients
        self.scheduler = scheduler
        self.wheel = wheel
        self.refused = refused
        self.guard = guard
        self.lifecycle = LifecycleConfig(
            rate_limit=settings.rate_limit_for(gateway.name),
            auth_timeout=settings.auth_timeout,
            heartbeat_interval=settings.heartbeat_interval,
            flood_threshold=settings.flood_threshold,
            flood_window=settings.flood_window,
            jwt_leeway=settings.jwt_leeway,
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Accept (origin check, upgrade), then run the connection to its end."""
        origin = request.headers.get("Origin")
        allowed = self.settings.allowed_origins
        if not origin_allowed(origin, request.host, allowed, request.scheme):
            assert origin is not None
            return origin_refused(request, origin, allowed, self.refused)
        ws = web.WebSocketResponse(
            compress=False,
            autoping=False,  # protocol pongs count as heartbeat answers: handled here
            # The closing handshake is the writer's (docs/protocol.md, "Outbound path").
            autoclose=False,
            # aiohttp refuses a message of exactly max_msg_size: the documented limit is
            # the largest message accepted (docs/protocol.md "Hostile clients").
            max_msg_size=self.settings.max_message_bytes + 1,
        )
        guard = self.guard
        try:
            stream = await prepare_stream(ws, request)
        except (ConnectionError, OSError):
            # The client reset the connection mid-handshake: one throttled line, no traceback.
            if guard is not None:
                guard.note("reset")
            # A plain response: aiohttp's own write of it fails quietly on the dead socket.
            return web.Response(status=400)
        if request.transport is None or request.transport.is_closing():
            if guard is not None:
                guard.note("reset")
            return ws
        if guard is not None:
            guard.upgraded(request.protocol)
        # Every frame of ours is written straight to this transport (docs/protocol.md,
        # "Outbound path"); asyncio sets TCP_NODELAY on accepted TCP sockets.
        await ServerConnection(self, ws, ClientWriter(ws, stream, self.scheduler), request).run()
        return ws

    async def run_guarded(self, session: Session[Any], work: Awaitable[None]) -> None:
        """Run gateway code: a ProtocolError becomes an error message, anything else
        INTERNAL_ERROR; the connection and the server stay up either way."""
        try:
            await work
        except ProtocolError as exc:
            session.send(exc.to_message())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: unexpected error handling a message", self.gateway.name)
            session.error(ErrorCode.INTERNAL_ERROR, protocol.INTERNAL_ERROR_MESSAGE)


class ServerConnection:
    """One WebSocket connection: the socket, its `Connection`, its clock entry in the
    timer wheel (`slot`), its lanes and its `Session`. No task, future or dict of its own
    while idle (docs/bench.md: memory per idle connection)."""

    __slots__ = ("_hook", "conn", "endpoint", "lanes", "peer", "session", "slot", "ws")

    def __init__(self, endpoint: Endpoint, ws: web.WebSocketResponse, writer: ClientWriter,
                 request: web.Request) -> None:
        self.endpoint = endpoint
        self.ws = ws
        client_id = new_client_id()
        self.session: Session[Any] = Session(client_id, writer, request.remote or "",
                                             host=request.match_info.get("host"))
        self.conn = Connection(client_id, endpoint.lifecycle, endpoint.services.verifier.verify,
                               time.monotonic())
        self.lanes = _Lanes(endpoint, self.session)
        self.peer = request.protocol  # the handshake guard's key for this socket
        self.slot = -1  # the timer wheel's slot (-1: not in the wheel)
        # A gateway hook (auth) that `apply` produced: the read loop awaits it before it
        # reads the next message, so no later Dispatch of this connection overtakes it.
        self._hook: Coroutine[Any, Any, None] | None = None

    # --- the one place actions are carried out ---------------------------------------

    def apply(self, actions: list[Action]) -> None:
        session = self.session
        for action in actions:
            match action:
                case Send(message):
                    session.send(message)
                case Close(code, reason):
                    session.close(code, reason)
                case PingFrame():
                    session.send_frame(PING_FRAME)  # right behind its JSON ping
                case Authenticated():
                    self._authenticated(action)
                case Dispatch(message):
                    # Never awaited here: a slow request must not hold up the connection's
                    # other messages. Requests of one lane (e.g. one subscription) stay in order.
                    self.lanes.submit(self.endpoint.gateway.lane(message), message)
                case _:
                    assert_never(action)

    def _authenticated(self, action: Authenticated) -> None:
        endpoint, session = self.endpoint, self.session
        session.principal = action.principal
        if self.slot != -1:
            endpoint.wheel.add(self)  # the token's expiry is a deadline too
        gateway = endpoint.gateway
        if action.first:
            if endpoint.guard is not None:
                endpoint.guard.authenticated(self.peer)
            hook = gateway.on_authenticated(session)
        else:
            # Same user, new claims: what they no longer allow ends now.
            hook = gateway.on_principal_changed(session)
        self._hook = endpoint.run_guarded(session, hook)

    def take_hook(self) -> Coroutine[Any, Any, None] | None:
        """The gateway hook `apply` left to await (auth), once; None if there is none."""
        hook, self._hook = self._hook, None
        return hook

    # --- the timer wheel's entry -------------------------------------------------------

    def next_deadline(self) -> float:
        return self.conn.next_deadline()

    def fire(self, now: float) -> bool:
        """The wheel's call at a deadline; True while the connection still needs its clock."""
        self.apply(self.conn.tick(now))
        return self.conn.state is not State.CLOSED and not self.session.closed

    # --- the socket --------------------------------------------------------------------

    async def run(self) -> None:
        """The read loop, then the end (one coroutine frame per idle connection)."""
        endpoint, session, ws = self.endpoint, self.session, self.ws
        endpoint.clients.add(session)
        session.send(protocol.connected_message(session.client_id, endpoint.settings.auth_timeout))
        endpoint.wheel.add(self)
        try:
            # No local outlives its message: an idle connection must not keep the last one
            # (the auth message holds the token) alive in this frame while it waits.
            while not session.closed:
                msg = await ws.receive()
                if not self.receive(msg):
                    break
                del msg
                hook = self.take_hook()
                if hook is not None:
                    await hook
                del hook
        except (ConnectionError, OSError):
            pass  # the socket went away under us: nothing to report
        finally:
            await self._end()

    def receive(self, msg: WSMessage) -> bool:
        """One message from the socket; False when the read side is done."""
        conn = self.conn
        kind = msg.type
        if kind is WSMsgType.TEXT:
            self.apply(conn.receive_text(msg.data, time.monotonic()))
        elif kind is WSMsgType.BINARY:
            self.apply(conn.receive_binary(time.monotonic()))
        elif kind is WSMsgType.PING:
            conn.receive_ping_frame()
            # In order with our data frames, through the same path (never mid-frame).
            self.session.send_frame(control_frame(OP_PONG, msg.data))
        elif kind is WSMsgType.PONG:
            conn.receive_pong_frame()
        elif kind is WSMsgType.CLOSE:
            self.session.writer.peer_closed(msg.data)
            return False
        else:  # CLOSING, CLOSED, ERROR (1009 is sent by aiohttp itself)
            return False
        return True

    async def _end(self) -> None:
        endpoint, session = self.endpoint, self.session
        writer = session.writer
        writer.reader_done()
        endpoint.wheel.remove(self)
        hook = self.take_hook()
        if hook is not None:
            hook.close()  # never started: the socket ended first (dropped like queued requests)
        # Requests already running finish (bounded by the engine timeout) before the
        # gateway releases the session; queued ones are dropped.
        await self.lanes.close()
        endpoint.clients.discard(session)
        if self.conn.state is State.OPEN or session.principal is not None:
            try:
                await endpoint.gateway.on_disconnect(session)
            except Exception:
                log.exception("%s: on_disconnect failed", endpoint.gateway.name)
        self.conn.close()
        if not writer.closing:
            writer.close(CloseCode.NORMAL, "")
        try:
            await asyncio.wait_for(writer.wait_closed(), endpoint.settings.send_timeout + 1)
        except (TimeoutError, asyncio.CancelledError):
            writer.cancel()


class _Lanes:
    """Serial lanes of one connection: messages of one lane run in arrival order, lanes
    run concurrently (docs/protocol.md "Hostile clients"). The queue map and task set are
    made on the first message: an idle connection holds only this object."""

    __slots__ = ("_closed", "_endpoint", "_queues", "_session", "_tasks")

    def __init__(self, endpoint: Endpoint, session: Session[Any]) -> None:
        self._endpoint = endpoint
        self._session = session
        self._queues: dict[str, deque[Message]] | None = None
        self._tasks: set[asyncio.Task[None]] | None = None
        self._closed = False

    def submit(self, lane: str, message: Message) -> None:
        if self._closed:
            return
        if self._queues is None or self._tasks is None:
            self._queues, self._tasks = {}, set()
        queue = self._queues.get(lane)
        if queue is not None:
            queue.append(message)
            return
        queue = self._queues[lane] = deque([message])
        task = asyncio.get_running_loop().create_task(self._drain(lane, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, lane: str, queue: deque[Message]) -> None:
        endpoint, session = self._endpoint, self._session
        try:
            while queue and not self._closed:
                await endpoint.run_guarded(session, endpoint.gateway.dispatch(session, queue[0]))
                queue.popleft()
        finally:
            if self._queues is not None:
                self._queues.pop(lane, None)

    async def close(self) -> None:
        self._closed = True
        if self._tasks:
            await asyncio.wait(set(self._tasks))
