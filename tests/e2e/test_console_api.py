"""GET /api/containers and the console's static routes, against a real server and engine."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from engine_proxy import EngineProxy
from helpers import SECRET, Containers, RunningServer, eventually, make_token, scaled, unique_name
from openpanel_ws.auth import issue_token
from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.hosts.config import HostConfig

MakeServer = Callable[..., Awaitable[RunningServer]]


def host_config(host_id: str, url: str = "unix:///var/run/docker.sock",
                timeout: float | None = None) -> HostConfig:
    return HostConfig(host_id, EngineTarget(url), timeout=timeout)


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


# --- hosts -----------------------------------------------------------------------------


async def get_json(server: RunningServer, path: str, token: str | None = None
                   ) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, _, body = await get(server, path, headers)
    return status, json.loads(body)


async def test_the_list_covers_every_host_and_a_hung_one_delays_nothing(
        make_server: MakeServer, containers: Containers, tmp_path: Path) -> None:
    hung = EngineProxy(tmp_path / "hung.sock")
    await hung.hang()
    try:
        server = await make_server(hosts=(
            host_config("local"), host_config("other"),
            host_config("dead", f"unix://{tmp_path}/none.sock", 1.0),
            host_config("hung", hung.url, 1.0)))
        name = await containers.run("sleep 3600")
        token = make_token()
        started = time.monotonic()
        status, body = await get_json(server, "/api/containers", token)
        took = time.monotonic() - started
        assert status == 200
        rows = [r for r in body["containers"] if r["name"] == name]
        assert sorted(r["host"] for r in rows) == ["local", "other"]
        assert rows[0]["id"] == rows[1]["id"]
        assert sorted(body["unavailable"], key=lambda u: u["host"]) == [
            {"host": "dead", "code": "DOCKER_UNAVAILABLE", "error": "Docker engine unavailable"},
            {"host": "hung", "code": "DOCKER_UNAVAILABLE", "error": "Docker engine unavailable"}]
        assert took < 1.0 + scaled(2.0)  # the hosts are asked at once, each within its timeout
        status, body = await get_json(server, "/api/containers?host=other", token)
        assert status == 200 and body["unavailable"] == []
        assert {r["host"] for r in body["containers"]} == {"other"}
        assert name in {r["name"] for r in body["containers"]}
        status, body = await get_json(server, "/api/containers?host=dead", token)
        assert (status, body["code"]) == (503, "DOCKER_UNAVAILABLE")  # as with one host
        status, body = await get_json(server, "/api/containers?host=nope", token)
        assert (status, body["code"], body["field"]) == (400, "INVALID_MESSAGE", "host")
    finally:
        await hung.down()


async def test_api_hosts_lists_the_hosts_the_token_may_see(
        make_server: MakeServer, tmp_path: Path) -> None:
    server = await make_server(hosts=(
        host_config("local"), host_config("dead", f"unix://{tmp_path}/none.sock", 1.0),
        HostConfig("off", EngineTarget("tcp://engine.example:2376"), enabled=False,
                   terminals=False)))
    hosts = server.services.hosts
    await eventually(lambda: hosts.get("local").up  # type: ignore[union-attr]
                     and hosts.get("dead").status.state == "down", 15)  # type: ignore[union-attr]
    status, _, _ = await get(server, "/api/hosts")
    assert status == 401
    status, rows = await get_json(server, "/api/hosts", make_token())
    assert status == 200
    assert [r["id"] for r in rows] == ["local", "dead", "off"]
    local, dead, off = rows
    assert set(local) == {"id", "engine", "state", "error", "version", "containers", "terminals"}
    assert (local["engine"], local["state"], local["error"], local["terminals"]) == (
        "unix:///var/run/docker.sock", "up", None, True)
    assert isinstance(local["version"], str) and isinstance(local["containers"], int)
    assert (dead["state"], dead["engine"]) == ("down", f"unix://{tmp_path}/none.sock")
    assert isinstance(dead["error"], str) and dead["error"]
    assert (off["state"], off["engine"], off["terminals"]) == (
        "disabled", "tcp://engine.example:2376", False)
    status, rows = await get_json(server, "/api/hosts", make_token(hosts=["d*"]))
    assert [r["id"] for r in rows] == ["dead"]


async def test_readyz_tells_host_states_only_to_a_valid_token(
        make_server: MakeServer, tmp_path: Path) -> None:
    server = await make_server(hosts=(
        host_config("local"), host_config("dead", f"unix://{tmp_path}/none.sock", 1.0)))
    status, body = await get_json(server, "/readyz")
    assert (status, body) == (200, {"status": "ready"})  # no engine address, no host
    status, body = await get_json(server, "/readyz", "not-a-token")
    assert (status, body) == (200, {"status": "ready"})
    await eventually(lambda: server.services.hosts.get("dead").status.state == "down",  # type: ignore[union-attr]
                     15)
    status, body = await get_json(server, "/readyz", make_token())
    assert status == 200 and body["status"] == "ready"
    assert [(h["id"], h["state"]) for h in body["hosts"]] == [("local", "up"), ("dead", "down")]
    assert body["hosts"][1]["error"]
    status, body = await get_json(server, "/readyz", make_token(hosts=["local"]))
    assert [h["id"] for h in body["hosts"]] == ["local"]
    # The default host down: 503, and still nothing about it to an anonymous caller.
    down = await make_server(hosts=(
        host_config("dead", f"unix://{tmp_path}/none.sock", 1.0), host_config("local")))
    status, body = await get_json(down, "/readyz")
    assert status == 503 and body["status"] == "unavailable"
    assert "engine" not in body and "hosts" not in body
    assert "none.sock" not in json.dumps(body)
