"""The specification's own examples, run verbatim against the server.

The JavaScript examples must work as written (URL, token and container id filled in);
the README's corrected Python example must work too (docs/protocol.md "Heartbeat").
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from helpers import Containers, RunningServer, make_token, run_for

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT.parent / "shared" / "spec" / "API_WEBSOCKET.pt-BR.md"


def _code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def _fill(code: str, server: RunningServer, token: str, container: str) -> str:
    return (code.replace("ws://localhost:3001", f"ws://127.0.0.1:{server.port}")
            .replace("your-jwt-token", token)
            .replace("container-123", container))


@pytest.fixture
def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed (the spec's JavaScript example needs it)")
    return path


async def test_the_specifications_typescript_example_receives_logs(
    server: RunningServer, containers: Containers, node: str, tmp_path: Path
) -> None:
    if not SPEC.exists():
        pytest.skip("the specification is not beside this checkout")
    name = await containers.run("i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.2; done")
    example = _code_blocks(SPEC, "typescript")[0]
    script = tmp_path / "example.mjs"
    script.write_text(_fill(example, server, make_token(), name))
    out = await run_for(node, "--experimental-websocket", str(script), seconds=8)
    assert re.search(r"Log: line-\d+", out), out


async def test_the_specifications_reconnection_example_authenticates(
    server: RunningServer, node: str, tmp_path: Path
) -> None:
    if not SPEC.exists():
        pytest.skip("the specification is not beside this checkout")
    example = next(b for b in _code_blocks(SPEC, "javascript") if "reconnectAttempts" in b)
    # The example never reads messages; log them to see the server's answers.
    hook = "ws.onmessage = (e) => console.log('MSG', e.data)\n  ws.onopen = () => {"
    script = tmp_path / "reconnect.mjs"
    script.write_text(_fill(example, server, make_token(), "x").replace("ws.onopen = () => {", hook, 1))
    out = await run_for(node, "--experimental-websocket", str(script), seconds=4)
    assert '"type":"authenticated"' in out, out


async def test_the_readme_python_example_receives_logs(
    server: RunningServer, containers: Containers, tmp_path: Path
) -> None:
    name = await containers.run("i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.2; done")
    example = next(b for b in _code_blocks(ROOT / "README.md", "python") if "follow_logs" in b)
    code = (example.replace("ws://127.0.0.1:3001", f"ws://127.0.0.1:{server.port}")
            .replace("<token>", make_token()).replace("my-container", name))
    script = tmp_path / "example.py"
    script.write_text(code)
    out = await run_for(sys.executable, str(script), seconds=6)
    assert re.search(r"Z stdout line-\d+", out), out
