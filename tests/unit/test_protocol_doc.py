"""docs/protocol.md is the protocol reference the code points at: every pointer of the
form `docs/protocol.md "Section"` (or `docs/protocol.md, "Section"`) in `src/` must name
a heading that exists, and the reference must keep its normative sections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from openpanel_ws.protocol import CloseCode, ErrorCode

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
SRC = ROOT / "src" / "openpanel_ws"

# A pointer; its section name may wrap onto the next line (and its comment marker).
POINTER = re.compile(r'docs/protocol\.md,?\s*"([^"]+)"')


def headings(text: str) -> set[str]:
    out: set[str] = set()
    for line in text.splitlines():
        match = re.match(r"#{1,6}\s+(.+?)\s*$", line)
        if match:
            out.add(match.group(1))
    return out


def pointers(text: str) -> list[str]:
    # Join wrapped comments ("# ...\n    # ...") and docstrings into one line of text.
    flat = re.sub(r"\n\s*(#\s*)?", " ", text)
    return [re.sub(r"\s+", " ", name).strip() for name in POINTER.findall(flat)]


def test_pointer_parsing_joins_wrapped_lines() -> None:
    text = 'x (docs/protocol.md "Hostile\n    clients") y\n# see docs/protocol.md, "Outbound\n# path".'
    assert pointers(text) == ["Hostile clients", "Outbound path"]
    assert headings("# A\n## `since`, one rule\ntext ## no\n") == {"A", "`since`, one rule"}


def test_every_pointer_in_src_names_an_existing_section() -> None:
    sections = headings(DOC.read_text())
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for name in pointers(path.read_text()):
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert found, "no pointers found: the pattern no longer matches the code's style"
    missing = {name: files for name, files in found.items() if name not in sections}
    assert not missing, f"docs/protocol.md has no section named: {missing}"


@pytest.mark.parametrize("section", [
    "Endpoints", "Connection lifecycle", "Close codes", "Error codes", "Acknowledgements",
    "Defaults and bounds", "Rate limits and flooding", "Authorization", "Container scopes",
    "Heartbeat", "Reconnecting", "Terminal extensions", "Terminal sessions", "Outbound path",
    "Hostile clients",
])
def test_reference_keeps_its_normative_sections(section: str) -> None:
    assert section in headings(DOC.read_text())


def test_every_error_and_close_code_is_in_the_reference() -> None:
    text = DOC.read_text()
    for code in ErrorCode:
        assert f"| `{code.value}` |" in text, code
    for close in CloseCode:
        assert f"| {close.value} |" in text, close


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def test_links_into_the_reference_name_existing_anchors() -> None:
    anchors = {slug(h) for h in headings(DOC.read_text())}
    assert slug("Web console and `GET /api/containers`") == "web-console-and-get-apicontainers"
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    links = [(f.name, a) for f in files
             for a in re.findall(r"protocol\.md#([\w-]+)", f.read_text())]
    assert links
    assert [link for link in links if link[1] not in anchors] == []
