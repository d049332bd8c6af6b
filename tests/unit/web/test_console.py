"""Web console, sans-I/O parts: asset table, caching, bearer parsing, scope filtering."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import helpers
from openpanel_ws.auth import JwtSettings, Principal, TokenVerifier
from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.hosts.config import HostConfig
from openpanel_ws.hosts.status import HostState, HostStatus
from openpanel_ws.web.console import (
    CONTENT_SECURITY_POLICY,
    BadAuthorization,
    accepts_gzip,
    bearer_principal,
    bearer_token,
    build_static_table,
    container_summary,
    etag_matches,
    host_row,
    host_state,
    list_response,
    own_names,
    visible_containers,
)


def entry(name: str, state: str = "running", **extra: object) -> dict[str, object]:
    return {"Id": f"{name}-id" + "0" * 40, "Names": [f"/{name}"], "Image": "busybox", "State": state,
            "Status": "Up 2 minutes", "Created": 1795737972, **extra}


def test_static_table_lists_only_files_below_the_root(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>" + "x" * 2000)
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "a.js").write_text("export {}")
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "LICENSE").write_text("MIT")
    (tmp_path / "notes.bin").write_bytes(b"\0")
    table = build_static_table(tmp_path)
    assert set(table) == {"index.html", "js/a.js", "vendor/LICENSE"}
    assert table["js/a.js"].content_type.startswith("text/javascript")
    assert table["index.html"].gzipped is not None  # > 1 KiB and text
    assert table["js/a.js"].gzipped is None  # too small to bother
    assert table["index.html"].etag != table["js/a.js"].etag


def test_packaged_static_folder_has_the_page_vendored_libraries_and_their_licenses() -> None:
    table = build_static_table()
    for path in ("index.html", "app.css", "js/main.js", "js/logs.js", "js/ansi.js",
                 "vendor/xterm/xterm.mjs", "vendor/xterm/xterm.css", "vendor/xterm/LICENSE",
                 "vendor/addon-fit/addon-fit.mjs", "vendor/addon-fit/LICENSE",
                 "vendor/uplot/uPlot.esm.js", "vendor/uplot/uPlot.min.css", "vendor/uplot/LICENSE"):
        assert path in table, path
    page = table["index.html"].body.decode()
    assert "<script>" not in page  # module scripts by src only
    assert 'type="module" src="/static/js/main.js"' in page
    # The console's own code never parses strings as markup.
    sink = re.compile(rb"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|createContextualFragment")
    for name, file in table.items():
        if name.startswith("js/"):
            assert not sink.search(file.body), name


def test_csp_allows_no_inline_script_and_only_same_origin_connections() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"


@pytest.mark.parametrize(("header", "matches"), [
    (None, False), ("", False), ('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True),
    ('"abcd"', False),
])
def test_etag_matching(header: str | None, matches: bool) -> None:
    assert etag_matches(header, '"abc"') is matches


@pytest.mark.parametrize(("header", "ok"), [
    ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.8", True), ("gzip;q=0", False), ("identity", False),
    (None, False), ("*", True),
])
def test_accepts_gzip(header: str | None, ok: bool) -> None:
    assert accepts_gzip(header) is ok


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   ", "token abc"])
def test_bearer_token_refuses_anything_else(header: str | None) -> None:
    with pytest.raises(BadAuthorization):
        bearer_token(header)


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer  abc ") == "abc"


def test_own_names_ignore_legacy_link_aliases() -> None:
    assert own_names({"Names": ["/web", "/app/web-alias"]}) == ["web"]
    assert own_names({"Names": None}) == []


def test_scopes_filter_like_the_gateways() -> None:
    entries = [entry("shop-web"), entry("shop-db"), entry("other")]
    admin = Principal("a", frozenset({"admin"}))
    scoped = Principal("u", container_scopes=("shop-*",))
    nothing = Principal("n", container_scopes=())
    assert [own_names(e)[0] for e in visible_containers(admin, entries)] == ["shop-web", "shop-db", "other"]
    assert [own_names(e)[0] for e in visible_containers(scoped, entries)] == ["shop-web", "shop-db"]
    assert visible_containers(nothing, entries) == []
    # an alias name from a legacy link never widens a scope
    aliased = {**entry("x"), "Names": ["/x", "/shop-web/x"]}
    assert visible_containers(scoped, [aliased]) == []


def test_container_summary_fields() -> None:
    row = container_summary(entry("web"), {"StartedAt": "2026-11-27T10:00:00.123456789Z",
                                           "FinishedAt": "0001-01-01T00:00:00Z", "ExitCode": 0,
                                           "Health": {"Status": "healthy"}})
    assert row["name"] == "web" and row["state"] == "running" and row["image"] == "busybox"
    assert row["startedAt"] == "2026-11-27T10:00:00.123456789Z"
    assert row["finishedAt"] is None and row["exitCode"] is None  # running: no exit code
    assert row["health"] == "healthy"
    assert row["created"].endswith("Z")
    stopped = container_summary(entry("job", "exited"), {"ExitCode": 3, "StartedAt": "2026-11-27T10:00:00Z",
                                                         "FinishedAt": "2026-11-27T10:00:05Z"})
    assert stopped["exitCode"] == 3 and stopped["finishedAt"] == "2026-11-27T10:00:05Z"
    assert container_summary(entry("gone"), None)["startedAt"] is None


def test_list_response_puts_running_containers_first() -> None:
    states = (("b", "exited"), ("c", "running"), ("a", "running"))
    rows = [container_summary(entry(n, s), None) for n, s in states]
    body = list_response(rows, 0.0)
    assert [r["name"] for r in body["containers"]] == ["a", "c", "b"]
    assert body["timestamp"] == "1970-01-01T00:00:00.000Z"


def test_rows_name_their_host_and_the_list_names_the_hosts_that_did_not_answer() -> None:
    rows = [container_summary(entry("web"), None, "b"), container_summary(entry("web"), None, "a")]
    assert rows[0]["host"] == "b"
    failed = [{"host": "c", "code": "DOCKER_UNAVAILABLE", "error": "Docker engine unavailable"}]
    body = list_response(rows, 0.0, failed)
    assert [r["host"] for r in body["containers"]] == ["a", "b"]  # same name: by host
    assert body["unavailable"] == failed
    assert "unavailable" not in list_response(rows, 0.0)


def test_host_rows_say_no_secret() -> None:
    target = EngineTarget("ssh://deploy@build.example:2222", ssh_identity=Path("/keys/id"))
    status = HostStatus("build", HostState.DOWN, 0.0, "connection refused", "24.0.7", 3)
    row = host_row(status, HostConfig("build", target, terminals=False))
    assert row == {"id": "build", "state": "down", "error": "connection refused",
                   "version": "24.0.7", "containers": 3, "engine": "ssh://deploy@build.example:2222",
                   "terminals": False}
    assert host_state(status) == {"id": "build", "state": "down", "error": "connection refused"}


def test_bearer_principal_is_none_for_anything_but_a_valid_token() -> None:
    verifier = TokenVerifier(JwtSettings(secret=helpers.SECRET))
    token = helpers.make_token("ops", hosts=["staging-*"])
    principal = bearer_principal(f"Bearer {token}", verifier)
    assert principal is not None and principal.may_access_host("staging-1")
    assert not principal.may_access_host("prod-1")
    for header in (None, "", "Basic abc", "Bearer not-a-token", token):
        assert bearer_principal(header, verifier) is None
