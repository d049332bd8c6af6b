"""The host registry with fake engines: lookups, scopes, and a status that follows the
probes and, at once, each host's events stream."""

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from helpers import eventually
from openpanel_ws.auth import Principal
from openpanel_ws.engine.client import EngineUnavailable
from openpanel_ws.hosts.config import HostConfig, hosts_from_env
from openpanel_ws.hosts.registry import HostRegistry
from openpanel_ws.hosts.status import HostState, HostStatus

CONFIGS = hosts_from_env("local=unix:///var/run/docker.sock,edge-1=tcp://10.0.0.1:2376,"
                         "edge-2=tcp://10.0.0.2:2376")


class FakeEngine:
    """`get` answers /info (or fails with `error`); `stream_chunks` opens an events stream
    that stays open until `break_stream` is set, then breaks."""

    def __init__(self, config: HostConfig, timeout: float) -> None:
        self.id = config.id
        self.timeout = timeout
        self.error: Exception | None = None
        self.probes = 0
        self.break_stream = asyncio.Event()

    async def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        assert path == "/info"
        self.probes += 1
        if self.error is not None:
            raise self.error
        return {"ServerVersion": "27.1", "Containers": 2}

    async def stream_chunks(self, path: str, params: Mapping[str, Any] | None = None, *,
                            on_open: Callable[[], None] | None = None,
                            method: str = "GET") -> AsyncGenerator[bytes, None]:
        if self.error is not None:
            raise EngineUnavailable(str(self.error))
        if on_open is not None:
            on_open()
        await self.break_stream.wait()
        self.break_stream.clear()
        raise EngineUnavailable("stream interrupted: reset")
        yield b""  # an async generator

    async def close(self) -> None:
        pass


def registry(configs: tuple[HostConfig, ...] = CONFIGS, **kwargs: Any) -> tuple[
        HostRegistry, list[HostStatus]]:
    reg = HostRegistry(configs, engine=FakeEngine, clock=lambda: 1000.0, **kwargs)
    seen: list[HostStatus] = []
    reg.add_status_listener(seen.append)
    return reg, seen


def fake(reg: HostRegistry, host_id: str) -> FakeEngine:
    host = reg.get(host_id)
    assert host is not None
    engine = host.engine
    assert isinstance(engine, FakeEngine)
    return engine


def test_lookups_the_default_and_the_hosts_claim() -> None:
    reg, _ = registry(default_id="edge-1")
    assert [h.id for h in reg] == ["local", "edge-1", "edge-2"] and len(reg) == 3
    assert reg.default.id == "edge-1" and reg.get("nowhere") is None
    local = reg.get("local")
    assert local is not None and local.on_this_machine and local.status.state is HostState.CONNECTING
    edge = reg.get("edge-1")
    assert edge is not None and not edge.on_this_machine
    scoped = Principal("u", host_scopes=("edge-*",))
    assert [h.id for h in reg.visible_to(scoped)] == ["edge-1", "edge-2"]
    assert reg.visible_to(Principal("u", host_scopes=())) == []
    assert len(reg.visible_to(Principal("u"))) == 3


async def test_probes_set_the_status_and_each_change_is_announced_once() -> None:
    reg, seen = registry()
    local = reg.get("local")
    assert local is not None
    await reg.probe(local)
    assert local.up and local.status.version == "27.1" and local.status.containers == 2
    await reg.probe(local)  # still up: nothing new
    fake(reg, "local").error = EngineUnavailable("connection refused")
    await reg.probe(local)
    await reg.probe(local)
    fake(reg, "local").error = RuntimeError("a transport's own failure")
    await reg.probe(local)  # still down, not a crash of the watch
    assert [(s.host, s.state, s.error) for s in seen] == [
        ("local", HostState.UP, None), ("local", HostState.DOWN, "connection refused")]
    assert local.status.error == "a transport's own failure"


async def test_a_broken_events_stream_marks_the_host_down_at_once_and_an_open_one_up() -> None:
    reg, seen = registry()
    edge = reg.get("edge-1")
    assert edge is not None
    edge.events.backoff_initial = edge.events.backoff_max = 0.01
    edge.events.add_listener(lambda event: None)
    await eventually(lambda: edge.up, what="the open stream marks the host up")
    fake(reg, "edge-1").break_stream.set()
    await eventually(lambda: len(seen) >= 3, what="down, then up again")
    assert [(s.host, s.state, s.error) for s in seen[:3]] == [
        ("edge-1", HostState.UP, None),
        ("edge-1", HostState.DOWN, "stream interrupted: reset"),  # the reason, as a probe's
        ("edge-1", HostState.UP, None)]
    assert fake(reg, "edge-1").probes == 0  # the stream alone told
    await reg.close()


async def test_start_watches_every_enabled_host_and_close_stops_them() -> None:
    configs = (*CONFIGS[:2], HostConfig("off", CONFIGS[2].target, enabled=False))
    reg, seen = registry(configs)
    fake(reg, "edge-1").error = EngineUnavailable("no route to host")
    await reg.start()
    await eventually(lambda: len(seen) == 2, what="both enabled hosts probed")
    assert {(s.host, s.state) for s in seen} == {("local", HostState.UP),
                                                 ("edge-1", HostState.DOWN)}
    off = reg.get("off")
    assert off is not None and off.status.state is HostState.DISABLED
    assert fake(reg, "off").probes == 0  # a disabled host is never contacted
    await reg.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("host-")]


async def test_a_failing_listener_does_not_stop_the_others() -> None:
    reg, seen = registry()

    def broken(status: HostStatus) -> None:
        raise RuntimeError("listener bug")

    reg.remove_status_listener(seen.append)
    reg.add_status_listener(broken)
    reg.add_status_listener(seen.append)
    local = reg.get("local")
    assert local is not None
    await reg.probe(local)
    assert [s.state for s in seen] == [HostState.UP]
