"""The CI slice of the soak (tests/soak/soak.py, docs/testing.md "Long soak"): about three
minutes of the same mixed load, smaller, against a real server process and the real
engine. It asserts counts, never RSS or timings: no line lost or repeated, no error or
traceback, and once the churn has stopped, file descriptors, tasks, timers, sessions,
handshake entries and the live instances of every `openpanel_ws` class back to what
they were before it (what grows with past connections is a leak).

It runs in the parallel pass: nothing it asserts depends on the machine being quiet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from helpers import TIMEOUT_FACTOR
from soak import Plan, Soak

pytestmark = pytest.mark.timeout(900)

SLICE = Plan(minutes=1.5, warmup=20.0, interval=15.0, followers=10, stats=3, metrics=3, logs=2,
             tracemalloc=0)

# Tables whose size follows the rate of what happens, not how much happened: they are
# compared with a slack instead of exactly.
RATE_BOUND: dict[str, int] = {
    # Keys of the engine events of the last RESUME_MARGIN_NS (engine/eventdata.Deduper).
    "openpanel_ws.engine.eventdata.Deduper._order": 64,
    "openpanel_ws.engine.eventdata.Deduper._seen": 64,
    # The machine's interface and disk names seen (docker adds a veth per container).
    "openpanel_ws.machine.metrics.MachineReader._names": 64,
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def report(engine: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir: Path = tmp_path_factory.mktemp("soak")
    soak = Soak(SLICE, workdir, timeout=30.0 * TIMEOUT_FACTOR)
    result = await soak.run(progress=lambda text: None)
    result["server_log_tail"] = (workdir / "server.log").read_text(errors="replace")[-4000:]
    return result


@pytest.mark.asyncio(loop_scope="module")
async def test_no_line_lost_or_repeated_and_nothing_failed(report: dict[str, Any]) -> None:
    assert report["lines"] > 0
    assert report["gaps"] == 0
    assert report["duplicates"] == 0
    assert report["errors"] == 0, report["error_samples"]
    assert report["reconnects"] == 0
    assert report["tracebacks"] == 0, report["server_log_tail"]
    assert report["server_error_lines"] == [], report["server_error_lines"]
    assert report["leftover_processes"] == []
    cycles = report["cycles"]
    assert all(cycles.get(f"shape{k}", 0) > 0 for k in range(7)), cycles
    assert all(cycles.get(f"terminal{k}", 0) > 0 for k in range(3)), cycles
    assert cycles.get("container", 0) > 0, cycles


@pytest.mark.asyncio(loop_scope="module")
async def test_fds_tasks_timers_and_sessions_back_to_baseline(report: dict[str, Any]) -> None:
    assert report["end"]["fds"] <= report["baseline"]["fds"], (report["baseline"], report["end"])
    assert report["tracked_grown"] == {}, report["tracked_grown"]


@pytest.mark.asyncio(loop_scope="module")
async def test_no_object_or_table_grows_with_past_connections(report: dict[str, Any]) -> None:
    assert report["objects_grown"] == {}
    tables = {key: sizes for key, sizes in report["tables_grown"].items()
              if sizes[1] > sizes[0] + RATE_BOUND.get(key, 0)}
    assert tables == {}
