"""Pure helpers of the client CLI: argument parsing and output formats."""

from __future__ import annotations

import pytest

from openpanel_ws.client import DockerEvent, StatsSample, SystemLog, gateway_url
from openpanel_ws.client.cli_text import (
    UsageError,
    format_event,
    human_bytes,
    since_option,
    stats_table,
    tail_option,
)


def test_human_bytes_like_docker_stats() -> None:
    assert human_bytes(512) == "512B"
    assert human_bytes(524288000) == "500MiB"
    assert human_bytes(2087354368) == "1.944GiB"
    assert human_bytes(1024000, binary=False) == "1.02MB"
    assert human_bytes(648, binary=False) == "648B"


def test_since_option() -> None:
    assert since_option("10m", now=1000.0) == 400.0
    assert since_option("1h30m", now=10000.0) == 4600.0
    assert since_option("1700000000.5") == 1700000000.5
    assert since_option("2025-12-03T10:00:00Z") == "2025-12-03T10:00:00Z"
    with pytest.raises(UsageError):
        since_option("yesterday")


def test_tail_option() -> None:
    assert tail_option("all") == "all"
    assert tail_option("0") == 0
    with pytest.raises(UsageError):
        tail_option("-3")


def test_gateway_url_normalises_the_base() -> None:
    assert gateway_url("ws://h:1", "logs") == "ws://h:1/ws/logs"
    assert gateway_url("http://h:1/", "metrics") == "ws://h:1/ws/metrics"
    assert gateway_url("https://h/ws/containers", "terminal") == "wss://h/ws/terminal"
    assert gateway_url("h:1", "logs") == "ws://h:1/ws/logs"


def test_event_lines() -> None:
    ev = DockerEvent("2025-12-03T10:00:00Z", {"Type": "container", "Action": "start",
                                               "Actor": {"ID": "abc", "Attributes": {"name": "web"}}})
    assert format_event(ev) == "2025-12-03T10:00:00Z container start abc (name=web)"
    log = SystemLog("2025-12-03T10:00:00Z", "info", "Container web started", "docker")
    assert format_event(log) == "2025-12-03T10:00:00Z [info] docker: Container web started"


def test_stats_table() -> None:
    s = StatsSample("web", "t", 1.5, 1048576, 1073741824, 0.1, 1000, 2000, {})
    lines = stats_table({"web": s}).splitlines()
    assert lines[0].startswith("CONTAINER") and "MEM USAGE / LIMIT" in lines[0]
    assert lines[1].split() == ["web", "1.50%", "1MiB", "/", "1GiB", "0.10%", "1kB", "/", "2kB"]
