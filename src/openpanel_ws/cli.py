"""Command line: `openpanel-ws serve`, `openpanel-ws token`, and the client commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openpanel_ws import __version__
from openpanel_ws.auth import issue_token
from openpanel_ws.client.cli import register as register_client_cli
from openpanel_ws.config import ConfigError, Settings, load_settings
from openpanel_ws.statedir import check_dir, check_file, ensure_private_dir, read_private
from openpanel_ws.statedir import write_private as statedir_write

__all__ = [
    "ADMIN_TOKEN_FILE",
    "ADMIN_TOKEN_TTL",
    "SECRET_FILE",
    "JsonFormatter",
    "build_parser",
    "check_state",
    "client_url",
    "cmd_recordings_list",
    "cmd_recordings_play",
    "cmd_serve",
    "cmd_token",
    "configure_logging",
    "embedded_secret",
    "main",
    "resolve_secret",
    "token_banner",
    "write_private",
]

log = logging.getLogger("openpanel_ws")

SECRET_FILE = "jwt-secret"
ADMIN_TOKEN_FILE = "admin-token"
ADMIN_TOKEN_TTL = 24 * 3600


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def embedded_secret(state_dir: Path) -> tuple[str, bool]:
    """The secret of the embedded default: created once (mode 0600), then reused. Raises
    StateDirError when the file is a symlink, not a regular file, not this user's, or
    readable by others (docs/security.md "The state directory")."""
    path = state_dir / SECRET_FILE
    ensure_private_dir(state_dir, "state directory")
    data = read_private(path, "secret file")
    text = data.decode(errors="replace").strip() if data is not None else ""
    if text:
        return text, False
    secret = secrets.token_urlsafe(48)
    statedir_write(path, (secret + "\n").encode())
    return secret, True


def check_state(settings: Settings) -> None:
    """At start: the state directory (created 0700 when missing), the files the gateway
    keeps there and the recording directory are to be trusted, or StateDirError (exit 2,
    one line naming the path and the fix; docs/security.md "The state directory")."""
    from openpanel_ws.gateways.terminal.journal import JOURNAL_FILE

    state_dir = settings.state_dir
    ensure_private_dir(state_dir, "state directory")
    check_file(state_dir / SECRET_FILE, "secret file", private=True)
    check_file(state_dir / ADMIN_TOKEN_FILE, "admin token file", private=True)
    for suffix in ("", "-journal", "-wal", "-shm"):
        check_file(state_dir / (JOURNAL_FILE + suffix), "terminal journal")
    if settings.terminal_record_dir is not None:
        check_dir(settings.terminal_record_dir, "recording directory")


def resolve_secret(settings: Settings) -> bool:
    """Fill in the embedded secret when none is configured; True when it was used."""
    if settings.jwt_algorithm.startswith("HS") and not settings.jwt_secret:
        settings.jwt_secret, _ = embedded_secret(settings.state_dir)
        return True
    return False


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses (a wildcard listen address is not one)."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"ws://{host}:{port}"


def token_banner(settings: Settings, url: str, *, embedded: bool, tty: bool,
                 config: str | None = None) -> list[str]:
    """Start-up lines about tokens. The admin token of the embedded secret is printed
    only on a terminal: service logs (systemd, docker) capture stdout, and tokens are
    never logged. Otherwise it goes to a 0600 file whose path is printed."""
    how = "openpanel-ws token --sub admin --role admin" + (f" --config {config}" if config else "")
    console = "http" + url.removeprefix("ws") + "/"  # the web console (docs/console.md)
    if not embedded:
        return [f"tokens: {how} (signed with the configured secret)",
                f"console: {console}",
                f"export OPENPANEL_WS_URL={url}"]
    token = issue_token(settings.jwt_secret or "", subject="admin", roles=["admin"],
                        ttl_seconds=ADMIN_TOKEN_TTL)
    lines = [f"embedded secret: {settings.state_dir / SECRET_FILE}"]
    if tty:
        lines += [f"admin token (24 h): {token}",
                  f"console: {console}#token={token}",
                  f"export OPENPANEL_WS_URL={url} OPENPANEL_WS_TOKEN={token}"]
        return lines
    path = settings.state_dir / ADMIN_TOKEN_FILE
    write_private(path, token)
    lines += [f"admin token (24 h): not printed (stdout is not a terminal); written to {path} "
              f"(mode 0600); a new one: {how}",
              f"console: {console}",
              f'export OPENPANEL_WS_URL={url} OPENPANEL_WS_TOKEN="$(cat {path})"']
    return lines


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner may read (replaced atomically, never
    through a symlink)."""
    ensure_private_dir(path.parent, "state directory")
    statedir_write(path, (text + "\n").encode())


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {"host": getattr(args, "host", None), "port": getattr(args, "port", None)}
    return load_settings(config_file=getattr(args, "config", None), overrides=overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from openpanel_ws.server import create_app

    settings = _settings_from(args)
    configure_logging(settings)
    check_state(settings)
    embedded = resolve_secret(settings)
    try:
        app = create_app(settings)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot start: {exc}") from None

    async def run() -> tuple[bool, Path | None]:
        """Serve until a signal; (reloading, the terminal hand-off file)."""
        runner, port = await _listen(app, settings)
        _announce(settings, port, embedded=embedded, config=getattr(args, "config", None))
        reloading = await _until_stop_or_reload()
        handoff: Path | None = None
        if reloading:
            # Reload (docs/terminal.md): live terminals are handed to the re-executed
            # gateway instead of being killed.
            log.info("reloading")
            handoff = await _terminal_hand_off(app)
        else:
            log.info("shutting down")
        await runner.cleanup()
        return reloading, handoff

    reloading, handoff = asyncio.run(run())
    if reloading:
        _re_exec(handoff)
    return 0


async def _listen(app: Any, settings: Settings) -> tuple[Any, int]:
    """The app's runner, listening; (the runner, the port it listens on)."""
    from aiohttp import web

    from openpanel_ws.handshake import raise_nofile_limit
    from openpanel_ws.server import create_runner

    raise_nofile_limit()
    runner = create_runner(app, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
    port = settings.port
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]
    return runner, port


def _announce(settings: Settings, port: int, *, embedded: bool, config: str | None) -> None:
    """The start-up lines on stdout: where to connect, how to get a token, the origins."""
    base = f"ws://{settings.host}:{port}"
    print(f"openpanel-ws {__version__} listening on {base} "
          "(/ws/containers /ws/logs /ws/metrics /ws/terminal)", flush=True)
    print(f"port: {port}", flush=True)
    for line in token_banner(settings, client_url(settings.host, port), embedded=embedded,
                             tty=sys.stdout.isatty(), config=config):
        print(line, flush=True)
    origins = ", ".join(settings.allowed_origins) or "none besides same-origin"
    print(f"allowed browser origins: {origins} (OPENPANEL_WS_ALLOWED_ORIGINS)", flush=True)
    print(hosts_line(settings), flush=True)


def hosts_line(settings: Settings) -> str:
    """`hosts: id (address[, TLS][, disabled]) [default], ...` (no secrets)."""
    configs = settings.host_configs()
    default = settings.default_host or configs[0].id
    parts = []
    for config in configs:
        notes = [config.target.describe()]
        if config.target.uses_tls:
            notes.append("TLS" if config.target.tls_verify else "TLS NOT VERIFIED")
        if not config.enabled:
            notes.append("disabled")
        parts.append(f"{config.id} ({', '.join(notes)})" + (" [default]" if config.id == default
                                                             else ""))
    return "hosts: " + ", ".join(parts)


async def _until_stop_or_reload() -> bool:
    """Wait for SIGTERM/SIGINT (stop: False) or SIGHUP (reload: True)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    reloading = False

    def reload() -> None:
        nonlocal reloading
        reloading = True
        stop.set()

    loop.add_signal_handler(signal.SIGHUP, reload)
    await stop.wait()
    return reloading


def _re_exec(handoff: Path | None) -> None:
    """Reload: the same command line in a fresh interpreter, given the terminals' hand-off."""
    if handoff is not None:
        from openpanel_ws.gateways.terminal.handoff import HANDOFF_ENV

        os.environ[HANDOFF_ENV] = str(handoff)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


async def _terminal_hand_off(app: Any) -> Path | None:
    from openpanel_ws.gateways.terminal import TerminalGateway
    from openpanel_ws.protocol import RELOAD_REASON, CloseCode
    from openpanel_ws.server import CLIENTS_KEY, GATEWAYS_KEY

    gateway = app[GATEWAYS_KEY].get("terminal")
    path: Path | None = None
    if isinstance(gateway, TerminalGateway):
        try:
            path = await gateway.hand_off()
        except Exception:
            log.exception("terminal hand-off failed; the terminals end with this process")
    for session in list(app[CLIENTS_KEY]):
        # "Service Restart": clients of a reloading gateway reconnect and resume their
        # terminals (a plain shutdown closes with 1001: the terminals are gone).
        session.close(CloseCode.SERVICE_RESTART, RELOAD_REASON)
    return path


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    if not settings.jwt_algorithm.startswith("HS"):
        raise ConfigError(
            f"token: signing needs a shared secret; {settings.jwt_algorithm} tokens come "
            "from your identity provider")
    resolve_secret(settings)
    token = issue_token(
        settings.jwt_secret or "",
        subject=args.sub,
        algorithm=settings.jwt_algorithm,
        roles=args.role or [],
        permissions=args.permission or [],
        containers=args.containers,
        ttl_seconds=args.ttl,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    print(token)
    return 0


def _recordings_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir)
    settings = load_settings(config_file=getattr(args, "config", None))
    if settings.terminal_record_dir is None:
        raise ConfigError("recordings: no directory; set OPENPANEL_WS_TERMINAL_RECORD_DIR "
                          "or pass --dir")
    return settings.terminal_record_dir


def cmd_recordings_list(args: argparse.Namespace) -> int:
    from openpanel_ws.gateways.terminal.recording import list_casts

    directory = _recordings_dir(args)
    if not directory.is_dir():
        raise ConfigError(f"recordings: {directory} is not a directory")
    for info in list_casts(directory):
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                time.gmtime(float(info.header.get("timestamp", 0))))
        size = f"{info.header.get('width')}x{info.header.get('height')}"
        print(f"{started}  {info.duration:9.1f}s  {size:>9}  {info.path}")
    return 0


def cmd_recordings_play(args: argparse.Namespace) -> int:
    from openpanel_ws.gateways.terminal.playback import OscFilter
    from openpanel_ws.gateways.terminal.recording import CastError, play, read_cast

    if args.speed <= 0:
        raise ConfigError("recordings play: --speed must be positive")
    path = Path(args.file)
    if not path.exists() and not path.is_absolute():
        with contextlib.suppress(ConfigError):
            candidate = _recordings_dir(args) / path
            if candidate.exists():
                path = candidate
    try:
        _head, events = read_cast(path)
    except CastError as exc:
        raise ConfigError(str(exc)) from None
    out = sys.stdout
    # A hostile recording must not set the clipboard or the title of this terminal
    # (docs/security.md "Recordings"): OSC 52 and 0/1/2 are dropped unless --raw.
    osc = None if args.raw else OscFilter()

    def write(text: str) -> None:
        out.write(text if osc is None else osc.feed(text))
        out.flush()

    play(events, write, time.sleep, speed=args.speed, max_wait=args.max_wait)
    if osc is not None:
        out.write(osc.flush())
        out.flush()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openpanel-ws",
                                     description="OpenPanel WebSocket API 1.3.0 gateway")
    parser.add_argument("--version", action="version", version=f"openpanel-ws {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="listen address (OPENPANEL_WS_HOST, default 127.0.0.1)")
    serve.add_argument("--port", help="listen port (OPENPANEL_WS_PORT, default 3001)")
    serve.add_argument("--config", help="TOML settings file (OPENPANEL_WS_CONFIG)")
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="print a token signed with the configured secret")
    token.add_argument("--sub", required=True, help="user id (the JWT sub claim)")
    token.add_argument("--role", action="append", help="role, e.g. admin (repeatable)")
    token.add_argument("--permission", action="append", help="permission, e.g. terminal")
    token.add_argument("--containers", nargs="+", metavar="GLOB",
                       help="container name globs this token may see")
    token.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds")
    token.add_argument("--config", help="TOML settings file")
    token.set_defaults(func=cmd_token)

    recordings = sub.add_parser("recordings", help="terminal recordings (asciicast v2)")
    rec = recordings.add_subparsers(dest="recordings_command", required=True)
    rec_list = rec.add_parser("list", help="list the recordings")
    rec_list.add_argument("--dir", help="directory (default OPENPANEL_WS_TERMINAL_RECORD_DIR)")
    rec_list.add_argument("--config", help="TOML settings file")
    rec_list.set_defaults(func=cmd_recordings_list)
    rec_play = rec.add_parser("play", help="replay a recording in this terminal")
    rec_play.add_argument("file", help="a .cast file (a bare name is looked up in --dir)")
    rec_play.add_argument("--speed", type=float, default=1.0, help="playback speed factor")
    rec_play.add_argument("--max-wait", type=float, default=2.0, metavar="S",
                          help="longest pause between two outputs, in recorded seconds")
    rec_play.add_argument("--raw", action="store_true",
                          help="replay every escape sequence, even those that set the "
                               "clipboard (OSC 52) or the title (OSC 0/1/2)")
    rec_play.add_argument("--dir", help="directory (default OPENPANEL_WS_TERMINAL_RECORD_DIR)")
    rec_play.add_argument("--config", help="TOML settings file")
    rec_play.set_defaults(func=cmd_recordings_play)

    # Client subcommands (logs, stats, events, metrics, exec) live in `client.cli`.
    register_client_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        print(f"openpanel-ws: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
