"""Runs a folder's `*.test.mjs` under `node --test`, so pytest's summary covers JS tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def run_node_tests(folder: Path, cwd: Path) -> None:
    """Fails when a JS test fails; without node: fails under CI=true, else skips."""
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is not installed (CI=true): run scripts/ensure-docker.sh")
        pytest.skip("node is not installed")
    tests = sorted(str(p) for p in folder.glob("*.test.mjs"))
    assert tests, f"no JS unit tests in {folder}"
    result = subprocess.run([node, "--test", *tests], capture_output=True, text=True, timeout=120,
                            cwd=cwd)
    summary = "\n".join(line for line in result.stdout.splitlines()
                        if line.startswith(("# ", "not ok")))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in summary, summary
