"""Container stats, sans-I/O: the Docker CLI's numbers from engine stats samples.

Formulas as in `docker stats` (docker/cli, cli/command/container/stats_helpers.go):
- CPU % = (delta container usage / delta system usage) x online CPUs x 100, the deltas
  taken between a sample and the one before it (`precpu_stats`); 0 when either delta
  is not positive. A sample whose `precpu_stats` is empty (the first of a stream) has
  no baseline: `cpu_percent` returns None and the sample is not shown.
- memory usage = usage - total_inactive_file (cgroup v1) or - inactive_file (v2), when
  smaller than usage; percent = usage / limit x 100.
- network: rx/tx bytes summed over interfaces; block I/O: read/write bytes summed
  over `io_service_bytes_recursive` by op; pids: `pids_stats.current`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from openpanel_ws.protocol import parse_timestamp_nanos

__all__ = [
    "ContainerStats",
    "Pacer",
    "Sample",
    "block_io_bytes",
    "compute",
    "cpu_percent",
    "is_running_sample",
    "memory_usage",
    "network_bytes",
]

Sample = Mapping[str, Any]


def _num(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def is_running_sample(sample: Sample) -> bool:
    """False for the zeroed samples the engine keeps sending for an exited container."""
    read = sample.get("read")
    return isinstance(read, str) and not read.startswith("0001-") and bool(_map(sample.get("memory_stats")))


def cpu_percent(sample: Sample) -> float | None:
    cpu = _map(sample.get("cpu_stats"))
    pre = _map(sample.get("precpu_stats"))
    pre_system = _num(pre.get("system_cpu_usage"))
    if not pre_system:
        return None  # no baseline yet (first sample of a stream)
    usage = _map(cpu.get("cpu_usage"))
    pre_usage = _map(pre.get("cpu_usage"))
    cpu_delta = _num(usage.get("total_usage")) - _num(pre_usage.get("total_usage"))
    system_delta = _num(cpu.get("system_cpu_usage")) - pre_system
    online = _num(cpu.get("online_cpus"))
    if not online:
        percpu = usage.get("percpu_usage")
        online = len(percpu) if isinstance(percpu, list) else 0
    if system_delta <= 0 or cpu_delta <= 0:
        return 0.0
    return cpu_delta / system_delta * online * 100.0


def memory_usage(sample: Sample) -> int:
    memory = _map(sample.get("memory_stats"))
    usage = _num(memory.get("usage"))
    stats = _map(memory.get("stats"))
    if "total_inactive_file" in stats:  # cgroup v1
        inactive = _num(stats.get("total_inactive_file"))
        if inactive < usage:
            return usage - inactive
    inactive = _num(stats.get("inactive_file"))  # cgroup v2
    if inactive < usage:
        return usage - inactive
    return usage


def network_bytes(sample: Sample) -> tuple[int, int]:
    rx = tx = 0
    for iface in _map(sample.get("networks")).values():
        rx += _num(_map(iface).get("rx_bytes"))
        tx += _num(_map(iface).get("tx_bytes"))
    return rx, tx


def block_io_bytes(sample: Sample) -> tuple[int, int]:
    read = write = 0
    entries = _map(sample.get("blkio_stats")).get("io_service_bytes_recursive")
    for entry in entries if isinstance(entries, list) else []:
        op = str(_map(entry).get("op", ""))[:1].lower()
        if op == "r":
            read += _num(_map(entry).get("value"))
        elif op == "w":
            write += _num(_map(entry).get("value"))
    return read, write


@dataclass(frozen=True, slots=True)
class ContainerStats:
    """The numbers of one sample (the wire `stats` message is built by the gateway)."""

    nanos: int  # the sample's `read` time
    cpu_percent: float
    memory_usage: int
    memory_limit: int
    memory_percent: float
    rx_bytes: int
    tx_bytes: int
    blkio_read: int
    blkio_write: int
    pids: int


def compute(sample: Sample) -> ContainerStats | None:
    """The numbers of one sample; None when it cannot be shown (no CPU baseline yet,
    or the container is not running)."""
    if not is_running_sample(sample):
        return None
    cpu = cpu_percent(sample)
    if cpu is None:
        return None
    memory = _map(sample.get("memory_stats"))
    usage = memory_usage(sample)
    limit = _num(memory.get("limit"))
    rx, tx = network_bytes(sample)
    blk_read, blk_write = block_io_bytes(sample)
    try:
        nanos = parse_timestamp_nanos(str(sample.get("read")))
    except ValueError:
        nanos = 0
    return ContainerStats(
        nanos=nanos,
        cpu_percent=cpu,
        memory_usage=usage,
        memory_limit=limit,
        memory_percent=usage / limit * 100.0 if limit else 0.0,
        rx_bytes=rx,
        tx_bytes=tx,
        blkio_read=blk_read,
        blkio_write=blk_write,
        pids=_num(_map(sample.get("pids_stats")).get("current")),
    )


class Pacer:
    """One subscriber's cadence over a shared ~1 Hz sample stream.

    A sample is sent when it is due; the schedule is anchored (next += interval), so
    an interval of 2500 ms over 1 s samples averages 2.5 s instead of drifting to 3 s.
    A sample within `tolerance` before the due time counts as due. Intervals shorter
    than the engine's period get every sample.
    """

    __slots__ = ("interval", "next_due", "tolerance")

    def __init__(self, interval_s: float) -> None:
        self.interval = self.tolerance = 0.0
        self.set_interval(interval_s)
        self.next_due: float | None = None  # None: the next sample goes out at once

    def set_interval(self, interval_s: float) -> None:
        self.interval = interval_s
        self.tolerance = min(0.5, interval_s / 2)

    def due(self, now: float) -> bool:
        """True when a sample arriving at `now` should be sent; advances the schedule."""
        if self.next_due is None:
            self.next_due = now + self.interval
            return True
        if now < self.next_due - self.tolerance:
            return False
        self.next_due += self.interval
        if self.next_due - self.tolerance <= now:
            self.next_due = now + self.interval  # fell behind (e.g. a pause): re-anchor
        return True

    def reset(self) -> None:
        self.next_due = None
