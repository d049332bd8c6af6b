"""Runs a folder's `*.test.mjs` under `node --test`, so pytest's summary covers JS tests,
and finds the JS tools (`make js-tools` installs them into clients/js/node_modules)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
JS_ROOT = Path(__file__).resolve().parents[1] / "clients" / "js"


def node_or_skip() -> str:
    """The node executable; without it: fails under CI=true, else skips."""
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is not installed (CI=true): run scripts/ensure-docker.sh")
        pytest.skip("node is not installed")
    return node


def js_tool_or_skip(relative: str) -> Path:
    """A file of clients/js/node_modules (e.g. "typescript/bin/tsc"); when the JS tools
    are not installed: fails under CI=true, else skips (`make js-tools` installs them)."""
    path = JS_ROOT / "node_modules" / relative
    if not path.exists():
        if IN_CI:
            pytest.fail(f"clients/js/node_modules/{relative} is missing (CI=true): run make js-tools")
        pytest.skip(f"clients/js/node_modules/{relative} is missing: run make js-tools")
    return path


def run_node(args: list[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """node with `args`; fails with its output when it exits non-zero."""
    result = subprocess.run([node_or_skip(), *args], capture_output=True, text=True,
                            timeout=timeout, cwd=cwd)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return result


def run_node_tests(folder: Path, cwd: Path) -> None:
    """Fails when a JS test fails; without node: fails under CI=true, else skips."""
    tests = sorted(str(p) for p in folder.glob("*.test.mjs"))
    assert tests, f"no JS unit tests in {folder}"
    result = run_node(["--test", *tests], cwd=cwd, timeout=120)
    summary = "\n".join(line for line in result.stdout.splitlines()
                        if line.startswith(("# ", "not ok")))
    assert "# fail 0" in summary, summary
