"""A detached terminal reads no more than its ring holds (docs/terminal.md "Sessions"),
and recordings stop at their caps (docs/terminal.md "Recording")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, cast

import pytest

from openpanel_ws.config import ConfigError, Settings, load_settings
from openpanel_ws.gateways.terminal.lifecycle import TerminalLifecycle
from openpanel_ws.gateways.terminal.live import READ_SIZE, Terminal
from openpanel_ws.gateways.terminal.recording import (
    CastRecorder,
    RecordingFull,
    RecordingQuota,
    header,
    quota_for,
    read_cast,
)
from openpanel_ws.gateways.terminal.ring import OutputRing

# --- the ring's room ------------------------------------------------------------------


def test_room_after_the_detach_point() -> None:
    ring = OutputRing(100)
    ring.append("x" * 70)
    mark = ring.seq
    assert ring.room_after(mark) == 100
    ring.append("y" * 60)
    assert ring.room_after(mark) == 40
    ring.append("z" * 40)
    assert ring.room_after(mark) == 0
    # Everything since the mark is still held: a resume from it loses nothing.
    assert ring.replay(mark).start == mark
    ring.append("w")
    assert ring.room_after(mark) == 0


# --- the pump of a detached terminal --------------------------------------------------


class EndlessProc:
    """An exec that always has output (`yes`): counts what was read of it."""

    tty = True
    stdin = True

    def __init__(self) -> None:
        self.read_bytes = 0
        self.sizes: list[int] = []

    async def read(self, size: int = READ_SIZE) -> bytes:
        await asyncio.sleep(0)
        self.sizes.append(size)
        self.read_bytes += size
        return b"y" * size


class FakeGateway:
    def __init__(self, ring: int) -> None:
        self.settings = Settings(terminal_ring_bytes=ring)


class FakeSession:
    def __init__(self) -> None:
        self.state: Any = None
        self.backlog = 0.0
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> bool:
        self.sent.append(message)
        return True


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_a_detached_terminal_stops_reading_once_its_ring_is_full() -> None:
    lifecycle = TerminalLifecycle(session_id="session-1", host="local", container_ref="web",
                                  container_id="c1", container_name="web", shell="/bin/sh",
                                  started_at=0.0, idle_timeout=600.0, now=time.monotonic())
    proc = EndlessProc()
    terminal = Terminal(cast(Any, FakeGateway(ring=1000)), cast(Any, None), lifecycle,
                        cast(Any, proc), user="alice", client_id="c", remote="r", cols=80, rows=24)
    terminal.start_grace(600.0)  # detached from the start, as after a reload
    terminal.start_tasks()
    try:
        await _settle()
        # Exactly the ring's room is read, then nothing: the program blocks.
        assert proc.read_bytes == 1000 and terminal.ring.seq == 1000
        assert proc.sizes == [1000]
        session = FakeSession()
        terminal.attach(cast(Any, session))
        await _settle()
        assert proc.read_bytes > 1000 and max(proc.sizes) == READ_SIZE  # reading again
        assert session.sent  # live output goes to the client
        terminal.start_grace(600.0)  # detached again: a new room from here
        terminal.attached = None
        await _settle()
        seq = terminal.ring.seq
        await _settle()
        assert terminal.ring.seq == seq
        assert terminal.ring.replay(seq - 1000).start == seq - 1000
    finally:
        for task in (terminal._pump, terminal._idle):
            assert task is not None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert terminal._grace is not None
        terminal._grace.cancel()


# --- recording caps -------------------------------------------------------------------


def test_quota_refusals() -> None:
    quota = RecordingQuota(file_max=100, dir_max=150, dir_used=120)
    assert quota.refusal(50, 30) is None
    assert "terminal_record_max_bytes" in str(quota.refusal(80, 30))
    assert "terminal_record_dir_max_bytes" in str(quota.refusal(10, 40))


def test_a_recording_stops_at_its_file_cap_once(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    quota = quota_for(tmp_path, file_max=300, dir_max=10_000)
    rec = CastRecorder.create(tmp_path, "a.cast", header(80, 24, 0, "xterm"), 0.0, quota=quota)
    with caplog.at_level(logging.WARNING):
        for i in range(100):
            rec.output(f"line {i}\r\n", float(i))
    assert not rec.active
    size = (tmp_path / "a.cast").stat().st_size
    assert 250 < size <= 300 and rec.size == size
    _head, events = read_cast(tmp_path / "a.cast")
    assert events and all(code == "o" for _at, code, _data in events)  # whole lines only
    stops = [r.getMessage() for r in caplog.records if "stopped" in r.getMessage()]
    assert len(stops) == 1 and "terminal_record_max_bytes" in stops[0]


def test_the_directory_cap_holds_across_recordings(tmp_path: Path) -> None:
    (tmp_path / "old.cast").write_bytes(b"x" * 500)
    (tmp_path / "notes.txt").write_bytes(b"x" * 5000)  # not a recording: not counted
    first = CastRecorder.create(tmp_path, "a.cast", {}, 0.0,
                                quota=quota_for(tmp_path, file_max=10_000, dir_max=1000))
    second = CastRecorder.create(tmp_path, "b.cast", {}, 0.0,
                                 quota=quota_for(tmp_path, file_max=10_000, dir_max=1000))
    for i in range(100):
        first.output("a" * 20, float(i))
        second.output("b" * 20, float(i))
    assert not first.active and not second.active
    used = sum(p.stat().st_size for p in tmp_path.glob("*.cast"))
    assert 900 < used <= 1000
    quota = quota_for(tmp_path, file_max=10_000, dir_max=used)
    with pytest.raises(RecordingFull, match="terminal_record_dir_max_bytes"):
        CastRecorder.create(tmp_path, "c.cast", {}, 0.0, quota=quota)
    assert not (tmp_path / "c.cast").exists()
    (tmp_path / "old.cast").unlink()  # an operator made room: measured again
    third = CastRecorder.create(tmp_path, "c.cast", {}, 0.0,
                                quota=quota_for(tmp_path, file_max=10_000, dir_max=used))
    assert third.active
    third.close()


def test_a_reopened_recording_keeps_its_size(tmp_path: Path) -> None:
    path = tmp_path / "a.cast"
    path.write_bytes(b"x" * 200)
    path.chmod(0o600)  # recordings are private (statedir refuses anything else)
    quota = quota_for(tmp_path, file_max=250, dir_max=10_000)
    rec = CastRecorder.reopen(str(path), 0.0, record_input=False, quota=quota)
    assert rec.size == 200
    rec.output("y" * 100, 1.0)
    assert not rec.active and path.stat().st_size == 200


def test_cap_settings() -> None:
    settings = load_settings(environ={})
    assert settings.terminal_record_max_bytes == 64 * 1024 * 1024
    assert settings.terminal_record_dir_max_bytes == 1024 * 1024 * 1024
    settings = load_settings(environ={"OPENPANEL_WS_TERMINAL_RECORD_MAX_BYTES": "1000",
                                      "OPENPANEL_WS_TERMINAL_RECORD_DIR_MAX_BYTES": "5000"})
    assert (settings.terminal_record_max_bytes, settings.terminal_record_dir_max_bytes) == (1000, 5000)
    with pytest.raises(ConfigError, match="OPENPANEL_WS_TERMINAL_RECORD_MAX_BYTES"):
        load_settings(environ={"OPENPANEL_WS_TERMINAL_RECORD_MAX_BYTES": "0"})
