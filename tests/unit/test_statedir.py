"""`statedir`: the checks and the opens of the state directory (docs/security.md
"The state directory"). Plain calls on a temporary directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest

from openpanel_ws import statedir
from openpanel_ws.gateways.terminal import handoff
from openpanel_ws.gateways.terminal.journal import TerminalJournal
from openpanel_ws.statedir import StateDirError


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_check_dir(tmp_path: Path) -> None:
    assert statedir.check_dir(tmp_path / "missing", "state directory") is False
    good = tmp_path / "good"
    good.mkdir(mode=0o700)
    assert statedir.check_dir(good, "state directory") is True
    for bad_mode in (0o777, 0o770, 0o702):
        good.chmod(bad_mode)
        with pytest.raises(StateDirError, match=f"chmod 700 {good}"):
            statedir.check_dir(good, "state directory")
    good.chmod(0o755)  # others may only read: made private
    assert statedir.check_dir(good, "recording directory") and mode(good) == 0o700
    link = tmp_path / "link"
    link.symlink_to(good)
    with pytest.raises(StateDirError, match="symbolic link"):
        statedir.check_dir(link, "state directory")
    afile = tmp_path / "file"
    afile.write_text("")
    with pytest.raises(StateDirError, match="not a directory"):
        statedir.check_dir(afile, "state directory")


def test_errors_are_config_errors_and_os_errors(tmp_path: Path) -> None:
    from openpanel_ws.config import ConfigError

    error = StateDirError("x")
    assert isinstance(error, ConfigError) and isinstance(error, OSError)


def test_check_file_never_follows_a_symlink_even_dangling(tmp_path: Path) -> None:
    target = tmp_path / "target"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(target)
    with pytest.raises(StateDirError, match="symbolic link"):
        statedir.check_file(dangling, "terminal journal")
    assert not target.exists()
    assert statedir.check_file(tmp_path / "missing", "terminal journal") is False
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(StateDirError, match="not a regular file"):
        statedir.check_file(fifo, "terminal journal")  # and it does not block


def test_read_private(tmp_path: Path) -> None:
    path = tmp_path / "jwt-secret"
    assert statedir.read_private(path, "secret file") is None
    path.write_text("s3cret\n")
    path.chmod(0o600)
    assert statedir.read_private(path, "secret file") == b"s3cret\n"
    path.chmod(0o640)
    with pytest.raises(StateDirError, match=f"chmod 600 {path}"):
        statedir.read_private(path, "secret file")
    known = tmp_path / "known"
    known.write_text("known\n")
    known.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(known)
    with pytest.raises(StateDirError, match="symbolic link"):
        statedir.read_private(link, "secret file")


def test_write_private_replaces_a_symlink_and_never_writes_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    path = tmp_path / "admin-token"
    path.symlink_to(victim)
    statedir.write_private(path, b"token\n")
    assert victim.read_text() == "untouched"
    assert not path.is_symlink() and path.read_bytes() == b"token\n" and mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin-token", "victim"]


def test_open_new_and_open_append(tmp_path: Path) -> None:
    link = tmp_path / "x.cast"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        statedir.open_new(link)
    with pytest.raises(StateDirError, match="symbolic link"):
        statedir.open_append(link, "terminal recording")
    fresh = tmp_path / "y.cast"
    os.close(statedir.open_new(fresh))
    assert mode(fresh) == 0o600
    fd = statedir.open_append(fresh, "terminal recording")
    os.close(fd)
    assert not (tmp_path / "elsewhere").exists()


def test_unique_names_differ() -> None:
    names = {statedir.unique_name("terminal-handoff-1-", ".json") for _ in range(100)}
    assert len(names) == 100


def test_hand_off_file_name_is_unpredictable_and_its_reader_follows_no_symlink(
        tmp_path: Path) -> None:
    first = handoff.write_records(tmp_path, [])
    second = handoff.write_records(tmp_path, [])
    assert first is not None and second is not None and first != second
    assert first.name.startswith(f"terminal-handoff-{os.getpid()}-") and mode(first) == 0o600
    assert orjson.loads(first.read_bytes()) == {"pid": os.getpid(), "sessions": []}
    assert handoff.read_records(first) == [] and not first.exists()
    planted = tmp_path / "planted.json"
    planted.write_bytes(orjson.dumps({"pid": os.getpid(), "sessions": [{"x": 1}]}))
    planted.chmod(0o600)
    link = tmp_path / "link.json"
    link.symlink_to(planted)
    assert handoff.read_records(link) == []  # refused: a symlink
    planted.chmod(0o644)
    assert handoff.read_records(planted) == []  # refused: readable by others


def test_journal_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    target = tmp_path / "planted.sqlite3"
    path = tmp_path / "state" / "terminal-sessions.sqlite3"
    path.parent.mkdir(mode=0o700)
    path.symlink_to(target)
    with pytest.raises(StateDirError, match="symbolic link"):
        TerminalJournal(path)
    assert not target.exists()


def test_journal_is_created_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "state" / "terminal-sessions.sqlite3"
        TerminalJournal(path)
    finally:
        os.umask(old)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_a_directory_made_by_the_gateway_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "new" / "openpanel-ws"
        statedir.ensure_private_dir(path, "state directory")
    finally:
        os.umask(old)
    assert mode(path) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_a_directory_or_file_of_another_user_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)
    with pytest.raises(StateDirError, match="owned by uid 65534"):
        statedir.check_dir(other, "state directory")
    secret = tmp_path / "jwt-secret"
    secret.write_text("x")
    secret.chmod(0o600)
    os.chown(secret, 65534, 65534)
    with pytest.raises(StateDirError, match="owned by uid 65534"):
        statedir.read_private(secret, "secret file")
