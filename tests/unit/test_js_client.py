"""The JS client: its packaged copy is the canonical file, and its own unit tests
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
def test_the_packaged_copy_is_the_canonical_file(name: str) -> None:
    packaged = (resources.files("openpanel_ws") / "static" / "client" / name).read_bytes()
    assert packaged == (CANONICAL / name).read_bytes(), (
        f"src/openpanel_ws/static/client/{name} differs from clients/js/{name}: run `make js-sync`")


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
