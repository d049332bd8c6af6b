"""The one place that opens files in the state directory and the recording directory
(docs/security.md "The state directory").

Rules, checked with `lstat`/`fstat` (never `stat`: a symbolic link is never followed):
- a directory must be a real directory owned by the gateway's user and writable by no
  one else (`check_dir`); one that others may only read or enter is made 0700;
- a file is opened with `O_NOFOLLOW`, must be a regular file owned by the user, and a
  private one (the secret, the hand-off file) readable by no one else;
- a file is written through a temporary file of an unpredictable name (`O_EXCL`) in the
  same directory, then renamed over the target: a planted symlink is replaced, never
  written through.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from pathlib import Path

from openpanel_ws.config import ConfigError

__all__ = [
    "StateDirError",
    "check_dir",
    "check_file",
    "ensure_private_dir",
    "open_append",
    "open_new",
    "read_private",
    "unique_name",
    "write_private",
]

log = logging.getLogger(__name__)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class StateDirError(ConfigError, OSError):
    """A directory or file of the state directory that cannot be trusted; str() is one
    line naming the path and the fix. At start it ends the gateway (exit 2, as every
    ConfigError); later, callers that survive an OSError survive it too."""


def _uid() -> int:
    return os.geteuid()


def check_dir(path: Path, what: str) -> bool:
    """Raise StateDirError unless `path` (when it exists) is a directory owned by this
    user and writable by no one else; tighten it to 0700 when others may read or enter
    it. False when it does not exist."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise StateDirError(f"{what} {path} is a symbolic link; point the setting at the real "
                            "directory")
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirError(f"{what} {path} is not a directory; remove it or choose another path")
    if st.st_uid != _uid():
        raise StateDirError(f"{what} {path} is owned by uid {st.st_uid}, not this user "
                            f"({_uid()}); fix: chown {_uid()} {path} (or choose another path)")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise StateDirError(f"{what} {path} is writable by group or others (mode {mode:o}); "
                            f"fix: chmod 700 {path}")
    if mode & 0o077:
        os.chmod(path, 0o700, follow_symlinks=False)
        log.warning("%s %s was readable by others (mode %o); made 0700", what, path, mode)
    return True


def ensure_private_dir(path: Path, what: str) -> None:
    """`path` exists as a directory `check_dir` accepts (created 0700 whatever the umask)."""
    if check_dir(path, what):
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    os.chmod(path, 0o700, follow_symlinks=False)
    check_dir(path, what)


def _check_fd(fd: int, path: Path, what: str, *, private: bool) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise StateDirError(f"{what} {path} is not a regular file; remove it")
    if st.st_uid != _uid():
        raise StateDirError(f"{what} {path} is owned by uid {st.st_uid}, not this user "
                            f"({_uid()}); fix: remove it (or chown {_uid()} {path})")
    mode = stat.S_IMODE(st.st_mode)
    if private and mode & 0o077:
        raise StateDirError(f"{what} {path} is readable or writable by others (mode {mode:o}); "
                            f"fix: chmod 600 {path}")
    if mode & 0o022:
        raise StateDirError(f"{what} {path} is writable by group or others (mode {mode:o}); "
                            f"fix: chmod 600 {path}")


def _open(path: Path, flags: int, what: str, mode: int = 0o600) -> int:
    try:
        return os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (os.path.islink(path) and exc.errno != errno.ENOENT):
            raise StateDirError(f"{what} {path} is a symbolic link; remove it") from None
        raise


def check_file(path: Path, what: str, *, private: bool = False) -> bool:
    """Raise StateDirError unless `path` (when it exists, even as a dangling symlink) is
    a regular file owned by this user (and, `private`, readable by no one else). False
    when nothing is there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise StateDirError(f"{what} {path} is a symbolic link; remove it")
    fd = _open(path, os.O_RDONLY | os.O_NONBLOCK, what)
    try:
        _check_fd(fd, path, what, private=private)
    finally:
        os.close(fd)
    return True


def read_private(path: Path, what: str) -> bytes | None:
    """The content of a private file (regular, this user's, mode 0600 or tighter);
    None when there is none. Raises StateDirError."""
    try:
        fd = _open(path, os.O_RDONLY | os.O_NONBLOCK, what)
    except FileNotFoundError:
        return None
    try:
        _check_fd(fd, path, what, private=True)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def unique_name(prefix: str, suffix: str = "") -> str:
    """A file name no one can guess in advance (128 random bits)."""
    return f"{prefix}{secrets.token_hex(16)}{suffix}"


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` (mode 0600): a new temporary file (`O_EXCL`, random
    name) in the same directory, renamed over it. Raises OSError."""
    tmp = path.with_name(unique_name(f".{path.name}."))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_new(path: Path, flags: int = os.O_WRONLY) -> int:
    """A descriptor on a file created here and now (`O_EXCL`: never an existing file or
    a symlink), mode 0600. Raises OSError."""
    return os.open(path, flags | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)


def open_append(path: Path, what: str) -> int:
    """A descriptor appending to an existing file of this user's (not a symlink).
    Raises OSError (StateDirError when the file is not to be trusted)."""
    fd = _open(path, os.O_WRONLY | os.O_APPEND, what)
    try:
        _check_fd(fd, path, what, private=True)
    except BaseException:
        os.close(fd)
        raise
    return fd
