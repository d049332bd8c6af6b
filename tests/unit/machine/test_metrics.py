"""The pure parts of the metrics gateway: CPU math, interface rule, df math, the message."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from openpanel_ws.gateways.metrics import metrics_message, next_deadline
from openpanel_ws.machine.metrics import (
    CpuCounters,
    DiskReading,
    MachineReader,
    Reading,
    counted_interfaces,
    cpu_counters,
    cpu_percent,
    disk_from_statvfs,
    machine_sample,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "metrics" / "readings.json"


def reading(raw: dict[str, Any]) -> Reading:
    return Reading(
        monotonic=raw["monotonic"],
        wall=raw["wall"],
        cores=tuple(CpuCounters(busy, total) for busy, total in raw["cores"]),
        memory_total=raw["memory_total"],
        memory_available=raw["memory_available"],
        swap_total=raw["swap_total"],
        swap_free=raw["swap_free"],
        disk=DiskReading(*raw["disk"]) if raw["disk"] else None,
        rx_bytes=raw["rx_bytes"],
        tx_bytes=raw["tx_bytes"],
        load=tuple(raw["load"]),  # type: ignore[arg-type]
        uptime=raw["uptime"],
    )


def test_message_from_fixture_readings() -> None:
    data = json.loads(FIXTURE.read_text())
    assert metrics_message(machine_sample(reading(data["prev"]), reading(data["cur"]))) == data["expected"]


def test_without_baseline_cpu_and_rates_are_zero() -> None:
    data = json.loads(FIXTURE.read_text())
    msg = metrics_message(machine_sample(None, reading(data["cur"])))
    assert msg["system"]["cpu"]["usage"] == 0.0
    assert msg["system"]["cpu"]["perCore"] == [0.0, 0.0]
    assert msg["system"]["network"]["rx_rate"] == 0
    assert msg["system"]["network"]["rx_bytes"] == data["cur"]["rx_bytes"]


def test_counter_going_backwards_gives_zero_rate_and_unreadable_disk_gives_zeros() -> None:
    data = json.loads(FIXTURE.read_text())
    cur = dict(data["cur"], rx_bytes=5, disk=None)
    msg = metrics_message(machine_sample(reading(data["prev"]), reading(cur)))
    assert msg["system"]["network"]["rx_rate"] == 0
    assert msg["system"]["disk"] == {"total": 0, "used": 0, "free": 0, "percent": 0.0}


def test_cpu_counters_follow_psutil_accounting() -> None:
    fields = psutil.cpu_times()._fields
    values = dict.fromkeys(fields, 0.0)
    values.update(user=10.0, system=5.0, idle=80.0)
    if "iowait" in values:
        values["iowait"] = 5.0
    if "guest" in values:
        values["user"] += 3.0  # guest time is already counted in user
        values["guest"] = 3.0
    times = type(psutil.cpu_times())(**values)
    counters = cpu_counters(times)
    iowait = 5.0 if "iowait" in fields else 0.0
    assert counters.total == pytest.approx(10.0 + 5.0 + 80.0 + iowait + (3.0 if "guest" in fields else 0))
    assert counters.busy == pytest.approx(counters.total - 80.0 - iowait)


@pytest.mark.parametrize(
    ("prev", "cur", "expected"),
    [
        ((0, 0), (50, 100), 50.0),
        ((10, 100), (10, 200), 0.0),      # idle
        ((10, 100), (110, 200), 100.0),   # fully busy
        ((10, 100), (10, 100), 0.0),      # no time passed
        ((10, 100), (5, 90), 0.0),        # counters went backwards (CPU hot-unplug)
        ((0, 0), (1, 3), 33.3),
    ],
)
def test_cpu_percent(prev: tuple[float, float], cur: tuple[float, float], expected: float) -> None:
    assert cpu_percent(CpuCounters(*prev), CpuCounters(*cur)) == expected


def test_samplers_with_different_periods_do_not_disturb_each_other() -> None:
    # One shared stream of readings; each sampler keeps its own previous reading.
    r0, r1, r2 = CpuCounters(0, 0), CpuCounters(100, 100), CpuCounters(100, 200)
    slow = cpu_percent(r0, r2)  # sampler of period 2
    fast = cpu_percent(r1, r2)  # sampler of period 1, which also read r1
    assert (slow, fast) == (50.0, 0.0)


def test_interface_rule() -> None:
    names = ["lo", "eth0", "wlan0", "docker0", "veth12", "br-1", "ifb0"]
    virtual = ["lo", "docker0", "veth12", "br-1", "ifb0"]
    assert counted_interfaces(names, virtual=virtual, loopback=["lo"], include_virtual=False) == [
        "eth0", "wlan0"]
    assert counted_interfaces(names, virtual=virtual, loopback=["lo"], include_virtual=True) == [
        "br-1", "docker0", "eth0", "ifb0", "veth12", "wlan0"]


def test_disk_like_df() -> None:
    # bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, namemax
    st = os.statvfs_result((4096, 4096, 1000, 300, 250, 0, 0, 0, 0, 255))
    disk = disk_from_statvfs(st)
    assert disk == DiskReading(total=4096000, used=700 * 4096, free=250 * 4096)
    assert disk.used + disk.free < disk.total  # reserved blocks


def test_next_deadline_keeps_phase_and_skips_missed_slots() -> None:
    assert next_deadline(10.0, 1.0, 10.2) == 11.0
    assert next_deadline(10.0, 1.0, 13.5) == 14.0  # 11, 12, 13 missed: no burst
    assert next_deadline(10.0, 0.5, 11.0) == 11.5


def test_host_reader_applies_the_virtual_directory(tmp_path: Path) -> None:
    nics = psutil.net_io_counters(pernic=True)
    real = [n for n in nics if n != "lo"]
    if not real:
        pytest.skip("no non-loopback interface")
    # Pretend every interface is virtual: nothing counts unless virtual ones are included.
    for name in nics:
        (tmp_path / name).mkdir()
    excluded = MachineReader("/", virtual_dir=str(tmp_path)).read()
    assert (excluded.rx_bytes, excluded.tx_bytes) == (0, 0)
    included = MachineReader("/", include_virtual=True, virtual_dir=str(tmp_path)).read()
    assert included.rx_bytes >= sum(nics[n].bytes_recv for n in real)


def test_host_reader_unreadable_disk_path() -> None:
    reader = MachineReader("/nonexistent/openpanel-ws")
    assert reader.read().disk is None
    assert reader.disk_error is not None and "/nonexistent/openpanel-ws" in reader.disk_error


def test_message_bytes_keep_the_fixture_field_order() -> None:
    # The gateway builds the wire message from a `MachineSample`: same bytes, same order.
    data = json.loads(FIXTURE.read_text())
    msg = metrics_message(machine_sample(reading(data["prev"]), reading(data["cur"])))
    assert orjson.dumps(msg) == orjson.dumps(data["expected"])


def test_sample_is_plain_data_the_message_is_built_from() -> None:
    data = json.loads(FIXTURE.read_text())
    sample = machine_sample(reading(data["prev"]), reading(data["cur"]))
    assert sample.cores == len(data["cur"]["cores"]) == len(sample.per_core)
    assert sample.memory.used == data["cur"]["memory_total"] - data["cur"]["memory_available"]
    assert metrics_message(sample)["system"]["cpu"]["usage"] == sample.cpu_usage


def test_reader_keeps_nothing_per_interface_that_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every container adds a veth and takes it away. psutil's overflow bookkeeping
    (`nowrap=True`) kept 8 counters for every interface it ever saw (its dead-key cleanup
    only looks at counters that wrapped): the soak's growth (tests/soak). The reader asks
    for the raw counters; Linux's are 64-bit."""
    calls = iter(range(1_000_000))

    def fresh_interfaces() -> dict[str, tuple[int, ...]]:
        n = next(calls)  # each veth lives for three readings
        return {"lo": (n, n, 1, 1, 0, 0, 0, 0), f"veth{n // 3:07x}": (n, n, 1, 1, 0, 0, 0, 0)}

    monkeypatch.setattr(psutil._psplatform, "net_io_counters", fresh_interfaces)
    psutil.net_io_counters.cache_clear()
    reader = MachineReader()
    for _ in range(200):
        reader.read()
    _cache, reminders, _keys = psutil._common.wrap_numbers.cache_info()
    assert len(reminders.get("psutil.net_io_counters", {})) <= 2 * 8
