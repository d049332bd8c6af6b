"""The connection lifecycle shared by the four gateways, end to end over real sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from aiohttp import web

from helpers import SECRET, RunningServer, eventually, free_port, make_token, scaled
from openpanel_ws import protocol
from openpanel_ws.gateways.base import Gateway, Handler, Session
from openpanel_ws.outbound.frames import OP_TEXT, masked_frame, text_frame
from openpanel_ws.server import create_app, default_gateways
from openpanel_ws.services import Services

ENDPOINTS = ["/ws/containers", "/ws/logs", "/ws/metrics", "/ws/terminal"]
MakeServer = Callable[..., Awaitable[RunningServer]]


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_welcome_then_authenticated_on_every_endpoint(server: RunningServer, path: str) -> None:
    client = await server.connect(path)
    welcome = client.welcome
    assert welcome is not None
    assert welcome["type"] == "connected"
    assert welcome["clientId"].startswith("client-")
    assert welcome["message"] == "Please authenticate within 30 seconds"
    assert welcome["timestamp"].endswith("Z")
    reply = await client.auth(make_token("user-123"))
    assert reply == {"type": "authenticated", "clientId": welcome["clientId"], "userId": "user-123",
                     "timestamp": reply["timestamp"]}
    protocol.parse_timestamp(reply["timestamp"])


async def test_client_ids_are_unique(server: RunningServer) -> None:
    ids = {(await server.connect("/ws/metrics")).welcome["clientId"] for _ in range(5)}  # type: ignore[index]
    assert len(ids) == 5


def _none_token() -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': 'admin', 'role': 'admin'})}."


@pytest.mark.parametrize(
    ("token", "message"),
    [("garbage", "Invalid token"),
     (make_token(secret="another-secret-" + "y" * 30), "Invalid token"),
     (jwt.encode({"sub": "u", "exp": int(time.time()) - 3600}, SECRET, algorithm="HS256"), "Token expired"),
     (_none_token(), "Invalid token"),
     ("", "Invalid token")],
    ids=["garbage", "wrong-secret", "expired", "alg-none", "empty"],
)
async def test_auth_failure_closes_4001(server: RunningServer, token: str, message: str) -> None:
    client = await server.connect("/ws/containers")
    await client.send({"type": "auth", "token": token})
    err = await client.recv()
    assert err == {"type": "error", "code": "AUTH_FAILED", "message": message}
    assert await client.wait_closed() == 4001


async def test_auth_timeout_closes_4001(make_server: MakeServer) -> None:
    srv = await make_server(auth_timeout=0.5)
    client = await srv.connect("/ws/logs")
    assert client.welcome is not None
    assert client.welcome["message"] == "Please authenticate within 0.5 seconds"
    err = await client.recv(timeout=5)
    assert err["code"] == "AUTH_TIMEOUT"
    assert await client.wait_closed() == 4001


async def test_messages_before_auth_are_refused_and_not_processed(server: RunningServer) -> None:
    client = await server.connect("/ws/metrics")
    await client.send({"type": "subscribe", "interval": 1000})
    err = await client.recv()
    assert err["code"] == "AUTH_REQUIRED"
    # nothing was subscribed: after auth, no metrics arrive unasked
    await client.auth()
    assert await client.quiet(1.0, "metrics") == []


async def test_reauth_on_an_open_connection(server: RunningServer) -> None:
    client = await server.connect("/ws/containers", auth=True)
    # A refresh is for the same user (`sub`); another user is refused (test_security.py).
    await client.send({"type": "auth", "token": make_token("tester", ttl_seconds=7200)})
    assert (await client.expect("authenticated"))["userId"] == "tester"
    await client.send({"type": "auth", "token": "bad"})
    assert (await client.expect("error"))["code"] == "AUTH_FAILED"
    assert await client.wait_closed() == 4001


@pytest.mark.parametrize(
    ("frame", "field"),
    [("not json", None), ("[1,2,3]", None), ("42", None), ("{}", "type"), ('{"type": 7}', "type"),
     ('{"type": "definitely_unknown"}', "type"), ('{"type": "auth"}', "token"),
     ('{"type": "auth", "token": 12}', "token")],
)
async def test_invalid_messages_name_the_field_and_keep_the_connection(
    server: RunningServer, frame: str, field: str | None
) -> None:
    client = await server.connect("/ws/containers", auth=True)
    await client.send(frame)
    err = await client.expect("error")
    assert err["code"] == "INVALID_MESSAGE"
    assert err.get("field") == field
    assert "Traceback" not in err["message"]
    await client.send({"type": "ping"})
    assert (await client.expect("pong"))["type"] == "pong"


async def test_binary_frame_is_invalid_message(server: RunningServer) -> None:
    client = await server.connect("/ws/metrics", auth=True)
    await client.ws.send_bytes(b'{"type":"ping"}')
    assert (await client.expect("error"))["code"] == "INVALID_MESSAGE"
    await client.send({"type": "ping"})
    await client.expect("pong")


async def test_oversize_message_closes_1009(make_server: MakeServer) -> None:
    srv = await make_server(max_message_bytes=1024)
    client = await srv.connect("/ws/terminal", auth=True)
    await client.send({"type": "input", "data": "x" * 2000})
    assert await client.wait_closed() == 1009


def is_ping_reply(message: dict[str, Any]) -> bool:
    return message["type"] == "pong" or message.get("code") == "RATE_LIMIT"


async def test_rate_limit_10_per_second_admits_exactly_ten(server: RunningServer) -> None:
    client = await server.connect("/ws/containers")
    start = time.monotonic()
    await client.send({"type": "auth", "token": make_token()})  # the first of the ten
    for _ in range(14):
        await client.send({"type": "ping"})
    elapsed = time.monotonic() - start
    # One reply per ping: a pong, or a RATE_LIMIT error.
    replies = await client.expect_many(None, 14, 10, where=is_ping_reply)
    assert [m for m in await client.quiet(0.3) if is_ping_reply(m)] == []  # and no more
    pongs = [m for m in replies if m["type"] == "pong"]
    limited = [m for m in replies if m.get("code") == "RATE_LIMIT"]
    refilled = int(elapsed * 10)  # tokens that came back while we were sending (0 normally)
    assert len(pongs) == 9 + refilled
    assert len(limited) == 5 - refilled
    assert limited[0] == {"type": "error", "code": "RATE_LIMIT",
                          "message": "Rate limit exceeded. Please slow down."}


async def test_rate_limit_100_per_minute_admits_exactly_a_hundred(server: RunningServer) -> None:
    client = await server.connect("/ws/logs", auth=True)
    for _ in range(120):
        await client.send({"type": "ping"})
    # what the logs gateway pushes on its own is not a reply
    replies = await client.expect_many(None, 120, 20, where=is_ping_reply)
    assert [m for m in await client.quiet(0.3) if is_ping_reply(m)] == []  # and no more
    pongs = sum(m["type"] == "pong" for m in replies)
    limited = sum(m.get("code") == "RATE_LIMIT" for m in replies)
    assert (pongs, limited) == (99, 21)  # auth took the 100th token; refill is 0.6 s per token


async def test_pong_is_exempt_from_the_rate_limit(server: RunningServer) -> None:
    client = await server.connect("/ws/containers", auth=True)
    for _ in range(30):
        await client.send({"type": "pong", "timestamp": protocol.rfc3339()})
    await client.send({"type": "ping"})
    replies = await client.quiet(0.5)
    assert [m["type"] for m in replies if m["type"] != "ping"] == ["pong"]


async def test_flooding_closes_1008(server: RunningServer) -> None:
    client = await server.connect("/ws/terminal", auth=True)
    for _ in range(100):
        try:
            await client.send({"type": "ping"})
        except ConnectionResetError:
            break
    assert await client.wait_closed() == 1008


async def test_server_heartbeat_and_timeout_4002(make_server: MakeServer) -> None:
    srv = await make_server(heartbeat_interval=0.5)
    # autoping=False: this client does not even answer the ping frames
    client = await srv.connect("/ws/metrics", auth=True, autoping=False)
    ping = await client.recv(timeout=3)
    assert ping["type"] == "ping" and ping["timestamp"].endswith("Z")
    # not answering: closed at the next interval
    assert await client.wait_closed(timeout=5) == 4002


async def _answer_pings(client: Any, seconds: float,
                        answer: Callable[[dict[str, Any]], Awaitable[None]]) -> int:
    """Answer every server ping for `seconds`; returns how many came."""
    pings = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = await client.recv(timeout=0.5)
        except TimeoutError:
            continue
        if msg["type"] == "ping":
            pings += 1
            await answer(msg)
    return pings


async def test_answered_heartbeat_keeps_the_connection(make_server: MakeServer) -> None:
    srv = await make_server(heartbeat_interval=0.3)
    client = await srv.connect("/ws/logs", auth=True, autoping=False)

    async def json_pong(ping: dict[str, Any]) -> None:
        await client.send({"type": "pong", "timestamp": ping["timestamp"]})

    assert await _answer_pings(client, 2.0, json_pong) >= 4
    await client.send({"type": "ping"})
    await client.expect("pong")


async def test_protocol_level_pong_answers_the_heartbeat(make_server: MakeServer) -> None:
    srv = await make_server(heartbeat_interval=0.3)
    client = await srv.connect("/ws/metrics", auth=True, autoping=False)

    async def frame_pong(ping: dict[str, Any]) -> None:
        await client.ws.pong(b"")

    assert await _answer_pings(client, 1.5, frame_pong) >= 2
    await client.send({"type": "ping"})
    await client.expect("pong")


async def test_each_json_ping_comes_with_a_ping_frame(make_server: MakeServer) -> None:
    srv = await make_server(heartbeat_interval=0.3)
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(srv.url + "/ws/logs", autoping=False) as ws:
            kinds: list[str] = []
            while len(kinds) < 4:
                msg = await ws.receive(timeout=3)
                if msg.type is aiohttp.WSMsgType.TEXT:
                    kinds.append(orjson.loads(msg.data)["type"])
                elif msg.type is aiohttp.WSMsgType.PING:
                    kinds.append("PING-FRAME")
                    await ws.pong(msg.data)  # answering only the frame is enough
                else:
                    raise AssertionError(f"closed: {msg}")
            assert kinds == ["connected", "ping", "PING-FRAME", "ping"]


async def test_a_client_answering_only_ping_frames_stays_connected(make_server: MakeServer) -> None:
    # What a browser does. autoping=True: aiohttp answers the frames, nobody the JSON.
    srv = await make_server(heartbeat_interval=0.3)
    client = await srv.connect("/ws/metrics", auth=True, autoping=True)
    pings = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            if (await client.recv(timeout=0.3))["type"] == "ping":
                pings += 1
    assert pings >= 3
    await client.send({"type": "ping"})
    await client.expect("pong")


async def test_protocol_level_ping_is_answered(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(server.url + "/ws/logs", autoping=False) as ws:
            await ws.receive()  # welcome
            await ws.ping(b"hello")
            msg = await ws.receive(timeout=3)
            assert msg.type is aiohttp.WSMsgType.PONG
            assert msg.data == b"hello"


@pytest.mark.parametrize(
    ("origin", "allowed", "status"),
    [("https://evil.example", [], 403),
     ("https://panel.example", ["https://panel.example"], 101),
     (None, [], 101)],
)
async def test_origin_check(make_server: MakeServer, origin: str | None, allowed: list[str],
                            status: int) -> None:
    srv = await make_server(allowed_origins=allowed)
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as session:
        if status == 403:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await session.ws_connect(srv.url + "/ws/metrics", headers=headers)
            assert info.value.status == 403
        else:
            async with session.ws_connect(srv.url + "/ws/metrics", headers=headers) as ws:
                assert json.loads((await ws.receive()).data)["type"] == "connected"


async def test_same_origin_passes(server: RunningServer) -> None:
    client = await server.connect("/ws/metrics", headers={"Origin": f"http://127.0.0.1:{server.port}"})
    assert client.welcome is not None


async def test_healthz(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"
    async with aiohttp.ClientSession() as session, session.get(server.url + "/readyz") as resp:
        assert resp.status == 200


async def test_two_hundred_concurrent_clients_each_get_their_pong(server: RunningServer) -> None:
    async def one(i: int) -> str:
        client = await server.connect("/ws/containers", auth=make_token(f"user-{i}"))
        await client.send({"type": "ping"})
        return (await client.expect("pong", timeout=20))["type"]

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert results.count("pong") == 200


# --- the outbound path: a slow client is cut off, the others keep receiving ----------


class FirehoseGateway(Gateway):
    """Test-only gateway: `fire` {count, size} publishes frames encoded once to every client."""

    name = "firehose"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.sessions: set[Session] = set()

    def handlers(self) -> dict[str, Handler]:
        return {"fire": self.fire}

    async def on_authenticated(self, session: Session) -> None:
        self.sessions.add(session)

    async def on_disconnect(self, session: Session) -> None:
        self.sessions.discard(session)

    async def fire(self, session: Session, message: dict[str, Any]) -> None:
        payload = "x" * int(message["size"])
        for seq in range(int(message["count"])):
            frame = text_frame(protocol.encode({"type": "firehose", "seq": seq, "data": payload}))
            for target in list(self.sessions):
                target.send_frame(frame)
            if seq % 50 == 0:
                await asyncio.sleep(0)  # let writers run, like a real upstream would


async def test_a_client_that_stops_reading_is_cut_off_and_others_keep_receiving(
    engine: None,
) -> None:
    from helpers import make_settings

    settings = make_settings(send_queue_max=200, send_queue_max_bytes=1_000_000, send_timeout=2.0)
    settings.rate_limit_firehose = settings.rate_limit_containers  # type: ignore[attr-defined]
    services = Services.from_settings(settings)
    firehose = FirehoseGateway(services)
    app = create_app(settings, gateways=[*default_gateways(services), firehose], services=services)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    srv = RunningServer(settings, app, runner, port)
    try:
        # The slow client: a raw socket that upgrades, authenticates, then never reads
        # (asyncio stops reading from the kernel once its small buffer is full).
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        slow_writer.write(
            f"GET /ws/firehose HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await slow_reader.readuntil(b"\r\n\r\n")
        slow_writer.write(masked_frame(OP_TEXT, json.dumps({"type": "auth", "token": make_token()}).encode()))
        await slow_writer.drain()

        fast = await srv.connect("/ws/firehose", auth=True)
        await eventually(lambda: len(firehose.sessions) == 2)
        count = 3000
        await fast.send({"type": "fire", "count": count, "size": 2000})
        seqs = [m["seq"] for m in await _read_firehose(fast, count)]
        assert seqs == list(range(count))  # the reading client got everything, in order
        await eventually(lambda: len(firehose.sessions) == 1, timeout=10)  # the slow one is gone
        slow_writer.close()
    finally:
        await srv.stop()


async def _read_firehose(client: Any, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < count:
        msg = await client.recv(timeout=20)
        if msg["type"] == "firehose":
            out.append(msg)
    return out



# --- the process: token CLI, SIGTERM -----------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "openpanel_ws", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


async def _cli_async(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`_cli` for async tests: the loop (and the server under test) keeps running."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "openpanel_ws", *args, env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), scaled(60))
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _serve(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "openpanel_ws", "serve", env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _readline(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), scaled(30))).decode()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_token_cli_round_trip(server: RunningServer) -> None:
    rc, out, err = await _cli_async("token", "--sub", "alice", "--role", "admin", "--permission",
                                    "terminal", env={"OPENPANEL_WS_JWT_SECRET": SECRET})
    assert rc == 0, err
    token = out.strip().splitlines()[-1]
    client = await server.connect("/ws/terminal")
    assert (await client.auth(token))["userId"] == "alice"


def test_a_wrong_setting_fails_with_one_line() -> None:
    result = _cli("serve", env={"OPENPANEL_WS_PORT": "not-a-port"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "OPENPANEL_WS_PORT" in result.stderr
    assert "Traceback" not in result.stderr


async def test_sigterm_closes_clients_with_1001_and_exits_0(engine: None, tmp_path: Any) -> None:
    port = free_port()
    env = {**os.environ, "OPENPANEL_WS_JWT_SECRET": SECRET, "OPENPANEL_WS_PORT": str(port),
           "XDG_STATE_HOME": str(tmp_path)}
    proc = await _serve(env)
    try:
        banner = await _readline(proc)
        assert f"ws://127.0.0.1:{port}" in banner
        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(f"http://127.0.0.1:{port}{p}") for p in ENDPOINTS]
            for ws in sockets:
                await ws.receive()
                await ws.send_str(json.dumps({"type": "auth", "token": make_token()}))
                while json.loads((await ws.receive()).data)["type"] != "authenticated":
                    pass
            proc.send_signal(signal.SIGTERM)
            for ws in sockets:
                while True:
                    msg = await ws.receive(timeout=scaled(10))
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break
                assert ws.close_code == 1001
        assert await asyncio.wait_for(proc.wait(), scaled(15)) == 0
    finally:
        await _stop(proc)


async def test_make_run_style_start_prints_a_working_admin_token(engine: None, tmp_path: Any) -> None:
    """The embedded default: no secret configured -> one is created (0600) and reused."""
    port = free_port()
    env = {**os.environ, "OPENPANEL_WS_PORT": str(port), "XDG_STATE_HOME": str(tmp_path)}
    env.pop("OPENPANEL_WS_JWT_SECRET", None)
    for _ in range(2):
        proc = await _serve(env)
        try:
            # stdout is not a terminal: the token goes to a 0600 file, the banner names it
            lines = [await _readline(proc) for _ in range(4)]
            assert any("admin token (24 h): not printed" in line for line in lines), lines
            token = (tmp_path / "openpanel-ws" / "admin-token").read_text().strip()
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(f"http://127.0.0.1:{port}/ws/metrics") as ws:
                    await ws.receive()
                    await ws.send_str(json.dumps({"type": "auth", "token": token}))
                    reply = json.loads((await ws.receive(timeout=scaled(5))).data)
                    assert reply["type"] == "authenticated" and reply["userId"] == "admin"
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.wait(), scaled(15))
    secret_file = tmp_path / "openpanel-ws" / "jwt-secret"
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"


# --- the engine going away and coming back -----------------------------------------


async def test_engine_down_then_back(make_server: MakeServer, tmp_path: Any) -> None:
    """A proxy socket stands in for the engine's: closed = engine down, open = engine back."""
    proxy_path = str(tmp_path / "docker.sock")
    srv = await make_server(docker_host=f"unix://{proxy_path}")
    async with aiohttp.ClientSession() as session:
        async with session.get(srv.url + "/readyz") as resp:
            assert resp.status == 503
            assert "reason" in await resp.json()
        client = await srv.connect("/ws/containers", auth=True)
        await client.send({"type": "subscribe_stats", "containerId": "anything"})
        err = await client.expect("error", timeout=10)
        assert err["code"] == "DOCKER_UNAVAILABLE"
        assert err["containerId"] == "anything"

        proxy = await asyncio.start_unix_server(_forward_to_engine, path=proxy_path)
        try:
            async with session.get(srv.url + "/readyz") as resp:
                assert resp.status == 200
            await client.send({"type": "subscribe_stats", "containerId": "no-such-container-xyz"})
            err = await client.expect("error", timeout=10)
            assert err["code"] == "CONTAINER_NOT_FOUND"
        finally:
            proxy.close()


async def _forward_to_engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_unix_connection("/var/run/docker.sock")
    except OSError:
        writer.close()
        return

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
