"""Terminal sessions' plain core: output ring and `seq`, caps and ownership, journal,
asciicast recorder (docs/terminal.md "Sessions")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from openpanel_ws.config import ConfigError, load_settings
from openpanel_ws.gateways.terminal.journal import TerminalJournal, owner_alive
from openpanel_ws.gateways.terminal.messages import parse_open
from openpanel_ws.gateways.terminal.recording import CastRecorder, header, play, read_cast, recording_name
from openpanel_ws.gateways.terminal.registry import TerminalRegistry
from openpanel_ws.gateways.terminal.ring import OutputRing, utf8_len
from openpanel_ws.protocol import ProtocolError

# --- ring and seq -----------------------------------------------------------------------


def test_seq_is_the_utf8_end_offset_of_each_message() -> None:
    ring = OutputRing(1024)
    assert [ring.append(t).end for t in ("ab", "ç", "日本", "😀")] == [2, 4, 10, 14]
    assert ring.seq == 14 and utf8_len("ç😀") == 6


def test_replay_from_last_seq_is_exactly_the_rest() -> None:
    ring = OutputRing(1024)
    for text in ("one ", "two ", "three"):
        ring.append(text)
    assert "".join(p.text for p in ring.replay(4).pieces) == "two three"
    assert ring.replay(4).start == 4
    assert ring.replay(13).pieces == ()
    assert "".join(p.text for p in ring.replay(None).pieces) == "one two three"


def test_replay_cut_inside_a_piece_keeps_whole_characters() -> None:
    ring = OutputRing(1024)
    ring.append("aé日b")  # a=0, é=1..2, 日=3..5, b=6
    assert [p.text for p in ring.replay(2).pieces] == ["日b"]  # the half é is dropped
    assert [p.text for p in ring.replay(3).pieces] == ["日b"]


def test_ring_drops_the_oldest_and_reports_the_gap() -> None:
    ring = OutputRing(10)
    for stream, text in (("a", "aaaa"), ("b", "bbbb"), ("a", "cccc")):
        ring.append(text, stream)  # alternating streams: never merged
    assert ring.held == 8 and ring.first == 4
    replay = ring.replay(0)  # the client had nothing past 0: 4 bytes are gone
    assert replay.start == 4 and "".join(p.text for p in replay.pieces) == "bbbbcccc"
    big = OutputRing(3)
    big.append("x" * 50)  # the last piece always stays
    assert big.held == 50


def test_last_seq_range() -> None:
    ring = OutputRing(16)
    ring.append("abc")
    assert ring.valid_last_seq(0) and ring.valid_last_seq(3)
    assert not ring.valid_last_seq(4) and not ring.valid_last_seq(-1)


def test_parse_open_resume_fields() -> None:
    request = parse_open({"containerId": "c", "sessionId": "session-1", "lastSeq": 42})
    assert request.session_id == "session-1" and request.last_seq == 42
    for bad in ({"containerId": "c", "lastSeq": 1},
                {"containerId": "c", "sessionId": "s", "lastSeq": -1},
                {"containerId": "c", "sessionId": "s", "lastSeq": "1"},
                {"containerId": "c", "sessionId": 7}):
        with pytest.raises(ProtocolError) as info:
            parse_open(bad)
        assert info.value.field in ("lastSeq", "sessionId")


# --- caps -------------------------------------------------------------------------------


def test_caps_per_user_and_total() -> None:
    reg: TerminalRegistry[str] = TerminalRegistry(max_per_user=2, max_total=3)
    assert reg.reserve("s1", "alice") is None
    assert reg.reserve("s2", "alice") is None
    refusal = reg.reserve("s3", "alice")
    assert refusal is not None and "at most 2" in refusal
    assert reg.reserve("s4", "bob") is None
    refusal = reg.reserve("s5", "carol")
    assert refusal is not None and "at most 3" in refusal
    reg.remove("s2")  # an unfilled reservation given back
    assert reg.count("alice") == 1 and len(reg) == 2
    reg.add("s1", "terminal-1")
    assert reg.lookup("s1", "alice") == "terminal-1"
    assert reg.lookup("s1", "bob") is None and reg.lookup("nope", "alice") is None
    reg.remove("s1")
    reg.remove("s1")  # idempotent
    assert reg.count("alice") == 0 and len(reg) == 1


# --- journal ----------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_journal_claims_only_rows_of_dead_owners(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    dead = TerminalJournal(path, pid=_dead_pid())
    dead.start = 12345.0
    dead.record_open("s-dead", "c1", "e1", "OPENPANEL_WS_SESSION=s-dead", "/bin/sh", "local")
    live = TerminalJournal(path, pid=os.getppid())  # a live process that is not us
    live.record_open("s-live", "c1", "e2", "OPENPANEL_WS_SESSION=s-live", "/bin/sh", "local")
    me = TerminalJournal(path)
    me.record_open("s-mine", "c1", "e3", "OPENPANEL_WS_SESSION=s-mine", "/bin/sh", "local")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    claimed = me.claim_orphans()
    assert [e.session_id for e in claimed] == ["s-dead"]
    assert me.claim_orphans() == []  # now ours: not claimed twice
    owners = {e.session_id: e.owner_pid for e in me.entries()}
    assert owners == {"s-dead": os.getpid(), "s-live": os.getppid(), "s-mine": os.getpid()}
    me.record_close("s-dead")
    assert {e.session_id for e in me.entries()} == {"s-live", "s-mine"}


def test_pid_reuse_is_not_a_live_owner(tmp_path: Path) -> None:
    journal = TerminalJournal(tmp_path / "j.sqlite3")
    journal.record_open("s", "c", "e", "m", "/bin/sh", "local")
    (entry,) = journal.entries()
    assert owner_alive(entry)
    reused = entry.__class__(**{**{f: getattr(entry, f) for f in entry.__slots__},
                                "owner_start": entry.owner_start - 3600})
    assert not owner_alive(reused)


# --- recording --------------------------------------------------------------------------


def test_recording_file(tmp_path: Path) -> None:
    name = recording_name(0.0, "al/ice", "web 1", "session-ab")
    assert name == "19700101T000000Z_al-ice_web-1_session-ab.cast"
    rec = CastRecorder.create(tmp_path / "d", name, header(80, 24, 100.0, "xterm"), 10.0)
    rec.output("héllo", 10.5)
    rec.input("secret\n", 10.6)  # not recorded without record_input
    rec.resize(100, 30, 11.0)
    rec.close()
    rec.output("after close", 12.0)
    path = tmp_path / "d" / name
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    head, events = read_cast(path)
    assert head == {"version": 2, "width": 80, "height": 24, "timestamp": 100,
                    "env": {"TERM": "xterm"}}
    assert events == [(0.5, "o", "héllo"), (1.0, "r", "100x30")]
    with pytest.raises(FileExistsError):
        CastRecorder.create(tmp_path / "d", name, {}, 0.0)


def test_full_disk_stops_recording_once(caplog: pytest.LogCaptureFixture) -> None:
    fd = os.open("/dev/full", os.O_WRONLY)
    rec = CastRecorder(fd, "/dev/full", 0.0, record_input=True)
    rec.output("x", 1.0)
    rec.output("y", 2.0)
    rec.input("z", 3.0)
    assert not rec.active
    errors = [r for r in caplog.records if "recording" in r.getMessage()]
    assert len(errors) == 1


def test_play_paces_and_caps_pauses() -> None:
    out: list[str] = []
    waits: list[float] = []
    events = [(0.5, "o", "a"), (0.6, "r", "1x1"), (10.0, "o", "b"), (10.5, "i", "k")]
    play(events, out.append, waits.append, speed=2.0, max_wait=1.0)
    assert out == ["a", "b"] and waits == [0.25, 0.5]


def test_cast_lines_are_asciicast_v2(tmp_path: Path) -> None:
    rec = CastRecorder.create(tmp_path, "x.cast", header(10, 5, 0, "xterm-256color"), 0.0,
                              record_input=True)
    rec.input("ls\r", 0.25)
    rec.output("\x1b[1mbold\x1b[0m", 0.5)
    lines = (tmp_path / "x.cast").read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines[1:]] == [[0.25, "i", "ls\r"],
                                                          [0.5, "o", "\x1b[1mbold\x1b[0m"]]


# --- settings ---------------------------------------------------------------------------


def test_settings() -> None:
    settings = load_settings(environ={})
    assert (settings.terminal_grace, settings.terminal_ring_bytes,
            settings.terminal_max_per_user, settings.terminal_max) == (60.0, 262144, 8, 256)
    assert settings.terminal_record_dir is None and settings.terminal_record_input is False
    env = {"OPENPANEL_WS_TERMINAL_GRACE": "0", "OPENPANEL_WS_TERMINAL_RECORD_DIR": "/tmp/casts",
           "OPENPANEL_WS_TERMINAL_RECORD_INPUT": "true"}
    settings = load_settings(environ=env)
    assert settings.terminal_grace == 0 and settings.terminal_record_dir == Path("/tmp/casts")
    assert settings.terminal_record_input is True
    for key, value in (("OPENPANEL_WS_TERMINAL_GRACE", "-1"),
                       ("OPENPANEL_WS_TERMINAL_MAX_PER_USER", "0")):
        with pytest.raises(ConfigError, match=key):
            load_settings(environ={key: value})


def test_small_pieces_share_one_entry_and_still_replay_exactly() -> None:
    ring = OutputRing(1 << 20)
    for i in range(1000):
        ring.append(f"{i % 10}")
    assert len(ring.pieces()) == 1 and ring.seq == 1000
    assert "".join(p.text for p in ring.replay(995).pieces) == "56789"
    ring.append("e", "stderr")  # another stream: its own piece
    assert [p[1] for p in ring.pieces()] == [None, "stderr"]
