"""Every module of `scripts/seams.py`'s SANS_IO list imports without aiohttp: the check
seams.py reports, kept by the suite (one list, one import blocker)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SEAMS = Path(__file__).resolve().parents[2] / "scripts" / "seams.py"


def _seams() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seams", SEAMS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_sans_io_module_imports_without_aiohttp() -> None:
    seams = _seams()
    assert len(seams.SANS_IO) >= 30
    assert seams.needs_aiohttp(seams.SANS_IO) == []


def test_the_check_catches_a_module_that_needs_aiohttp() -> None:
    failing = _seams().needs_aiohttp(["openpanel_ws.server"])
    assert len(failing) == 1 and "aiohttp is blocked" in failing[0]
