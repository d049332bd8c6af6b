"""The JS client: the package serves the canonical file (a symlink that wheel builds
resolve to the file's content), and its own unit tests
(`node --test clients/js/test/`) pass, so pytest's summary covers them."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CANONICAL = ROOT / "clients" / "js"
FILES = ("openpanel-ws.js", "openpanel-ws.d.ts")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.mark.parametrize("name", FILES)
def test_the_packaged_file_is_the_canonical_file(name: str) -> None:
    packaged = resources.files("openpanel_ws") / "static" / "client" / name
    assert packaged.read_bytes() == (CANONICAL / name).read_bytes()
    in_tree = ROOT / "src" / "openpanel_ws" / "static" / "client" / name
    assert in_tree.resolve() == (CANONICAL / name).resolve(), (
        f"src/openpanel_ws/static/client/{name} must be a symlink to clients/js/{name}, not a copy")


def test_node_unit_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is not installed (CI=true): run scripts/ensure-docker.sh")
        pytest.skip("node is not installed")
    tests = sorted(str(p) for p in (CANONICAL / "test").glob("*.test.mjs"))
    assert tests, "no JS unit tests found"
    result = subprocess.run([node, "--test", *tests], capture_output=True, text=True, timeout=120,
                            cwd=CANONICAL)
    summary = "\n".join(line for line in result.stdout.splitlines() if line.startswith(("# ", "not ok")))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in summary, summary
