"""The console's pure JS modules (ANSI parsing, event rows) under `node --test`."""

from __future__ import annotations

from pathlib import Path

from node_runner import run_node_tests

ROOT = Path(__file__).resolve().parents[3]


def test_console_js_unit_tests_pass() -> None:
    run_node_tests(ROOT / "tests" / "js", cwd=ROOT)
