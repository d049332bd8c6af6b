"""`openpanel-ws serve` prints a console URL that works (the `make run` banner)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from helpers import free_port


def _serve(tmp_path: Path, tty: bool) -> tuple[subprocess.Popen[bytes], str, int]:
    """Start `serve` with the embedded secret; return the process, its `console:` URL and
    the reading end of its stdout (kept open: a closed one would kill it on its next line)."""
    port = free_port()
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "OPENPANEL_WS_PORT": str(port)}
    env.pop("OPENPANEL_WS_JWT_SECRET", None)
    master, slave = pty.openpty() if tty else os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "openpanel_ws", "serve"], stdout=slave,
                            stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 30
    while b"console:" not in out or not out.rstrip(b" ").endswith((b"\n", b"\r\n")):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([master], [], [], left)[0]:
            os.close(master)
            raise AssertionError(f"no console line: {out!r}")
        chunk = os.read(master, 65536)
        if not chunk:
            os.close(master)
            raise AssertionError(f"serve exited: {out!r}")
        out += chunk
    line = next(x for x in out.decode().splitlines() if x.startswith("console:"))
    return proc, line.split(" ", 1)[1].strip(), master


@pytest.mark.parametrize("tty", [False, True])
def test_serve_prints_a_working_console_url(engine: None, tmp_path: Path, tty: bool) -> None:
    proc, url, stdout = _serve(tmp_path, tty)
    try:
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/(#token=([\w.-]+))?", url)
        assert match, url
        # The token rides in the URL only on a terminal, never into a pipe or a log file.
        assert bool(match.group(2)) is tty
        with urllib.request.urlopen(url.split("#")[0], timeout=10) as resp:
            assert resp.status == 200
            assert b'src="/static/js/main.js"' in resp.read()
        if tty:
            request = urllib.request.Request(f"http://127.0.0.1:{match.group(1)}/api/containers",
                                             headers={"Authorization": f"Bearer {match.group(3)}"})
            with urllib.request.urlopen(request, timeout=30) as resp:
                assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(10)
        os.close(stdout)
