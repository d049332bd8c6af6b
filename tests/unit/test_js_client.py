"""The JS client: the package serves the canonical file (a symlink that wheel builds
resolve to the file's content), and its own unit tests
(`node --test clients/js/test/`) pass, so pytest's summary covers them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from node_runner import run_node_tests

ROOT = Path(__file__).resolve().parents[2]
CANONICAL = ROOT / "clients" / "js"
FILES = ("openpanel-ws.js", "openpanel-ws.d.ts")


@pytest.mark.parametrize("name", FILES)
def test_the_packaged_file_is_the_canonical_file(name: str) -> None:
    packaged = resources.files("openpanel_ws") / "static" / "client" / name
    assert packaged.read_bytes() == (CANONICAL / name).read_bytes()
    in_tree = ROOT / "src" / "openpanel_ws" / "static" / "client" / name
    assert in_tree.resolve() == (CANONICAL / name).resolve(), (
        f"src/openpanel_ws/static/client/{name} must be a symlink to clients/js/{name}, not a copy")


def test_node_unit_tests_pass() -> None:
    run_node_tests(CANONICAL / "test", cwd=CANONICAL)
