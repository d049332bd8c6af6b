"""The state directory cannot be subverted (docs/security.md "The state directory").

Each test is a probe of issue 27 turned into a test: a real `openpanel-ws serve`
process on a state directory someone else could have prepared. With `-s`, each prints
its figure (what leaked, whether a forged token worked) so the before and after runs
can be compared.
"""

from __future__ import annotations

import asyncio
import signal
import stat
from pathlib import Path

import aiohttp
import pytest

from client_support import PYTHON, ServerProcess, _port_open
from helpers import Containers, eventually, free_port, make_token, scaled
from openpanel_ws.client import OpenPanelClient
from openpanel_ws.client.sansio import BackoffPolicy

KNOWN_SECRET = "a-secret-the-attacker-knows-" + "k" * 24
TIMEOUT = scaled(30)


class EmbeddedSecretServer(ServerProcess):
    """`serve` with no configured secret: the embedded one of the state directory."""

    def __init__(self, port: int, home: Path, **extra: str) -> None:
        super().__init__(port, home)
        self.extra = extra
        self.stderr = b""

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.pop("OPENPANEL_WS_JWT_SECRET", None)
        env.update(self.extra)
        return env


async def serve_or_exit(server: ServerProcess) -> tuple[int | None, str]:
    """Start `server`; (its exit code, its stderr) when it refused to start, (None, "")
    when it listens (the caller stops it)."""
    server.proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "openpanel_ws", "serve", "--port", str(server.port),
        env=server.environment(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    proc = server.proc

    async def done() -> bool:
        return proc.returncode is not None or await _port_open(server.port)

    await eventually(done, TIMEOUT, step=0.1, what="the server to listen or exit")
    if proc.returncode is None and await _port_open(server.port):
        return None, ""
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode()
    return proc.returncode, err


def state_dir(home: Path) -> Path:
    path = home / "openpanel-ws"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


async def refused(server: ServerProcess, path: Path, fix: str) -> None:
    """The server exits 2 with one line naming `path` and the fix."""
    try:
        code, err = await serve_or_exit(server)
    finally:
        if server.proc is not None and server.proc.returncode is None:
            await server.kill()
    print(f"\nprobe: exit code {code}, stderr {err.strip()!r}")
    assert code == 2, "the server started"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and fix in lines[0], err


async def test_world_writable_state_dir_is_refused(tmp_path: Path) -> None:
    path = state_dir(tmp_path)
    path.chmod(0o777)
    await refused(ServerProcess(free_port(), tmp_path), path, f"chmod 700 {path}")


async def test_group_writable_recording_dir_is_refused(tmp_path: Path) -> None:
    state_dir(tmp_path)
    casts = tmp_path / "casts"
    casts.mkdir()
    casts.chmod(0o770)
    server = EmbeddedSecretServer(free_port(), tmp_path,
                                  OPENPANEL_WS_TERMINAL_RECORD_DIR=str(casts))
    await refused(server, casts, f"chmod 700 {casts}")


async def test_symlinked_state_dir_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    home = tmp_path / "home"
    home.mkdir()
    (home / "openpanel-ws").symlink_to(real)
    await refused(ServerProcess(free_port(), home), home / "openpanel-ws", "symbolic link")


async def test_symlinked_secret_is_refused_and_a_forged_token_never_works(tmp_path: Path) -> None:
    """The probe: `jwt-secret` a symlink to a file whose value the attacker knows; a token
    forged with it got `role: admin`. Now the server does not start."""
    known = tmp_path / "known"
    known.write_text(KNOWN_SECRET + "\n")
    known.chmod(0o600)
    path = state_dir(tmp_path) / "jwt-secret"
    path.symlink_to(known)
    server = EmbeddedSecretServer(free_port(), tmp_path)
    try:
        code, err = await serve_or_exit(server)
        if code is None:  # it started: does the forged token work?
            forged = make_token("mallory", roles=("admin",), secret=KNOWN_SECRET)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{server.port}/api/containers",
                                    headers={"Authorization": f"Bearer {forged}"}) as resp:
                    status = resp.status
            print(f"\nprobe: server started; forged admin token -> HTTP {status}")
            pytest.fail(f"the server started on a symlinked secret (forged token: {status})")
    finally:
        await server.kill()
    print(f"\nprobe: exit code {code}, stderr {err.strip()!r}")
    assert code == 2 and str(path) in err and "symbolic link" in err, err


async def test_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = state_dir(tmp_path) / "jwt-secret"
    path.write_text(KNOWN_SECRET + "\n")
    path.chmod(0o644)
    await refused(EmbeddedSecretServer(free_port(), tmp_path), path, f"chmod 600 {path}")


async def test_journal_never_follows_a_dangling_symlink(tmp_path: Path) -> None:
    target = tmp_path / "planted.sqlite3"
    path = state_dir(tmp_path) / "terminal-sessions.sqlite3"
    path.symlink_to(target)
    server = ServerProcess(free_port(), tmp_path)
    try:
        code, err = await serve_or_exit(server)
    finally:
        await server.kill()
    print(f"\nprobe: exit code {code}; the symlink's target exists: {target.exists()}")
    assert not target.exists()
    assert code == 2 and str(path) in err, err


async def test_recording_dir_readable_by_others_is_made_private(tmp_path: Path) -> None:
    """A pre-created 0755 recording directory: owned by the gateway's user and written
    by no one else, so it is fixed (0700, one log line) rather than refused."""
    state_dir(tmp_path)
    casts = tmp_path / "casts"
    casts.mkdir()
    casts.chmod(0o755)
    server = EmbeddedSecretServer(free_port(), tmp_path,
                                  OPENPANEL_WS_TERMINAL_RECORD_DIR=str(casts))
    try:
        code, err = await serve_or_exit(server)
    finally:
        await server.kill()
    mode = stat.S_IMODE(casts.stat().st_mode)
    print(f"\nprobe: exit code {code}; recording directory mode {mode:o}")
    assert code is None, err
    assert mode == 0o700


async def test_a_symlink_at_the_hand_off_path_receives_nothing(
        containers: Containers, engine: None, tmp_path: Path) -> None:
    """The probe: a symlink pre-placed at `terminal-handoff-<pid>.json` made a file of the
    attacker's receive every session's output ring across a SIGHUP."""
    name = await containers.run()
    leak = tmp_path / "leak.json"
    server = ServerProcess(free_port(), tmp_path)
    await server.start()
    try:
        assert server.proc is not None
        (tmp_path / "openpanel-ws" / f"terminal-handoff-{server.proc.pid}.json").symlink_to(leak)
        async with OpenPanelClient(server.url, make_token(),
                                   backoff=BackoffPolicy(base=0.2, cap=1.0)) as client:
            term = await client.terminal(name, cols=80, rows=24)
            seen: list[str] = []

            async def drain() -> None:
                async for chunk in term:
                    seen.append(chunk)

            task = asyncio.create_task(drain())
            term.write("echo pass-$((6*7))-word\n")
            await eventually(lambda: "pass-42-word" in "".join(seen), timeout=TIMEOUT)
            server.proc.send_signal(signal.SIGHUP)
            await eventually(lambda: term.resumes == 1, timeout=TIMEOUT)
            term.write("echo after-$((1+1))\n")
            await eventually(lambda: "after-2" in "".join(seen), timeout=TIMEOUT)
            await term.close()
            task.cancel()
        size = leak.stat().st_size if leak.exists() else 0
        text = leak.read_text(errors="replace") if leak.exists() else ""
        print(f"\nprobe: leak file size {size} bytes; the typed word in it: {'pass-42' in text}")
        assert not leak.exists()
        assert [p.name for p in (tmp_path / "openpanel-ws").glob("terminal-handoff-*")] == [
            f"terminal-handoff-{server.proc.pid}.json"]  # only the planted symlink is left
    finally:
        await server.kill()

