"""`UpstreamRegistry` and the upstream callbacks, with plain calls (no engine is asked)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from openpanel_ws.engine.client import DockerEngine
from openpanel_ws.gateways.containers.upstream import Upstream, UpstreamLinks, UpstreamRegistry


class Probe(Upstream[Any]):
    """An upstream whose run waits until told to end (or to report a removal)."""

    kind: ClassVar[str] = "probe"

    def __init__(self, container_id: str, finished: list[Upstream[Any]],
                 removed: list[Upstream[Any]], host: str = "local") -> None:
        super().__init__(UpstreamLinks(DockerEngine(), finished.append, removed.append, host),
                         container_id)
        self.end = asyncio.Event()
        self.remove_on_end = False
        self.fail_on_end = False

    async def run(self) -> None:
        await self.end.wait()
        if self.fail_on_end:
            raise RuntimeError("upstream bug")
        if self.remove_on_end:
            self.end_removed()


def make(container_id: str = "c1") -> tuple[Probe, list[Upstream[Any]], list[Upstream[Any]]]:
    finished: list[Upstream[Any]] = []
    removed: list[Upstream[Any]] = []
    return Probe(container_id, finished, removed), finished, removed


async def test_add_starts_and_release_closes_only_when_the_last_subscriber_left() -> None:
    changes: list[int] = []
    registry: UpstreamRegistry[Probe] = UpstreamRegistry(lambda: changes.append(len(registry)))
    upstream, finished, _ = make()
    upstream.subs["a"] = None
    registry.add(upstream)
    assert registry.get(("local", "c1")) is upstream and len(registry) == 1 and changes == [1]
    assert upstream.task is not None and not upstream.task.done()
    await asyncio.sleep(0)  # the task is running
    await registry.release(upstream)  # still has a subscriber: stays
    assert registry.get(("local", "c1")) is upstream and not upstream.task.done()
    upstream.remove("a")
    task = upstream.task
    await registry.release(upstream)
    assert registry.get(("local", "c1")) is None and len(registry) == 0
    assert task.cancelled() and upstream.task is None
    assert finished == [upstream]  # on_finished runs when the task ends, cancelled or not
    assert changes[-1] == 0


async def test_an_upstream_that_ends_on_its_own_reports_and_is_forgotten() -> None:
    registry: UpstreamRegistry[Probe] = UpstreamRegistry()
    upstream, finished, removed = make()
    upstream.subs["a"] = None
    registry.add(upstream)
    upstream.remove_on_end = True
    upstream.end.set()
    assert upstream.task is not None
    await upstream.task
    assert removed == [upstream] and finished == [upstream]
    registry.forget(finished[0])  # what the gateway's on_finished does
    assert registry.get(("local", "c1")) is None


async def test_a_failing_upstream_still_reports_finished() -> None:
    upstream, finished, removed = make()
    upstream.fail_on_end = True
    upstream.start()
    upstream.end.set()
    assert upstream.task is not None
    await upstream.task  # the error is logged, not raised
    assert finished == [upstream] and removed == []


async def test_forget_leaves_a_newer_upstream_for_the_same_container() -> None:
    registry: UpstreamRegistry[Probe] = UpstreamRegistry()
    old, _, _ = make()
    new, _, _ = make()
    registry.add(old)
    registry.add(new)  # replaced (the old one's task ends later)
    registry.forget(old)
    assert registry.get(("local", "c1")) is new
    await registry.close_all()
    assert len(registry) == 0 and old.task is not None and new.task is None


async def test_notify_routes_start_and_destroy_to_the_container_upstream() -> None:
    registry: UpstreamRegistry[Probe] = UpstreamRegistry()
    one, _, _ = make("c1")
    two, _, _ = make("c2")
    registry.add(one)
    registry.add(two)
    registry.notify(("local", "c1"), "start")
    registry.notify(("local", "nobody"), "destroy")
    registry.notify(("other", "c2"), "destroy")  # the same id on another host
    assert one.started.is_set() and not two.started.is_set()
    registry.notify(("local", "c2"), "destroy")
    assert two.removed and two.started.is_set() and not one.removed
    assert sorted(u.container_id for u in registry) == ["c1", "c2"]
    await registry.close_all()
    assert len(registry) == 0


async def test_the_same_container_id_on_two_hosts_is_two_upstreams() -> None:
    registry: UpstreamRegistry[Probe] = UpstreamRegistry()
    finished: list[Upstream[Any]] = []
    here = Probe("c1", finished, [])
    there = Probe("c1", finished, [], host="other")
    registry.add(here)
    registry.add(there)
    assert len(registry) == 2 and registry.hosts() == {"local", "other"}
    assert registry.get(("other", "c1")) is there and registry.get(("local", "c1")) is here
    assert registry.on_host("other") == [there]
    registry.notify(("other", "c1"), "destroy")
    assert there.removed and not here.removed
    await registry.close_all()


def test_the_subscribers_hear_of_an_outage_once_until_the_engine_answers() -> None:
    told: list[Upstream[Any]] = []
    upstream = Upstream(UpstreamLinks(DockerEngine(), told.append, told.append, "h1",
                                      told.append), "c1")
    upstream.engine_failed()
    upstream.engine_failed()
    assert told == [upstream] and upstream.unavailable
    upstream.engine_answered()
    upstream.engine_failed()
    assert told == [upstream, upstream]
