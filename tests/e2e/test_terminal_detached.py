"""A detached terminal applies backpressure, and recordings have size caps, end to end
(docs/terminal.md "Sessions" and "Recording").

The probes print their figures (run with `-s`): the gateway's CPU time while a `yes`
runs detached, what the shell produced meanwhile, and the recordings' sizes. The server
runs in this process, and this process is idle while the terminal is detached, so the
process's CPU time over that window is the gateway's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from test_terminal import TIMEOUT, leftovers, opened
from test_terminal_sessions import SeqTerm, casts, drop, seq_terminal

from helpers import Containers, eventually
from openpanel_ws.server import GATEWAYS_KEY

RING = 256 * 1024
DETACHED_FOR = 8.0  # seconds of the grace watched (the grace itself is 60 s)
# A gateway that stopped reading is nearly idle; reading `yes` at engine speed took
# 53-76 % of a core (10 % on a loaded 2-core test machine, 0.1 % once it stops reading).
CPU_BOUND = 0.05


async def test_yes_in_a_detached_terminal_is_not_read_at_engine_speed(
        make_server: Any, containers: Containers, tmp_path: Path) -> None:
    record_dir = tmp_path / "casts"
    srv = await make_server(terminal_ring_bytes=RING, terminal_record_dir=record_dir)
    name = await containers.run()
    term = await seq_terminal(srv)
    session_id = (await term.open(name))["sessionId"]
    await term.type("yes 0123456789012345678901234567890123456789\n")
    await _read_up_to(term, 100_000)
    gateway = srv.app[GATEWAYS_KEY]["terminal"]
    (live,) = gateway._terminals
    drop(term)
    await eventually(lambda: gateway.detached_terminals == 1, timeout=TIMEOUT)
    (cast,) = casts(record_dir)
    seq_before, size_before = live.ring.seq, cast.stat().st_size
    cpu_before, wall_before = time.process_time(), time.monotonic()
    await asyncio.sleep(DETACHED_FOR)
    cpu = time.process_time() - cpu_before
    wall = time.monotonic() - wall_before
    produced = live.ring.seq - seq_before
    grown = cast.stat().st_size - size_before
    print(f"\n[detached yes] gateway CPU {cpu:.2f} s over {wall:.1f} s ({cpu / wall:.0%} of a "
          f"core); output read while detached {produced} bytes; recording grew {grown} bytes "
          f"to {cast.stat().st_size} bytes")
    assert cpu < CPU_BOUND * wall, f"the gateway kept reading: {cpu:.2f} s CPU in {wall:.1f} s"
    assert produced <= RING, produced  # it stops reading once the ring is full

    # The resume contract holds: the replay says where it starts, every later byte
    # arrives once (SeqTerm checks each seq), and reading goes on after the replay.
    again = await seq_terminal(srv)
    reply = await again.open(name, sessionId=session_id, lastSeq=term.seq)
    assert reply["type"] == "terminal_opened" and reply["resumed"] is True, reply
    assert reply["seq"] >= (term.seq or 0)
    again.seq = reply["seq"]
    await _read_up_to(again, live.ring.seq + 4 * RING)  # past what was held: it runs again
    assert set(again.text.split("\r\n")[1:-1]) == {"0123456789012345678901234567890123456789"}
    await again.send({"type": "close_terminal"})
    await again.closed(timeout=60)
    assert await leftovers(name) == []


async def _read_up_to(term: SeqTerm, seq: int) -> None:
    by = time.monotonic() + TIMEOUT
    while term.seq is None or term.seq < seq:
        assert time.monotonic() < by, (term.seq, seq)
        term.take(await term.client.recv_by(by))


FILE_CAP = 200_000
DIR_CAP = 300_000
MAX_EVENT = 2 * 65536 + 64  # one read, JSON-escaped ("\r\n" takes 4 bytes)
# 40,000 lines (480 kB of output, more in the recording's JSON) are enough to pass
# either cap; the finding was an unbounded `yes`.
PRINT = "yes 0123456789 | head -n 40000; echo DO\"\"NE\n"


async def _print_and_close(srv: Any, name: str) -> None:
    term = await opened(srv, name)
    await term.type(PRINT)
    await term.until("DONE\r\n", timeout=60)  # the terminal goes on past a cap
    await term.send({"type": "close_terminal"})
    await term.closed(timeout=60)


async def test_recordings_stop_at_the_file_and_directory_caps(
        make_server: Any, containers: Containers, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    record_dir = tmp_path / "casts"
    srv = await make_server(terminal_record_dir=record_dir, terminal_record_max_bytes=FILE_CAP,
                            terminal_record_dir_max_bytes=DIR_CAP)
    name = await containers.run()
    caplog.set_level(logging.INFO, logger="openpanel_ws.gateways.terminal")
    await _print_and_close(srv, name)
    (first,) = casts(record_dir)
    await _print_and_close(srv, name)
    (second,) = set(casts(record_dir)) - {first}
    await _print_and_close(srv, name)  # the directory is (nearly) full: the terminal works
    rest = sorted(set(casts(record_dir)) - {first, second})
    sizes = [path.stat().st_size for path in (first, second, *rest)]
    print(f"\n[recording caps] file cap {FILE_CAP}, directory cap {DIR_CAP}: recordings "
          f"{sizes} bytes, {sum(sizes)} bytes in all")
    # A recording stops before the event that would pass a cap: whole events only.
    assert FILE_CAP - MAX_EVENT < sizes[0] <= FILE_CAP
    assert sum(sizes) <= DIR_CAP and sum(sizes) > DIR_CAP - MAX_EVENT
    stops = [r.getMessage() for r in caplog.records if "recording" in r.getMessage()
             and ("stopped" in r.getMessage() or "not started" in r.getMessage())]
    assert len(stops) == 3, stops  # one line per session
