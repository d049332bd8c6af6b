"""What the logs and stats upstreams share: one engine stream per container of a host, its
task, waiting for the container to run again, and the registry the gateway keeps them in
(keyed by host id and container id: two hosts' containers are different upstreams).

An upstream knows nothing of the gateway: it reports through the callbacks given when it
is made, `on_finished` (its task ended on its own: failure, or the container is gone),
`on_removed` (the container was removed: its subscribers must be told) and
`on_unavailable` (its host's engine stopped answering: its subscribers are told once per
outage; the upstream keeps waiting and resumes when the host answers again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Generic, TypeVar
from urllib.parse import quote

from openpanel_ws import protocol
from openpanel_ws.backoff import Backoff
from openpanel_ws.engine.client import DockerEngine, EngineError, EngineNotFound, EngineUnavailable
from openpanel_ws.gateways.base import Session
from openpanel_ws.hosts.config import DEFAULT_HOST_ID

__all__ = [
    "BACKOFF_INITIAL",
    "BACKOFF_MAX",
    "RECHECK_SECONDS",
    "ContainersState",
    "Subscription",
    "Upstream",
    "UpstreamKey",
    "UpstreamLinks",
    "UpstreamRegistry",
    "next_wait",
]

log = logging.getLogger(__name__)

# While stopped, the container's state is re-checked this often even without an event
# (the events stream may itself be reconnecting).
RECHECK_SECONDS: Final = 5.0
BACKOFF_INITIAL: Final = 0.25
BACKOFF_MAX: Final = 5.0


@dataclass(eq=False)
class Subscription:
    """One client's subscription to one container (`kind`: "logs" or "stats")."""

    kind: ClassVar[str]
    session: Session[ContainersState]
    ref: str  # the client's `containerId`, exactly as sent
    names: tuple[str, ...]  # the container's names when subscribed (scope re-checks)
    upstream: Upstream[Any]

    @property
    def host(self) -> str:
        """The id of the host the container is on."""
        return self.upstream.host

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.host, self.ref)


class ContainersState:
    """A connection's subscriptions on /ws/containers, by (kind, host, containerId). Made
    on the first subscribe, so an idle connection holds none."""

    __slots__ = ("subs",)

    def __init__(self) -> None:
        self.subs: dict[tuple[str, str, str], Subscription] = {}

    def discard(self, sub: Subscription) -> None:
        if self.subs.get(sub.key) is sub:
            del self.subs[sub.key]


def next_wait(backoff: Backoff) -> float:
    """The next delay of a backoff without an attempt bound (it always has one)."""
    delay = backoff.next_delay()
    assert delay is not None, "an unbounded backoff always has a next delay"
    return delay


S = TypeVar("S", bound=Subscription)

# An upstream's place in its registry: (host id, container id).
UpstreamKey = tuple[str, str]


def _ignore(upstream: Upstream[Any]) -> None:
    pass


@dataclass(frozen=True, slots=True)
class UpstreamLinks:
    """What an upstream is given: its host's engine and id, and whom to tell when its
    task ended on its own (`on_finished`), its container was removed (`on_removed`) or
    the engine stopped answering (`on_unavailable`)."""

    engine: DockerEngine
    on_finished: Callable[[Upstream[Any]], None]
    on_removed: Callable[[Upstream[Any]], None]
    host: str = DEFAULT_HOST_ID
    on_unavailable: Callable[[Upstream[Any]], None] = _ignore


class Upstream(Generic[S]):
    """One container's engine stream and its subscribers (`S`)."""

    kind: ClassVar[str]

    def __init__(self, links: UpstreamLinks, container_id: str) -> None:
        self.engine = links.engine
        self.host = links.host
        self.container_id = container_id
        self.path = f"/containers/{quote(container_id, safe='')}"
        self.subs: dict[S, None] = {}  # insertion-ordered set
        self.task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()  # a `start` event (or removal) since last cleared
        self.removed = False
        self.finished_at: int | None = None  # end of the last run (engine clock), nanos
        self.unavailable = False  # the subscribers were told the engine does not answer
        self._links = links

    @property
    def key(self) -> UpstreamKey:
        return (self.host, self.container_id)

    def on_event(self, action: str) -> None:
        if action == "start":
            self.started.set()
        elif action == "destroy":
            self.removed = True
            self.started.set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._main(), name=f"{self.kind}-{self.container_id[:12]}"
        )

    async def close(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def remove(self, sub: S) -> None:
        self.subs.pop(sub, None)

    async def _main(self) -> None:
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s upstream of %s failed", self.kind, self.container_id[:12])
        finally:
            self._links.on_finished(self)

    async def run(self) -> None:
        raise NotImplementedError

    def end_removed(self) -> None:
        """The container is gone: the gateway tells every subscriber and drops them."""
        self._links.on_removed(self)

    def engine_failed(self) -> None:
        """The host's engine did not answer (or the host went down): the subscribers are
        told once per outage; the subscriptions stay."""
        if not self.unavailable:
            self.unavailable = True
            self._links.on_unavailable(self)

    def engine_answered(self) -> None:
        """The host's engine answers again: a later outage is reported anew."""
        self.unavailable = False

    async def wait_running(self, *, settle: float = 0.0) -> bool:
        """Until the container runs: True; removed: False. Engine outages are waited out
        with capped backoff.

        `settle`: a stream just ended; if the container still runs, wait this long first
        so that a failing stream cannot spin."""
        outage = Backoff(BACKOFF_INITIAL, BACKOFF_MAX, jitter=0.0)
        while True:
            self.started.clear()
            if self.removed:
                return False
            try:
                info = await self.engine.inspect_container(self.container_id)
            except EngineNotFound:
                return False
            except EngineError as exc:
                if isinstance(exc, EngineUnavailable):
                    self.engine_failed()
                await asyncio.sleep(next_wait(outage))
                continue
            self.engine_answered()
            state = info.get("State") or {}
            finished = state.get("FinishedAt")
            if isinstance(finished, str) and not finished.startswith("0001-"):
                with contextlib.suppress(ValueError):
                    self.finished_at = protocol.parse_timestamp_nanos(finished)
            if state.get("Running"):
                if settle:
                    # The stream ended while the container still runs (engine hiccup).
                    await asyncio.sleep(settle)
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.started.wait(), RECHECK_SECONDS)


U = TypeVar("U", bound=Upstream[Any])


class UpstreamRegistry(Generic[U]):
    """The running upstreams of one kind, by (host id, container id). `on_change` is
    called when the set changes (the gateway listens to a host's engine events only while
    it holds upstreams there)."""

    __slots__ = ("_items", "_on_change")

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self._items: dict[UpstreamKey, U] = {}
        self._on_change = on_change

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[U]:
        return iter(list(self._items.values()))

    def get(self, key: UpstreamKey) -> U | None:
        return self._items.get(key)

    def hosts(self) -> set[str]:
        """The ids of the hosts this registry holds upstreams on."""
        return {host for host, _ in self._items}

    def on_host(self, host: str) -> list[U]:
        return [u for u in self._items.values() if u.host == host]

    def attach(self, key: UpstreamKey, make: Callable[[], U], join: Callable[[U], None]) -> U:
        """The container's upstream, made by `make` and started when there is none yet;
        `join` (adding the subscriber) runs before a new upstream starts."""
        upstream = self._items.get(key)
        if upstream is not None:
            join(upstream)
            return upstream
        upstream = make()
        join(upstream)
        self.add(upstream)
        return upstream

    def add(self, upstream: U) -> None:
        """Register a new upstream and start its task."""
        self._items[upstream.key] = upstream
        self._on_change()
        upstream.start()

    def forget(self, upstream: U) -> None:
        """Drop `upstream` (if it is still the one registered); its task is not touched."""
        if self._items.get(upstream.key) is upstream:
            del self._items[upstream.key]
        self._on_change()

    async def release(self, upstream: U) -> None:
        """A subscriber left: close the upstream when it was the last one."""
        if not upstream.subs:
            self.forget(upstream)
            await upstream.close()

    def notify(self, key: UpstreamKey, action: str) -> None:
        """An engine event about a container of a host (start, destroy, ...)."""
        upstream = self._items.get(key)
        if upstream is not None:
            upstream.on_event(action)

    async def close_all(self) -> None:
        upstreams = list(self._items.values())
        self._items.clear()
        self._on_change()
        for upstream in upstreams:
            await upstream.close()
