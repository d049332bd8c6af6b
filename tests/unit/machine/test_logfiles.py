"""Host log tailing: only new lines, truncation, rename rotation, level guessing."""

import os
from pathlib import Path

import pytest

from openpanel_ws.machine.logfiles import FileTailer, guess_level, source_names


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


def test_starts_at_the_end_and_returns_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_text("old line\n")
    t = FileTailer(str(log))
    assert t.poll() == []
    append(log, "new one\nhalf")
    assert t.poll() == ["new one"]
    append(log, " done\n\n")
    assert t.poll() == ["half done"]
    t.close()


def test_truncation_reads_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("a" * 100 + "\n")
    t = FileTailer(str(log))
    t.poll()
    log.write_text("after truncate\n")  # copytruncate: same inode, smaller size
    assert t.poll() == ["after truncate"]
    assert t.truncations == 1
    t.close()


def test_rename_rotation_finishes_the_old_file_then_follows_the_new(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    t = FileTailer(str(log))
    t.poll()
    append(log, "before rotate\n")
    with open(log, "a", encoding="utf-8") as old_writer:
        os.rename(log, tmp_path / "app.log.1")
        old_writer.write("late write to the old file\n")
    log.write_text("first in new file\n")
    assert t.poll() == ["before rotate", "late write to the old file", "first in new file"]
    assert t.rotations == 1
    append(log, "second\n")
    assert t.poll() == ["second"]
    t.close()


def test_missing_file_is_waited_for_and_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    t = FileTailer(str(log))
    assert t.poll() == []
    log.write_text("hello\n")
    assert t.poll() == ["hello"]
    log.unlink()
    assert t.poll() == []
    log.write_text("again\n")
    assert t.poll() == ["again"]
    t.close()


def test_invalid_utf8_and_long_lines(tmp_path: Path) -> None:
    log = tmp_path / "bin.log"
    log.write_bytes(b"")
    t = FileTailer(str(log))
    t.poll()
    log.write_bytes(b"caf\xc3\xa9 \xff\r\n" + b"x" * 100_000 + b"\n")
    lines = t.poll() + t.poll()
    assert lines[0] == "café \ufffd"
    assert len(lines[1]) == 16 * 1024
    t.close()


@pytest.mark.parametrize(("line", "level"), [
    ("kernel: Out of memory: Killed process 123", "error"),
    ("sshd[1]: error: could not load host key", "error"),
    ("systemd[1]: Failed to start foo.service", "error"),
    ("CRITICAL disk full", "error"),
    ("nginx: [warn] conflicting server name", "warning"),
    ("WARNING: low memory", "warning"),
    ("app DEBUG cache miss", "debug"),
    ("cron[2]: (root) CMD (run-parts)", "info"),
    ("terrors are not errors", "info"),
])
def test_guess_level(line: str, level: str) -> None:
    assert guess_level(line) == level


def test_source_names() -> None:
    assert source_names(["/var/log/syslog", "/a/error.log", "/b/error.log"]) == {
        "/var/log/syslog": "syslog", "/a/error.log": "/a/error.log", "/b/error.log": "/b/error.log"}


def test_a_large_tail_of_a_rotated_file_is_read_completely(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("")
    t = FileTailer(str(log))
    t.poll()
    append(log, "".join(f"line {i}\n" for i in range(100_000)))  # ~1 MiB, > one read
    os.rename(log, tmp_path / "big.log.1")
    log.write_text("new\n")
    lines = t.poll()
    assert len(lines) == 100_001 and lines[-2] == "line 99999" and lines[-1] == "new"
    t.close()


def test_unreadable_at_first_then_readable_still_starts_at_the_end(tmp_path: Path) -> None:
    log = tmp_path / "odd.log"
    log.mkdir()  # exists but cannot be opened as a file (works as root, unlike chmod 0)
    t = FileTailer(str(log))
    assert t.poll() == [] and t.poll() == []
    log.rmdir()
    log.write_text("already there when it became readable\n")
    assert t.poll() == []
    append(log, "new\n")
    assert t.poll() == ["new"]
    t.close()
