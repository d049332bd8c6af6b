"""Container stats: one engine `stats?stream=1` stream per container (~1 sample/s),
shared by every subscriber (docs/containers.md "One upstream per container").

Each sample becomes the Docker CLI's numbers once (`engine.stats.compute`), is encoded
once per distinct `containerId` text, and is paced per subscriber (`Pacer`) as a
latest-value frame. The stream is closed when the container stops (the engine would
keep sending zeroed samples) and re-opened on start.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import orjson

from openpanel_ws.engine.client import EngineError, EngineNotFound, EngineUnavailable
from openpanel_ws.engine.stats import ContainerStats, Pacer, compute, is_running_sample
from openpanel_ws.engine.streams import JsonLines, pump
from openpanel_ws.gateways.containers.upstream import (
    BACKOFF_INITIAL,
    Subscription,
    Upstream,
    UpstreamLinks,
)
from openpanel_ws.protocol import Message, rfc3339_from_nanos

__all__ = ["STATS", "StatsSub", "StatsUpstream", "stats_message"]

log = logging.getLogger(__name__)

STATS: Final = "stats"
# A stats sample this recent is sent at once to a new subscriber.
FRESH_SAMPLE_SECONDS: Final = 2.0


def stats_message(container_ref: str, stats: ContainerStats,
                  host: str | None = None) -> Message:
    """The specification's `stats` message; `blkio`, `pids` and `host` (the container's
    host) are additive extras."""
    cpu = round(stats.cpu_percent, 2)
    message: Message = {
        "type": "stats",
        "containerId": container_ref,
        "timestamp": rfc3339_from_nanos(stats.nanos),
        "stats": {
            "cpu": {"usage": cpu, "percent": cpu},
            "memory": {
                "usage": stats.memory_usage,
                "limit": stats.memory_limit,
                "percent": round(stats.memory_percent, 2),
            },
            "network": {"rx_bytes": stats.rx_bytes, "tx_bytes": stats.tx_bytes},
            "blkio": {"read_bytes": stats.blkio_read, "write_bytes": stats.blkio_write},
            "pids": stats.pids,
        },
    }
    if host is not None:
        message["host"] = host
    return message


@dataclass(eq=False)
class StatsSub(Subscription):
    kind: ClassVar[str] = STATS
    upstream: StatsUpstream
    pacer: Pacer

    @property
    def latest_key(self) -> str:
        """The conflation key of this subscription's latest-value frames."""
        return f"stats:{self.host}\0{self.ref}"


def send_stats(sub: StatsSub, stats: ContainerStats, payloads: dict[str, bytes]) -> None:
    """Encode once per distinct `containerId` text; `send_latest` frames it."""
    payload = payloads.get(sub.ref)
    if payload is None:
        payload = payloads[sub.ref] = orjson.dumps(stats_message(sub.ref, stats, sub.host))
    sub.session.send_latest(sub.latest_key, payload)


class StatsUpstream(Upstream[StatsSub]):
    kind: ClassVar[str] = STATS

    def __init__(self, links: UpstreamLinks, container_id: str) -> None:
        super().__init__(links, container_id)
        self.latest: ContainerStats | None = None
        self.latest_at = 0.0
        self.samples = 0  # samples read from the engine (tests, bench)

    async def run(self) -> None:
        settle = 0.0  # after a stream ended: a pause if the container still runs
        while self.subs:
            if not await self.wait_running(settle=settle):
                self.end_removed()
                return
            settle = BACKOFF_INITIAL
            for sub in self.subs:
                sub.pacer.reset()  # a new run's first sample goes out at once
            try:
                await pump(self.engine.stream_chunks(self.path + "/stats", {"stream": True}),
                           JsonLines(), self._samples)
            except EngineNotFound:
                pass
            except EngineError as exc:
                log.info("stats stream of %s on %s interrupted: %s", self.container_id[:12],
                         self.host, exc)
                if isinstance(exc, EngineUnavailable):
                    self.engine_failed()
            self.latest = None

    def _samples(self, samples: list[dict[str, Any]]) -> bool:
        """Publish each sample; True (stop reading) once the container has stopped."""
        for sample in samples:
            self.samples += 1
            if not is_running_sample(sample):
                return True  # stopped: the engine would go on sending zeroes
            stats = compute(sample)
            if stats is not None:
                self.publish(stats)
        return False

    def publish(self, stats: ContainerStats) -> None:
        now = time.monotonic()
        self.latest, self.latest_at = stats, now
        payloads: dict[str, bytes] = {}
        for sub in self.subs:
            if sub.pacer.due(now):
                send_stats(sub, stats, payloads)

    def add(self, sub: StatsSub) -> None:
        self.subs[sub] = None
        now = time.monotonic()
        if self.latest is not None and now - self.latest_at <= FRESH_SAMPLE_SECONDS:
            sub.pacer.due(now)
            send_stats(sub, self.latest, {})

    def remove(self, sub: StatsSub) -> None:
        self.subs.pop(sub, None)
        sub.session.discard_latest(sub.latest_key)
