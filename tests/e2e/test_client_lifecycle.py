"""Client lifecycle end to end: auth failures are final, reconnect restores state,
heartbeats are answered. Real CLI / library, real server (in-process or a process)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from client_support import ServerProcess, cli_env, run_cli, ws_url
from helpers import SECOND, RunningServer, eventually, free_port, make_token, scaled
from openpanel_ws.client import (
    AuthenticationError,
    BackoffPolicy,
    ConnectionFailed,
    MetricsSample,
    OpenPanelClient,
)
from openpanel_ws.protocol import parse_timestamp


async def test_bad_token_exits_at_once_with_one_line(server: RunningServer) -> None:
    started = time.monotonic()
    rc, out, err = await run_cli("events", "--url", ws_url(server.url), env=cli_env("not-a-jwt"))
    assert rc != 0
    assert err.strip() == "openpanel-ws: authentication failed: invalid token"
    assert "Traceback" not in err and out == ""
    # no reconnect loop: one connection, refused, done (generous bound for a loaded host)
    assert time.monotonic() - started < 15


async def test_expired_token_says_so(server: RunningServer) -> None:
    expired = make_token(ttl_seconds=-3600)
    for command in (["events"], ["metrics"], ["logs", "whatever", "-f"], ["stats", "x"]):
        rc, _, err = await run_cli(*command, "--url", ws_url(server.url), env=cli_env(expired))
        assert rc == 1, (command, err)
        assert err.strip() == "openpanel-ws: authentication failed: token expired", command


async def test_missing_token_and_unreachable_server_are_one_line_errors() -> None:
    env = cli_env()
    del env["OPENPANEL_WS_TOKEN"]
    rc, _, err = await run_cli("events", env=env)
    assert rc == 2 and err.strip() == "openpanel-ws: no token: pass --token or set OPENPANEL_WS_TOKEN"
    port = free_port()
    rc, _, err = await run_cli("metrics", "--url", f"ws://127.0.0.1:{port}")
    assert rc == 1
    url = f"ws://127.0.0.1:{port}/ws/metrics"
    assert err.strip() == f"openpanel-ws: cannot connect to {url}: connection refused"


async def test_library_auth_failure_is_final(server: RunningServer) -> None:
    calls = 0

    async def token() -> str:
        nonlocal calls
        calls += 1
        return "bad"

    async with OpenPanelClient(ws_url(server.url), token, backoff=BackoffPolicy(base=0.05)) as client:
        with pytest.raises(AuthenticationError) as info:
            await asyncio.wait_for(anext(client.metrics()), scaled(30))
    assert info.value.code == "AUTH_FAILED"
    # "Never retried" is an absence: a window ten times the retry back-off for a retry to show.
    await asyncio.sleep(0.5 * SECOND)
    assert calls == 1  # never retried


async def test_library_fails_fast_only_when_asked() -> None:
    port = free_port()
    async with OpenPanelClient(f"ws://127.0.0.1:{port}", make_token(), wait_for_server=False) as client:
        with pytest.raises(ConnectionFailed, match="connection refused"):
            await asyncio.wait_for(anext(client.metrics()), scaled(30))


async def test_library_reconnects_reauthenticates_and_restores_the_subscription(tmp_path: Path) -> None:
    """Kill the server, start it again on the same port: the same iterator goes on,
    with a fresh token from the callable, and without any new subscribe from the user."""
    server = ServerProcess(free_port(), tmp_path)
    await server.start()
    tokens = 0
    statuses: list[str] = []

    async def token() -> str:
        nonlocal tokens
        tokens += 1
        return make_token(f"user-{tokens}")

    try:
        async with OpenPanelClient(server.url, token, backoff=BackoffPolicy(base=0.2, cap=2.0),
                                   on_status=statuses.append) as client:
            samples = client.metrics(interval=500)
            first = await asyncio.wait_for(anext(samples), scaled(30))
            assert isinstance(first, MetricsSample)
            await server.kill()
            restarted_at = time.time()
            await eventually(lambda: any("reconnecting" in s for s in statuses), 30,
                             what="the client reconnecting")
            await server.start()
            while True:
                sample = await asyncio.wait_for(anext(samples), scaled(60))
                if parse_timestamp(sample.timestamp) > restarted_at:
                    break
            assert tokens >= 2  # re-authenticated with a freshly obtained token
            assert any("reconnecting" in s for s in statuses)
            assert any("reconnected" in s for s in statuses)
            await samples.aclose()
    finally:
        await server.kill()


async def test_library_answers_server_pings(make_server: object) -> None:
    srv: RunningServer = await make_server(heartbeat_interval=0.5)  # type: ignore[operator]
    statuses: list[str] = []
    async with OpenPanelClient(ws_url(srv.url), make_token(), on_status=statuses.append) as client:
        samples = client.metrics(interval=500)
        deadline = time.monotonic() + 4.0  # eight heartbeats; an unanswered one closes with 4002
        while time.monotonic() < deadline:
            await asyncio.wait_for(anext(samples), scaled(30))
        await samples.aclose()
    assert statuses == []


async def test_library_refreshes_the_token_before_exp_on_the_open_connection(
        make_server: object) -> None:
    """The server ends a connection at `exp` + leeway; a callable token source is asked for
    a fresh token before that, and the connection (and its subscription) simply goes on."""
    srv: RunningServer = await make_server(jwt_leeway=0.0)  # type: ignore[operator]
    issued: list[float] = []
    statuses: list[str] = []

    async def token() -> str:
        issued.append(time.time())
        return make_token("refreshing", ttl_seconds=4)

    async with OpenPanelClient(ws_url(srv.url), token, on_status=statuses.append,
                               token_refresh_margin=2.0) as client:
        samples = client.metrics(interval=500)
        await asyncio.wait_for(anext(samples), scaled(30))
        first_exp = issued[0] + 4
        while time.time() < first_exp + 2.5:  # well past the first token's exp
            await asyncio.wait_for(anext(samples), scaled(30))
        await samples.aclose()
    assert len(issued) >= 2, "no refresh on the open connection"
    assert statuses == [], statuses  # never closed, never reconnected
