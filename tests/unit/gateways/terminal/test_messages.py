"""Terminal extensions, sans-I/O: open fields and per-stream output decoding."""

from __future__ import annotations

import pytest

from openpanel_ws.gateways.terminal.messages import parse_open
from openpanel_ws.gateways.terminal.output import ExecOutput
from openpanel_ws.protocol import ProtocolError


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_defaults_are_the_specifications() -> None:
    req = parse_open({"containerId": "web"})
    assert (req.tty, req.stdin, req.command, req.argv) == (True, True, (), ["/bin/sh"])


def test_command_replaces_the_shell() -> None:
    req = parse_open({"containerId": "web", "command": ["ls", "-l", "/"], "tty": False, "stdin": False})
    assert req.argv == ["ls", "-l", "/"] and req.program == "ls"
    assert (req.tty, req.stdin) == (False, False)


@pytest.mark.parametrize(("fields", "field"), [
    ({"tty": 1}, "tty"), ({"stdin": "false"}, "stdin"), ({"command": []}, "command"),
    ({"command": ["a\0b"]}, "command"), ({"command": ["x"] * 257}, "command"),
    ({"command": ["ls"], "shell": "sh"}, "command"),
])
def test_bad_fields_name_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_open({"containerId": "web", **fields})
    assert info.value.field == field


def test_tty_output_is_one_text_stream() -> None:
    out = ExecOutput(tty=True)
    assert out.feed("é".encode()[:1]) == []
    assert out.feed("é\r\n".encode()[1:]) == [{"type": "terminal_output", "data": "é\r\n"}]


def test_frames_split_anywhere_become_messages_per_stream() -> None:
    data = frame(1, "out é".encode()) + frame(2, b"err\n") + frame(1, b"\n")
    out = ExecOutput(tty=False)
    messages = []
    for i in range(len(data)):
        messages += out.feed(data[i:i + 1])
    messages += out.flush()
    text: dict[str, str] = {}
    for m in messages:
        text[m["stream"]] = text.get(m["stream"], "") + m["data"]
    assert text == {"stdout": "out é\n", "stderr": "err\n"}
