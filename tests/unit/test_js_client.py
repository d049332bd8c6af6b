"""The JS client: the package serves the canonical files (symlinks that wheel builds
resolve to the files' content), every ES module the entry point imports is served from
a fixed allow-list with the same headers, the committed .d.ts are what tsc generates
from the JSDoc (and keep real types), and its own unit tests
(`node --test clients/js/test/`) pass, so pytest's summary covers them."""

from __future__ import annotations

import re
import tempfile
from importlib import resources
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node_runner import js_tool_or_skip, run_node, run_node_tests
from openpanel_ws.server import CLIENT_FILES, client_file_handler

ROOT = Path(__file__).resolve().parents[2]
CANONICAL = ROOT / "clients" / "js"
PACKAGED = ROOT / "src" / "openpanel_ws" / "static" / "client"
FILES = sorted(p.name for p in CANONICAL.iterdir()
               if p.is_file() and (p.name.endswith(".js") or p.name.endswith(".d.ts")))
MODULES = [name for name in FILES if name.endswith(".js")]


TSC_FLAGS = ["--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext",
             "--lib", "es2022,dom"]


def test_the_client_is_modules_behind_one_entry_point() -> None:
    assert "openpanel-ws.js" in MODULES and len(MODULES) > 1
    declarations = sorted(name for name in FILES if name.endswith(".d.ts"))
    assert declarations == sorted(name.removesuffix(".js") + ".d.ts" for name in MODULES)


def test_the_committed_declarations_are_generated_from_the_jsdoc() -> None:
    js_tool_or_skip("typescript/bin/tsc")
    with tempfile.TemporaryDirectory() as out:
        run_node([str(CANONICAL / "tools" / "types.mjs"), out], cwd=CANONICAL)
        fresh = sorted(p.name for p in Path(out).iterdir())
        assert fresh == sorted(n for n in FILES if n.endswith(".d.ts"))
        for name in fresh:
            assert (Path(out) / name).read_text() == (CANONICAL / name).read_text(), (
                f"clients/js/{name} is stale: run `cd clients/js && npm run types`")


def test_the_declarations_keep_real_types() -> None:
    """test/types-usage.ts uses the public API under --strict, with @ts-expect-error on
    wrong uses: it compiles only if the declarations are precise (not `any`)."""
    tsc = js_tool_or_skip("typescript/bin/tsc")
    run_node([str(tsc), "--noEmit", "--strict", *TSC_FLAGS, "test/types-usage.ts"], cwd=CANONICAL)


@pytest.mark.parametrize("name", FILES)
def test_the_packaged_file_is_the_canonical_file(name: str) -> None:
    packaged = resources.files("openpanel_ws") / "static" / "client" / name
    assert packaged.read_bytes() == (CANONICAL / name).read_bytes()
    in_tree = PACKAGED / name
    assert in_tree.is_symlink() and in_tree.resolve() == (CANONICAL / name).resolve(), (
        f"src/openpanel_ws/static/client/{name} must be a symlink to clients/js/{name}, not a copy")


def test_the_package_ships_exactly_the_canonical_files() -> None:
    assert sorted(p.name for p in PACKAGED.iterdir()) == FILES
    assert sorted(CLIENT_FILES) == [f"/client/{name}" for name in FILES]


@pytest.mark.parametrize("name", MODULES)
def test_every_relative_import_names_a_served_module(name: str) -> None:
    text = (CANONICAL / name).read_text()
    imported = set(re.findall(r"^(?:import|export)\b[^'\"]*?from '(\./[^']+)'", text, re.MULTILINE))
    imported |= set(re.findall(r"^import '(\./[^']+)'", text, re.MULTILINE))
    for spec in imported:
        assert spec.removeprefix("./") in MODULES, f"{name} imports {spec}, which is not served"


async def _client() -> TestClient[web.Request, web.Application]:
    app = web.Application()
    for path, (name, content_type) in CLIENT_FILES.items():
        app.router.add_get(path, client_file_handler(name, content_type))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.mark.parametrize("name", MODULES)
async def test_every_module_is_served_with_the_entry_points_headers(name: str) -> None:
    client = await _client()
    try:
        resp = await client.get(f"/client/{name}")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/javascript")
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert await resp.read() == (CANONICAL / name).read_bytes()
        again = await client.get(f"/client/{name}", headers={"If-None-Match": resp.headers["ETag"]})
        assert again.status == 304
    finally:
        await client.close()


async def test_only_the_allow_list_is_served() -> None:
    client = await _client()
    try:
        for path in ("/client/nope.js", "/client/package.json", "/client/test/pure.test.mjs",
                     "/client/../server.py", "/client/%2e%2e/server.py"):
            assert (await client.get(path)).status == 404, path
        resp = await client.get("/client/openpanel-ws.d.ts")
        assert resp.status == 200 and "OpenPanelClient" in await resp.text()
    finally:
        await client.close()


def test_node_unit_tests_pass() -> None:
    run_node_tests(CANONICAL / "test", cwd=CANONICAL)
