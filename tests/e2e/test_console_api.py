"""GET /api/containers and the console's static routes, against a real server and engine."""

from __future__ import annotations

from typing import Any

import aiohttp
from multidict import CIMultiDict

from helpers import SECRET, Containers, RunningServer, eventually, make_token, unique_name
from openpanel_ws.auth import issue_token


async def get(server: RunningServer, path: str, headers: dict[str, str] | None = None
              ) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{server.port}{path}", headers=headers or {}) as resp:
        return resp.status, CIMultiDict(resp.headers), await resp.read()


async def containers_as(server: RunningServer, token: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{server.port}/api/containers",
            headers={"Authorization": f"Bearer {token}"}) as resp:
        return resp.status, await resp.json()


async def test_list_needs_a_valid_bearer_token(server: RunningServer) -> None:
    expired = issue_token(SECRET, subject="u", roles=["admin"], ttl_seconds=-3600)
    wrong_key = issue_token("another-secret-" + "y" * 32, subject="u", roles=["admin"])
    for headers in ({}, {"Authorization": "Basic dTpw"}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer not-a-jwt"}, {"Authorization": f"Bearer {expired}"},
                    {"Authorization": f"Bearer {wrong_key}"}):
        status, resp_headers, body = await get(server, "/api/containers", headers)
        assert status == 401, headers
        assert resp_headers["WWW-Authenticate"].startswith("Bearer")
        assert b'"AUTH_FAILED"' in body
        assert b"containers" not in body
    status, _, body = await get(server, "/api/containers", {"Authorization": f"Bearer {expired}"})
    assert b"Token expired" in body


async def test_list_shows_running_and_stopped_containers(server: RunningServer,
                                                          containers: Containers) -> None:
    running = await containers.run()
    stopped = await containers.run("exit 3")
    listing: dict[str, Any] = {}

    async def stopped_listed() -> bool:
        status, body = await containers_as(server, make_token())
        assert status == 200
        rows = {r["name"]: r for r in body["containers"]}  # type: ignore[attr-defined]
        listing.update(body=body, rows=rows)
        return bool(rows.get(stopped, {}).get("state") == "exited")

    await eventually(stopped_listed, 20, what=f"{stopped} listed as exited")
    body, rows = listing["body"], listing["rows"]
    assert rows[running]["state"] == "running"
    assert rows[running]["image"] == "openpanel-ws-test:busybox"
    assert rows[running]["id"] == await containers.id_of(running)
    assert rows[running]["startedAt"].endswith("Z")
    assert rows[running]["exitCode"] is None
    assert rows[stopped]["state"] == "exited"
    assert rows[stopped]["exitCode"] == 3
    assert rows[running]["host"] == "local"
    assert set(rows[running]) == {"id", "host", "name", "image", "state", "status", "created", "startedAt",
                                  "finishedAt", "exitCode", "health"}
    assert str(body["timestamp"]).endswith("Z")


async def test_scoped_token_lists_only_matching_containers(server: RunningServer,
                                                           containers: Containers) -> None:
    prefix = unique_name("scope")
    mine = await containers.run(name=f"{prefix}-a")
    other = await containers.run()
    status, body = await containers_as(server, make_token("u", roles=(), containers=[f"{prefix}-*"]))
    assert status == 200
    names = [r["name"] for r in body["containers"]]  # type: ignore[attr-defined]
    assert names == [mine]
    status, body = await containers_as(server, make_token("u", roles=(), containers=[]))
    assert status == 200 and body["containers"] == []
    status, body = await containers_as(server, make_token("u", roles=("admin",)))
    assert other in [r["name"] for r in body["containers"]]  # type: ignore[attr-defined]


async def test_page_and_assets_headers(server: RunningServer) -> None:
    status, headers, _ = await get(server, "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "connect-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-cache"
    status, _, _ = await get(server, "/", {"If-None-Match": headers["ETag"]})
    assert status == 304
    status, headers, _ = await get(server, "/static/app.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    status, _, _ = await get(server, "/static/vendor/uplot/LICENSE")
    assert status == 200
    for path in ("/static/../auth.py", "/static/%2e%2e/auth.py", "/static/missing.js"):
        status, _, _ = await get(server, path)
        assert status == 404, path
