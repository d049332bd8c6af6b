"""A refused Origin is discoverable: the 403 names the setting, the server logs it once
per origin per minute, a bad value stops the start with one line, the banner lists them."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from helpers import RunningServer, free_port, scaled


async def test_a_refused_origin_gets_a_403_naming_the_setting_and_one_log_line(
        make_server: object, caplog: pytest.LogCaptureFixture) -> None:
    srv: RunningServer = await make_server(allowed_origins=["https://panel.example"])  # type: ignore[operator]
    caplog.set_level(logging.INFO, logger="openpanel_ws.server")
    async with aiohttp.ClientSession() as session:
        headers = {"Origin": "https://evil.example"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(srv.url + "/ws/metrics", headers=headers)
        assert info.value.status == 403
        # the body, read with a plain request
        async with session.get(srv.url + "/ws/logs", headers=headers) as resp:
            assert resp.status == 403
            body = await resp.json()
    assert body["setting"] == "OPENPANEL_WS_ALLOWED_ORIGINS"
    assert body["origin"] == "https://evil.example"
    assert "OPENPANEL_WS_ALLOWED_ORIGINS" in body["message"]
    lines = [r.getMessage() for r in caplog.records
             if r.levelno == logging.INFO and "https://evil.example" in r.getMessage()]
    assert len(lines) == 1, lines  # two refusals within a minute: one line
    assert "OPENPANEL_WS_ALLOWED_ORIGINS" in lines[0]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPANEL_WS_")}
    env.update(extra)
    return env


def test_an_origin_without_a_scheme_stops_the_start_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "openpanel_ws", "serve", "--port", str(free_port())],
        capture_output=True, text=True, timeout=60,
        env=_env(OPENPANEL_WS_ALLOWED_ORIGINS="127.0.0.1:3150", XDG_STATE_HOME=str(tmp_path)))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "OPENPANEL_WS_ALLOWED_ORIGINS" in result.stderr and "127.0.0.1:3150" in result.stderr


async def test_the_banner_lists_the_allowed_origins(engine: None, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "openpanel_ws", "serve", "--port", str(free_port()),
        env=_env(OPENPANEL_WS_ALLOWED_ORIGINS="http://127.0.0.1:3150,https://panel.example",
                 OPENPANEL_WS_JWT_SECRET="s" * 40, XDG_STATE_HOME=str(tmp_path), PYTHONUNBUFFERED="1"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        banner: list[str] = []
        while not any("allowed browser origins" in line for line in banner) and len(banner) < 12:
            banner.append((await asyncio.wait_for(proc.stdout.readline(), scaled(30))).decode())
    finally:
        proc.terminate()
        await proc.wait()
    assert any("http://127.0.0.1:3150, https://panel.example" in line
               and "OPENPANEL_WS_ALLOWED_ORIGINS" in line for line in banner), banner
