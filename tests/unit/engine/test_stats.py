"""Docker CLI stats math on recorded engine payloads (tests/fixtures/containers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openpanel_ws.engine.stats import (
    Pacer,
    block_io_bytes,
    compute,
    cpu_percent,
    is_running_sample,
    memory_usage,
    network_bytes,
)
from openpanel_ws.gateways.containers.stats import stats_message

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "containers"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def load_lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def test_cpu_percent_is_the_cli_formula_on_a_half_cpu_busy_loop() -> None:
    sample = load("stats_v1.json")
    cpu, pre = sample["cpu_stats"], sample["precpu_stats"]
    expected = ((cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"])
                / (cpu["system_cpu_usage"] - pre["system_cpu_usage"]) * cpu["online_cpus"] * 100)
    assert cpu_percent(sample) == pytest.approx(expected)
    assert cpu_percent(sample) == pytest.approx(50, abs=2)  # --cpus 0.5


def test_matches_the_docker_cli_reading_of_the_same_container() -> None:
    stats = compute(load("stats_v1.json"))
    cli = load("docker_stats_cli.json")
    assert stats is not None
    assert stats.memory_usage / 1024**2 == pytest.approx(float(cli["MemUsage"].split("MiB")[0]), abs=0.001)
    assert stats.memory_limit == 64 * 1024**2
    assert stats.memory_percent == pytest.approx(float(cli["MemPerc"].rstrip("%")), abs=0.01)
    assert stats.cpu_percent == pytest.approx(float(cli["CPUPerc"].rstrip("%")), abs=2)
    assert stats.pids == int(cli["PIDs"])
    assert stats.rx_bytes == 586 and stats.tx_bytes == 0


def test_first_sample_of_a_stream_has_no_cpu_baseline() -> None:
    samples = load_lines("stats_stream_v1.jsonl")
    assert cpu_percent(samples[0]) is None
    assert compute(samples[0]) is None
    values = [compute(s) for s in samples[1:]]
    assert all(v is not None and v.cpu_percent == pytest.approx(50, abs=5) for v in values)
    assert compute(load("stats_oneshot_v1.json")) is None  # one-shot: no precpu either


def test_memory_excludes_inactive_file_on_cgroup_v1() -> None:
    sample = load("stats_oneshot_v1.json")
    memory = sample["memory_stats"]
    assert memory["stats"]["total_inactive_file"] == 8 * 1024**2
    assert memory_usage(sample) == memory["usage"] - memory["stats"]["total_inactive_file"]


def test_cgroup_v2_sample() -> None:
    sample = load("stats_v2_handwritten.json")
    stats = compute(sample)
    assert stats is not None
    assert stats.cpu_percent == pytest.approx(1e9 / 4e9 * 4 * 100)  # 100 %
    assert stats.memory_usage == 104857600 - 31457280
    assert stats.memory_percent == pytest.approx((104857600 - 31457280) / 268435456 * 100)
    assert network_bytes(sample) == (1300, 2400)
    assert block_io_bytes(sample) == (1048576 + 524288, 4194304)
    assert stats.pids == 7
    message = stats_message("web", stats)
    assert message["containerId"] == "web"
    assert message["timestamp"] == "2026-11-27T00:30:01.500000000Z"
    assert message["stats"]["cpu"] == {"usage": 100.0, "percent": 100.0}
    assert message["stats"]["memory"] == {"usage": 73400320, "limit": 268435456, "percent": 27.34}
    assert message["stats"]["network"] == {"rx_bytes": 1300, "tx_bytes": 2400}
    assert message["stats"]["blkio"] == {"read_bytes": 1572864, "write_bytes": 4194304}


def test_block_io_v1_uppercase_ops_and_total_ignored() -> None:
    sample = {"blkio_stats": {"io_service_bytes_recursive": [
        {"op": "Read", "value": 10}, {"op": "Write", "value": 20},
        {"op": "Sync", "value": 30}, {"op": "Total", "value": 30}, {"op": "", "value": 5}]}}
    assert block_io_bytes(sample) == (10, 20)
    assert block_io_bytes({"blkio_stats": {"io_service_bytes_recursive": None}}) == (0, 0)


def test_exited_container_samples_are_not_running() -> None:
    for sample in load_lines("stats_stream_exited_v1.jsonl"):
        assert not is_running_sample(sample)
        assert compute(sample) is None
    assert is_running_sample(load("stats_v1.json"))


def test_no_negative_or_zero_delta_cpu() -> None:
    sample = load("stats_v1.json")
    sample["cpu_stats"]["cpu_usage"]["total_usage"] = sample["precpu_stats"]["cpu_usage"]["total_usage"]
    assert cpu_percent(sample) == 0.0
    sample["cpu_stats"]["online_cpus"] = 0  # falls back to len(percpu_usage)
    sample["cpu_stats"]["cpu_usage"]["total_usage"] += 10**9
    system_delta = sample["cpu_stats"]["system_cpu_usage"] - sample["precpu_stats"]["system_cpu_usage"]
    assert cpu_percent(sample) == pytest.approx(1e9 / system_delta * 2 * 100)


def test_garbage_never_raises() -> None:
    # Not a running sample (no `read` time, or the wrong shapes): nothing to show.
    for junk in ({}, {"read": 5}, {"memory_stats": "x", "cpu_stats": [], "networks": {"eth0": None}}):
        assert compute(junk) is None, junk
    # A readable time but garbage numbers: a sample of zeros, never a bool taken for 1.
    stats = compute({"read": "2026-01-01T00:00:00Z", "memory_stats": {"usage": True},
                     "precpu_stats": {"system_cpu_usage": 1}})
    assert stats is not None
    assert stats.nanos == 1_767_225_600 * 10**9
    assert (stats.cpu_percent, stats.memory_usage, stats.memory_limit, stats.memory_percent) == (0, 0, 0, 0)
    assert (stats.rx_bytes, stats.tx_bytes, stats.blkio_read, stats.blkio_write, stats.pids) == (0,) * 5


@pytest.mark.parametrize(("interval", "expected"), [(0.5, 20), (1.0, 20), (2.0, 10), (2.5, 8), (5.0, 4)])
def test_pacer_over_one_hertz_samples(interval: float, expected: int) -> None:
    pacer = Pacer(interval)
    # 20 s of samples at ~1 Hz with jitter
    times = [i * 1.0 + (0.03 if i % 3 else -0.04) for i in range(20)]
    sent = [t for t in times if pacer.due(t)]
    assert len(sent) == expected
    assert sent[0] == times[0]  # the first sample goes out at once


def test_pacer_re_anchors_after_a_pause_and_resets() -> None:
    pacer = Pacer(2.0)
    assert pacer.due(0.0)
    assert not pacer.due(1.0)
    assert pacer.due(2.0)
    assert pacer.due(30.0)  # long gap: send, then a fresh schedule
    assert not pacer.due(31.0)
    assert pacer.due(32.0)
    pacer.reset()
    assert pacer.due(32.5)
