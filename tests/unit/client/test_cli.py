"""Pure pieces of the Docker-like CLI: trailing options of exec, the start-up token lines."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest

from openpanel_ws.cli import build_parser, client_url, token_banner
from openpanel_ws.client.cli_exec import take_trailing_options
from openpanel_ws.client.cli_text import UsageError
from openpanel_ws.config import Settings


def exec_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["exec", *argv])


def test_everything_after_the_container_is_the_command() -> None:
    args = exec_args("-i", "web", "sh", "-c", "echo --url")
    take_trailing_options(args)
    assert (args.interactive, args.tty, args.container) == (True, False, "web")
    assert args.command == ["sh", "-c", "echo --url"]


def test_own_options_right_after_the_container_are_still_options() -> None:
    args = exec_args("web", "--url", "ws://h:1", "--token=t", "ls", "--url", "x")
    take_trailing_options(args)
    assert (args.url, args.token, args.command) == ("ws://h:1", "t", ["ls", "--url", "x"])
    with pytest.raises(UsageError):
        take_trailing_options(exec_args("web", "--url"))


def test_client_url_never_uses_a_wildcard_address() -> None:
    assert client_url("0.0.0.0", 3001) == "ws://127.0.0.1:3001"
    assert client_url("::1", 3001) == "ws://[::1]:3001"
    assert client_url("10.0.0.5", 80) == "ws://10.0.0.5:80"


def test_token_only_on_a_terminal_else_a_private_file(tmp_path: Path) -> None:
    settings = Settings(jwt_secret="s" * 48, state_dir=tmp_path / "state")
    lines = token_banner(settings, "ws://127.0.0.1:3001", embedded=True, tty=False)
    text = "\n".join(lines)
    path = tmp_path / "state" / "admin-token"
    assert "eyJ" not in text
    assert f"written to {path}" in text and "openpanel-ws token --sub admin --role admin" in text
    assert f'OPENPANEL_WS_TOKEN="$(cat {path})"' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().startswith("eyJ")
    lines = token_banner(settings, "ws://127.0.0.1:3001", embedded=True, tty=True)
    assert lines[-1].startswith("export OPENPANEL_WS_URL=ws://127.0.0.1:3001 OPENPANEL_WS_TOKEN=eyJ")
    lines = token_banner(settings, "ws://127.0.0.1:3001", embedded=False, tty=True)
    assert not any("eyJ" in line for line in lines)
    assert lines[-1] == "export OPENPANEL_WS_URL=ws://127.0.0.1:3001"


@pytest.mark.parametrize("option", ["--reconnect-base", "--reconnect-max"])
def test_a_reconnect_delay_must_be_positive(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["logs", "web", "--token", "t", option, "0"])
    assert args.func(args) == 2
    assert capsys.readouterr().err == (
        "openpanel-ws: --reconnect-base and --reconnect-max: expected positive seconds\n")
