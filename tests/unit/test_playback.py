"""`recordings play` strips OSC 52 (clipboard) and OSC 0/1/2 (titles) unless --raw
(docs/security.md "Recordings")."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from openpanel_ws.cli import main
from openpanel_ws.gateways.terminal.playback import OscFilter

HOSTILE = [
    "plain text\r\n",
    "\x1b]52;c;cm0gLXJmIH4K\x07",          # clipboard write (BEL)
    "\x1b]0;owned\x1b\\",                  # icon + title (ST)
    "\x1b]2;title\x07\x1b]1;icon\x07",
    "\x1b]5",                              # split across two events
    "2;c;ZWNobyBoaQ==\x07after\r\n",
    "\x1b]8;;https://example.com\x07link\x1b]8;;\x07\r\n",  # a link: kept
    "\x1b[31mred\x1b[0m\r\n",
]


def write_cast(path: Path) -> None:
    lines = [orjson.dumps({"version": 2, "width": 80, "height": 24, "timestamp": 0})]
    lines += [orjson.dumps([0.001 * i, "o", data]) for i, data in enumerate(HOSTILE)]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_play_strips_clipboard_and_title_sequences(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cast = tmp_path / "hostile.cast"
    write_cast(cast)
    assert main(["recordings", "play", str(cast), "--speed", "1000"]) == 0
    out = capsys.readouterr().out
    print(f"probe play: {out!r}")
    for seq in ("\x1b]52", "\x1b]0;", "\x1b]1;", "\x1b]2;"):
        assert seq not in out, seq
    assert out == ("plain text\r\nafter\r\n\x1b]8;;https://example.com\x07link\x1b]8;;\x07\r\n"
                   "\x1b[31mred\x1b[0m\r\n")


def test_play_raw_keeps_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cast = tmp_path / "hostile.cast"
    write_cast(cast)
    assert main(["recordings", "play", str(cast), "--speed", "1000", "--raw"]) == 0
    assert capsys.readouterr().out == "".join(HOSTILE)


@pytest.mark.parametrize(("text", "expected"), [
    ("a\x1b]52;c;eA==\x07b", "ab"),
    ("a\x1b]2;t\x1b\\b", "ab"),
    ("a\x9d0;t\x9cb", "ab"),                       # C1 OSC and ST
    ("a\x1b]2;t\x1b[31mb", "a\x1b[31mb"),          # ESC + other ends it; the CSI stays
    ("a\x1b]2;t\x18b", "ab"),                      # CAN aborts it
    ("a\x1b]7;file:///x\x07b", "a\x1b]7;file:///x\x07b"),  # OSC 7: kept
    ("a\x1b]520;x\x07b", "a\x1b]520;x\x07b"),      # not 52
    ("\x1b[1mx\x1b", "\x1b[1mx\x1b"),              # a lone ESC at the end is passed on
    ("\x1b\x1b]0;t\x07x", "\x1bx"),
])
def test_filter_whole_and_one_character_at_a_time(text: str, expected: str) -> None:
    whole = OscFilter()
    assert whole.feed(text) + whole.flush() == expected
    split = OscFilter()
    assert "".join(split.feed(ch) for ch in text) + split.flush() == expected
