"""`DockerEngine.stream_chunks`: every failure leaves as an `EngineError`, against the
real engine socket (and, for a hung or broken engine, a socket that behaves like one)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openpanel_ws.engine.client import (
    DockerEngine,
    EngineError,
    EngineNotFound,
    EngineStatusError,
    EngineUnavailable,
)
from openpanel_ws.engine.streams import JsonLines, pump, time_param


@pytest.fixture
async def docker(engine: None) -> AsyncIterator[DockerEngine]:
    client = DockerEngine()
    try:
        yield client
    finally:
        await client.close()


async def read_all(client: DockerEngine, path: str, params: dict[str, object] | None = None) -> bytes:
    return b"".join([chunk async for chunk in client.stream_chunks(path, params)])


def test_the_error_tree() -> None:
    for cls in (EngineUnavailable, EngineStatusError, EngineNotFound):
        assert issubclass(cls, EngineError)
    assert issubclass(EngineNotFound, EngineStatusError)
    assert not issubclass(EngineUnavailable, EngineStatusError)
    exc = EngineStatusError(409, "is not running")
    assert (exc.status, exc.message, str(exc)) == (409, "is not running", "engine error 409: is not running")
    assert (EngineUnavailable("down").status, str(EngineUnavailable("down"))) == (0, "down")


async def test_a_missing_container_is_engine_not_found(docker: DockerEngine) -> None:
    with pytest.raises(EngineNotFound) as info:
        await read_all(docker, "/containers/opws-no-such-container-7f3a/logs", {"stdout": True})
    assert info.value.status == 404 and "no-such-container" in info.value.message
    assert docker.open_streams == 0


async def test_an_error_status_is_engine_status_error(docker: DockerEngine) -> None:
    with pytest.raises(EngineStatusError) as info:
        await read_all(docker, "/images/json", {"filters": "not json"})
    # 500 on Engine 20.10 (API 1.41); newer engines answer a bad filter with 400.
    assert info.value.status in (400, 500)
    assert str(info.value).startswith(f"engine error {info.value.status}: ")
    assert not isinstance(info.value, EngineNotFound)
    assert docker.open_streams == 0


async def test_an_unreachable_socket_is_engine_unavailable(tmp_path: Path) -> None:
    client = DockerEngine(f"unix://{tmp_path}/nothing-here.sock")
    try:
        with pytest.raises(EngineUnavailable):
            await read_all(client, "/events")
    finally:
        await client.close()


async def test_a_stream_that_ends_calls_on_open_and_feeds_a_parser(docker: DockerEngine) -> None:
    now = time.time_ns()
    opened: list[bool] = []
    events: list[dict[str, object]] = []
    params = {"since": time_param(now - 3_600_000_000_000), "until": time_param(now)}
    chunks = docker.stream_chunks("/events", params, on_open=lambda: opened.append(True))
    assert docker.open_streams == 0  # nothing happens before the first read
    await asyncio.wait_for(pump(chunks, JsonLines(), events.extend), 30)
    assert opened == [True]
    assert all(isinstance(e.get("Type"), str) for e in events)
    assert docker.open_streams == 0


async def test_cancelling_the_reader_closes_the_response(docker: DockerEngine) -> None:
    opened = asyncio.Event()
    live = docker.stream_chunks("/events", on_open=opened.set)  # never ends by itself
    task = asyncio.create_task(pump(live, JsonLines(), lambda _: None))
    await asyncio.wait_for(opened.wait(), 10)
    assert docker.open_streams == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert docker.open_streams == 0


async def serve_unix(path: Path, reply: bytes | None) -> asyncio.Server:
    """A socket that accepts and then sends `reply` and closes, or (None) says nothing."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if reply is None:
            await asyncio.Event().wait()  # never answers: the hung engine
        writer.write(reply or b"")
        await writer.drain()
        writer.transport.abort()

    return await asyncio.start_unix_server(handle, str(path))


async def test_a_hung_engine_is_unavailable_after_the_engine_timeout(tmp_path: Path) -> None:
    sock = tmp_path / "hung.sock"
    server = await serve_unix(sock, None)
    client = DockerEngine(f"unix://{sock}", timeout=0.3)
    try:
        with pytest.raises(EngineUnavailable, match=r"no answer within 0\.3 s"):
            await asyncio.wait_for(read_all(client, "/events"), 10)
        assert client.open_streams == 0
    finally:
        await client.close()
        server.close()


async def test_a_stream_broken_off_midway_is_unavailable(tmp_path: Path) -> None:
    sock = tmp_path / "broken.sock"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    server = await serve_unix(sock, head + b"5\r\n{}\n\n\r\n" + b"40\r\n{\"partial")
    client = DockerEngine(f"unix://{sock}")
    got: list[bytes] = []
    try:
        with pytest.raises(EngineUnavailable, match="stream interrupted"):
            async for chunk in client.stream_chunks("/events"):
                got.append(chunk)
        assert got and got[0].startswith(b"{}")
        assert client.open_streams == 0
    finally:
        await client.close()
        server.close()
