"""The terminal gateway's synchronous core: validation, decoding, state, audit records."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from openpanel_ws.engine.exec import start_failure_message
from openpanel_ws.gateways.terminal.audit import AuditLog, end_record, start_record
from openpanel_ws.gateways.terminal.lifecycle import Phase, TerminalLifecycle, new_session_id
from openpanel_ws.gateways.terminal.messages import (
    IDLE_TIMEOUT,
    PROCESS_EXITED,
    USER_CLOSED,
    TerminalRefused,
    closed_message,
    parse_input,
    parse_open,
    parse_resize,
)
from openpanel_ws.gateways.terminal.output import OutputDecoder
from openpanel_ws.protocol import ProtocolError

SAMPLE = "a àçãé 日本語 😀€ z"


# --- decoder ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_decoder_keeps_characters_whole_at_every_split(size: int) -> None:
    raw = SAMPLE.encode() * 3
    for offset in range(size):
        decoder = OutputDecoder()
        pieces = [raw[:offset]] + [raw[i:i + size] for i in range(offset, len(raw), size)]
        out = [decoder.feed(p) for p in pieces]
        assert "".join(out) + decoder.flush() == SAMPLE * 3
        assert all("\ufffd" not in piece for piece in out)


def test_decoder_holds_an_incomplete_sequence_until_the_rest_arrives() -> None:
    decoder = OutputDecoder()
    emoji = "😀".encode()
    assert decoder.feed(b"ok" + emoji[:3]) == "ok"
    assert decoder.feed(emoji[3:]) == "😀"


def test_decoder_replaces_invalid_bytes_and_flushes_a_truncated_tail() -> None:
    decoder = OutputDecoder()
    assert decoder.feed(b"a\xffb") == "a\ufffdb"
    assert decoder.feed("日".encode()[:2]) == ""
    assert decoder.flush() == "\ufffd"


# --- validation ---------------------------------------------------------------------------


def test_open_defaults_and_fields() -> None:
    req = parse_open({"type": "open_terminal", "containerId": "web"})
    assert (req.container_ref, req.shell, req.cols, req.rows) == ("web", "/bin/sh", 80, 24)
    req = parse_open({"containerId": "web", "shell": "/bin/bash", "cols": 132, "rows": 50})
    assert (req.shell, req.cols, req.rows) == ("/bin/bash", 132, 50)
    assert parse_open({"containerId": "web", "shell": None}).shell == "/bin/sh"


@pytest.mark.parametrize("fields, field", [
    ({}, "containerId"),
    ({"containerId": ""}, "containerId"),
    ({"containerId": 5}, "containerId"),
    ({"containerId": "w", "shell": "sh -c id"}, "shell"),
    ({"containerId": "w", "shell": "/bin/sh;id"}, "shell"),
    ({"containerId": "w", "shell": "/bin/sh\n"}, "shell"),
    ({"containerId": "w", "shell": 1}, "shell"),
    ({"containerId": "w", "cols": 0}, "cols"),
    ({"containerId": "w", "rows": 1001}, "rows"),
])
def test_open_rejects(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_open(fields)
    assert info.value.code == "INVALID_MESSAGE" and info.value.field == field


def test_resize_bounds() -> None:
    assert parse_resize({"cols": 1, "rows": 1000}) == (1, 1000)
    assert parse_resize({"cols": 80.0, "rows": 24}) == (80, 24)
    for fields in ({"cols": 0, "rows": 5}, {"cols": 5, "rows": 1001}, {"cols": 5},
                   {"rows": 5}, {"cols": "5", "rows": 5}, {"cols": True, "rows": 5},
                   {"cols": 5.5, "rows": 5}, {"cols": -1, "rows": 5}):
        with pytest.raises(ProtocolError):
            parse_resize(fields)


def test_input_is_utf8_bytes() -> None:
    assert parse_input({"data": "ls -la\n"}) == b"ls -la\n"
    assert parse_input({"data": "é😀"}) == "é😀".encode()
    assert parse_input({"data": ""}) == b""
    assert parse_input({"data": "\ud800"}) == b"?"  # a lone surrogate cannot be UTF-8
    for fields in ({}, {"data": 5}, {"data": None}, {"data": ["a"]}):
        with pytest.raises(ProtocolError):
            parse_input(fields)


# --- state --------------------------------------------------------------------------------


def make_state(idle: float = 10.0, host: str = "local") -> TerminalLifecycle:
    return TerminalLifecycle(session_id=new_session_id(), host=host, container_ref="web",
                             container_id="c" * 64, container_name="web", shell="/bin/sh",
                             started_at=1_700_000_000.0, idle_timeout=idle, now=100.0)


def test_first_close_wins() -> None:
    state = make_state()
    assert state.is_open
    assert state.begin_close(USER_CLOSED)
    assert not state.begin_close(PROCESS_EXITED)
    assert state.close_reason == USER_CLOSED and state.phase is Phase.CLOSING
    state.finish(0, 1_700_000_005.0)
    assert state.phase is Phase.CLOSED and not state.begin_close(IDLE_TIMEOUT)


def test_idle_clock_counts_client_activity() -> None:
    state = make_state(idle=10.0)
    assert not state.is_idle(109.9) and state.is_idle(110.0)
    state.record_input(5, 108.0)
    state.record_output(1000)  # output is not activity
    assert state.idle_deadline() == 118.0 and not state.is_idle(115.0)
    state.touch(117.0)
    assert state.idle_deadline() == 127.0
    assert (state.bytes_in, state.bytes_out) == (5, 1000)


def test_messages() -> None:
    assert closed_message(USER_CLOSED, 129) == {"type": "terminal_closed", "reason": "User closed"}
    assert closed_message(PROCESS_EXITED, 7) == {"type": "terminal_closed",
                                                 "reason": "Process exited", "exitCode": 7}
    assert TerminalRefused("x", containerId="web").to_message() == {
        "type": "terminal_error", "message": "x", "containerId": "web"}
    assert new_session_id() != new_session_id()


def test_start_failure_message() -> None:
    missing = (b'OCI runtime exec failed: exec failed: unable to start container process: exec: '
               b'"/bin/bash": stat /bin/bash: no such file or directory: unknown\r\n')
    assert start_failure_message("/bin/bash", missing, 126) == \
        "Shell not found in the container: /bin/bash"
    not_in_path = (b'OCI runtime exec failed: exec failed: unable to start container process: '
                   b'exec: "bash": executable file not found in $PATH: unknown\r\n')
    assert start_failure_message("bash", not_in_path, 126) == "Shell not found in the container: bash"
    assert start_failure_message("/bin/sh", b"OCI runtime exec failed: permission denied", 126) == \
        "Shell is not executable in the container: /bin/sh"
    # A shell that ran and exited with 126 by itself is not a start failure.
    assert start_failure_message("/bin/sh", b"/ # exit 126\r\n", 126) is None
    assert start_failure_message("/bin/sh", missing, 0) is None


# --- audit --------------------------------------------------------------------------------


def test_audit_records_and_file(tmp_path: Path) -> None:
    state = make_state()
    state.record_input(12, 101.0)
    state.record_output(345)
    start = start_record(state, user="alice", client_id="client-1", remote="127.0.0.1")
    state.begin_close(PROCESS_EXITED)
    state.finish(7, 1_700_000_002.5)
    end = end_record(state, user="alice", client_id="client-1", remote="127.0.0.1")
    assert start["event"] == "terminal_start" and start["start"] == "2023-11-14T22:13:20.000Z"
    assert end["event"] == "terminal_end" and end["end"] == "2023-11-14T22:13:22.500Z"
    assert (end["exitCode"], end["bytesIn"], end["bytesOut"]) == (7, 12, 345)
    assert end["durationSeconds"] == 2.5 and end["reason"] == "Process exited"
    assert start["host"] == end["host"] == "local"
    assert end_record(make_state(host="prod-2"), user="a", client_id="c", remote="")["host"] == "prod-2"
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    assert log.write(start) and log.write(end)
    assert [orjson.loads(line)["event"] for line in path.read_bytes().splitlines()] == [
        "terminal_start", "terminal_end"]
    assert AuditLog(None).write(start)  # disabled: accepted, nothing written
    assert not AuditLog(tmp_path / "missing-dir" / "audit.jsonl").write(start)
