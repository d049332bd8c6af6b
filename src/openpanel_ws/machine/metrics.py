"""Host metrics: raw readings from psutil (the edge) and the pure math on them (the core).

`MachineReader.read()` takes one `Reading` of cumulative counters; `machine_sample(prev, cur)`
turns two readings into a `MachineSample` without any I/O, so every number the metrics
gateway sends (it builds the wire message, `gateways.metrics.metrics_message`) is
computed by plain functions the unit tests call directly.

CPU usage comes from cumulative `cpu_times` deltas between two readings, not from
`psutil.cpu_percent`: that one keeps a single hidden baseline per thread (docs/metrics.md
"Timing and sharing"), so two samplers with different intervals would reset each other's.
With explicit readings each sampler measures over its own period and no sampler disturbs
another.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

__all__ = [
    "VIRTUAL_NET_DIR",
    "CpuCounters",
    "DiskReading",
    "MachineReader",
    "MachineSample",
    "Reading",
    "Usage",
    "counted_interfaces",
    "cpu_counters",
    "cpu_percent",
    "cpu_sum",
    "disk_from_statvfs",
    "machine_sample",
    "percent",
]

VIRTUAL_NET_DIR = "/sys/devices/virtual/net"


# --- pure core ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpuCounters:
    """Cumulative CPU seconds: time spent busy and in total (psutil's own accounting)."""

    busy: float
    total: float


def cpu_counters(times: Any) -> CpuCounters:
    """From a psutil `scputimes` (any object with its fields).

    As psutil's `cpu_percent`: guest time is already inside user/nice, so it is not
    counted twice; idle and iowait are not busy.
    """
    fields: Sequence[str] = getattr(times, "_fields", ())
    total = float(sum(getattr(times, name) for name in fields))
    total -= float(getattr(times, "guest", 0.0)) + float(getattr(times, "guest_nice", 0.0))
    busy = total - float(times.idle) - float(getattr(times, "iowait", 0.0))
    return CpuCounters(busy=busy, total=total)


def cpu_sum(cores: Iterable[CpuCounters]) -> CpuCounters:
    busy = total = 0.0
    for core in cores:
        busy += core.busy
        total += core.total
    return CpuCounters(busy=busy, total=total)


def cpu_percent(prev: CpuCounters, cur: CpuCounters) -> float:
    """Busy share of the CPU time between two readings, 0–100, one decimal."""
    total = cur.total - prev.total
    busy = cur.busy - prev.busy
    if total <= 0 or busy <= 0:
        return 0.0
    return round(min(100.0, max(0.0, busy / total * 100.0)), 1)


def percent(part: int | float, whole: int | float) -> float:
    return round(part / whole * 100.0, 1) if whole > 0 else 0.0


def counted_interfaces(
    names: Iterable[str], *, virtual: Iterable[str], loopback: Iterable[str], include_virtual: bool
) -> list[str]:
    """The interfaces whose counters make up `system.network` (docs/protocol.md "Metrics").

    Loopback never counts. Virtual interfaces (docker0, veth*, br-*, ifb*: those under
    /sys/devices/virtual/net) are left out unless configured, so container traffic
    crossing a bridge and the real NIC is not counted twice.
    """
    skip = set(loopback)
    if not include_virtual:
        skip.update(virtual)
    return sorted(name for name in names if name not in skip)


@dataclass(frozen=True, slots=True)
class DiskReading:
    total: int
    used: int
    free: int


def disk_from_statvfs(st: os.statvfs_result) -> DiskReading:
    """Like `df`: `free` is what an unprivileged user may still write; blocks reserved
    for root are in neither `used` nor `free`."""
    return DiskReading(
        total=st.f_blocks * st.f_frsize,
        used=(st.f_blocks - st.f_bfree) * st.f_frsize,
        free=st.f_bavail * st.f_frsize,
    )


@dataclass(frozen=True, slots=True)
class Reading:
    """One set of raw host counters, taken at one instant."""

    monotonic: float
    wall: float
    cores: tuple[CpuCounters, ...]
    memory_total: int
    memory_available: int
    swap_total: int
    swap_free: int
    disk: DiskReading | None  # None when the configured path cannot be read
    rx_bytes: int
    tx_bytes: int
    load: tuple[float, float, float]
    uptime: float

    @property
    def cpu(self) -> CpuCounters:
        return cpu_sum(self.cores)


def _rate(prev: int, cur: int, seconds: float) -> int:
    # Counters go backwards when an interface disappears: report 0, not a negative rate.
    if seconds <= 0 or cur < prev:
        return 0
    return round((cur - prev) / seconds)


@dataclass(frozen=True, slots=True)
class Usage:
    """A capacity and how much of it is in use (memory, disk, swap), in bytes."""

    total: int
    used: int
    free: int
    percent: float


@dataclass(frozen=True, slots=True)
class MachineSample:
    """What the host did over the period between two readings, ready to be sent: the
    metrics gateway turns it into a `metrics` message."""

    wall: float  # when `cur` was read
    cpu_usage: float
    per_core: tuple[float, ...]
    load: tuple[float, float, float]
    memory: Usage
    disk: Usage
    swap: Usage
    rx_bytes: int
    tx_bytes: int
    rx_rate: int
    tx_rate: int
    uptime: int

    @property
    def cores(self) -> int:
        return len(self.per_core)


def machine_sample(prev: Reading | None, cur: Reading) -> MachineSample:
    """The sample for `cur`, with CPU and rates over the period since `prev` (zeros
    without a usable baseline)."""
    if prev is not None and len(prev.cores) == len(cur.cores):
        usage = cpu_percent(prev.cpu, cur.cpu)
        per_core = tuple(cpu_percent(p, c) for p, c in zip(prev.cores, cur.cores, strict=True))
        seconds = cur.monotonic - prev.monotonic
        rx_rate = _rate(prev.rx_bytes, cur.rx_bytes, seconds)
        tx_rate = _rate(prev.tx_bytes, cur.tx_bytes, seconds)
    else:
        usage, per_core, rx_rate, tx_rate = 0.0, (0.0,) * len(cur.cores), 0, 0
    mem_used = cur.memory_total - cur.memory_available
    swap_used = cur.swap_total - cur.swap_free
    disk = cur.disk or DiskReading(0, 0, 0)
    load = cur.load
    return MachineSample(
        wall=cur.wall,
        cpu_usage=usage,
        per_core=per_core,
        load=(round(load[0], 2), round(load[1], 2), round(load[2], 2)),
        memory=Usage(cur.memory_total, mem_used, cur.memory_available,
                     percent(mem_used, cur.memory_total)),
        disk=Usage(disk.total, disk.used, disk.free, percent(disk.used, disk.used + disk.free)),
        swap=Usage(cur.swap_total, swap_used, cur.swap_free, percent(swap_used, cur.swap_total)),
        rx_bytes=cur.rx_bytes,
        tx_bytes=cur.tx_bytes,
        rx_rate=rx_rate,
        tx_rate=tx_rate,
        uptime=int(cur.uptime),
    )


# --- the edge: psutil and /sys ------------------------------------------------------


class MachineReader:
    """Reads the host's cumulative counters; about 0.2 ms per reading here."""

    def __init__(self, disk_path: str = "/", *, include_virtual: bool = False,
                 virtual_dir: str = VIRTUAL_NET_DIR) -> None:
        self.disk_path = disk_path
        self.include_virtual = include_virtual
        self.virtual_dir = virtual_dir
        self.disk_error: str | None = None
        self._boot_time = psutil.boot_time()
        self._names: frozenset[str] = frozenset()
        self._counted: list[str] = []

    def read(self) -> Reading:
        wall = time.time()
        mono = time.monotonic()
        cores = tuple(cpu_counters(t) for t in psutil.cpu_times(percpu=True))
        mem = psutil.virtual_memory()
        swap = psutil.swap_memory()
        # The raw counters (64-bit on Linux): psutil's wrap bookkeeping keeps 8 numbers
        # for every interface it ever saw, and every container adds a veth.
        nics = psutil.net_io_counters(pernic=True, nowrap=False)
        rx = tx = 0
        for name in self._interfaces(nics):
            counters = nics.get(name)
            if counters is not None:
                rx += counters.bytes_recv
                tx += counters.bytes_sent
        return Reading(
            monotonic=mono,
            wall=wall,
            cores=cores,
            memory_total=int(mem.total),
            memory_available=int(mem.available),
            swap_total=int(swap.total),
            swap_free=int(swap.free),
            disk=self._disk(),
            rx_bytes=rx,
            tx_bytes=tx,
            load=os.getloadavg(),
            uptime=max(0.0, wall - self._boot_time),
        )

    def _disk(self) -> DiskReading | None:
        try:
            reading = disk_from_statvfs(os.statvfs(self.disk_path))
        except OSError as exc:
            self.disk_error = f"{self.disk_path}: {exc.strerror or exc}"
            return None
        self.disk_error = None
        return reading

    def _interfaces(self, nics: Mapping[str, Any]) -> list[str]:
        # Interfaces come and go with containers (veth*): recompute the counted set only
        # when the names change; the loopback check (an ioctl per interface) is the
        # expensive part.
        names = frozenset(nics)
        if names != self._names:
            self._names = names
            self._counted = counted_interfaces(
                names,
                virtual=self._virtual(),
                loopback=self._loopback(),
                include_virtual=self.include_virtual,
            )
        return self._counted

    def _virtual(self) -> set[str]:
        try:
            return set(os.listdir(self.virtual_dir))
        except OSError:
            return set()

    @staticmethod
    def _loopback() -> set[str]:
        try:
            stats = psutil.net_if_stats()
        except OSError:
            return {"lo"}
        return {name for name, st in stats.items() if "loopback" in st.flags.split(",")} | {"lo"}
