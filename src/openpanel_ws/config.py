"""Settings: flags > environment (OPENPANEL_WS_*) > TOML file > defaults.

A wrong value raises ConfigError with one line naming the setting.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from openpanel_ws.auth import SUPPORTED_ALGORITHMS, JwtSettings
from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.hosts.config import HostConfig, hosts_from_env, hosts_from_toml
from openpanel_ws.hosts.contexts import docker_config_dir, read_context_store, with_contexts
from openpanel_ws.protocol import DEFAULT_RATE_LIMITS
from openpanel_ws.ratelimit import RateLimit

__all__ = [
    "ENV_PREFIX",
    "ORIGINS_SETTING",
    "ConfigError",
    "Settings",
    "default_state_dir",
    "load_settings",
    "normalize_origin",
    "validate",
]

ENV_PREFIX = "OPENPANEL_WS_"

class ConfigError(Exception):
    """One line for the operator; never a traceback."""


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "openpanel-ws"


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 3001
    # JWT (docs/protocol.md "Authorization")
    jwt_secret: str | None = None
    jwt_algorithm: str = "HS256"
    jwt_public_key_file: Path | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 30.0
    jwt_require_exp: bool = True  # tokens without `exp` are refused
    # Connection lifecycle
    # TCP accept -> completed WebSocket upgrade; past it the socket is closed.
    handshake_timeout: float = 10.0
    # Sockets not yet authenticated (mid-handshake or awaiting `auth`): past the total,
    # new sockets are refused at once. Per client IP: 0 = off (behind a reverse proxy
    # every client has the proxy's address).
    max_unauthenticated: int = 4096
    max_unauthenticated_per_ip: int = 0
    auth_timeout: float = 30.0
    heartbeat_interval: float = 30.0
    allowed_origins: list[str] = field(default_factory=list)
    max_message_bytes: int = 65536
    # Rate limits (specification: containers/terminal 10/s, logs/metrics 100/min)
    rate_limit_containers: RateLimit = DEFAULT_RATE_LIMITS["containers"]
    rate_limit_terminal: RateLimit = DEFAULT_RATE_LIMITS["terminal"]
    rate_limit_logs: RateLimit = DEFAULT_RATE_LIMITS["logs"]
    rate_limit_metrics: RateLimit = DEFAULT_RATE_LIMITS["metrics"]
    flood_threshold: int = 50
    flood_window: float = 10.0
    # Outbound path: ordered frames queued per client before it is a slow consumer
    send_queue_max: int = 4096
    send_queue_max_bytes: int = 4 * 1024 * 1024
    send_timeout: float = 10.0
    # Engine
    docker_host: str = "unix:///var/run/docker.sock"
    # Connect + response-header timeout of engine requests (DOCKER_UNAVAILABLE past it).
    engine_timeout: float = 5.0
    # Docker hosts (docs/hosts.md): none = one host, `local`, on docker_host.
    hosts: tuple[HostConfig, ...] = ()
    default_host: str | None = None  # None: the first configured host
    # Also every context of the Docker CLI's store (~/.docker/contexts), after them.
    docker_contexts: bool = False
    # Metrics gateway
    metrics_disk_path: str = "/"
    metrics_include_virtual_interfaces: bool = False
    # Logs gateway
    host_log_files: list[str] = field(default_factory=list)
    # Containers gateway
    log_line_max_bytes: int = 65536
    # Terminal gateway
    terminal_idle_timeout: float = 1800.0
    terminal_audit_log: Path | None = None
    # Terminal sessions (docs/terminal.md): resume grace (0 = off), output ring, caps
    terminal_grace: float = 60.0
    terminal_ring_bytes: int = 256 * 1024
    terminal_max_per_user: int = 8
    terminal_max: int = 256
    # Recording (asciicast v2), off unless a directory is set; input only when asked
    terminal_record_dir: Path | None = None
    terminal_record_input: bool = False
    # Recording caps: bytes per file, and for all the files of the directory. Past either
    # a recording stops (the terminal goes on); a full directory records no new terminal.
    terminal_record_max_bytes: int = 64 * 1024 * 1024
    terminal_record_dir_max_bytes: int = 1024 * 1024 * 1024
    # Process
    log_format: str = "text"
    log_level: str = "info"
    state_dir: Path = field(default_factory=default_state_dir)

    def jwt(self) -> JwtSettings:
        return JwtSettings(
            algorithm=self.jwt_algorithm,
            secret=self.jwt_secret,
            public_key_file=self.jwt_public_key_file,
            audience=self.jwt_audience,
            issuer=self.jwt_issuer,
            leeway_seconds=self.jwt_leeway,
            require_exp=self.jwt_require_exp,
        )

    def host_configs(self) -> tuple[HostConfig, ...]:
        """The hosts to serve: the configured ones, or `local` on docker_host."""
        return self.hosts or (HostConfig.local(self.docker_host),)

    def rate_limit_for(self, gateway: str) -> RateLimit:
        limit: RateLimit = getattr(self, f"rate_limit_{gateway}")
        return limit


_POSITIVE = {
    "auth_timeout", "heartbeat_interval", "max_message_bytes", "flood_threshold",
    "flood_window", "send_queue_max", "send_queue_max_bytes", "send_timeout",
    "log_line_max_bytes", "terminal_idle_timeout", "handshake_timeout",
    "max_unauthenticated", "engine_timeout", "terminal_ring_bytes",
    "terminal_max_per_user", "terminal_max", "terminal_record_max_bytes",
    "terminal_record_dir_max_bytes",
}
_NON_NEGATIVE = {"terminal_grace", "max_unauthenticated_per_ip"}


def _convert(name: str, hint: Any, raw: Any) -> Any:
    """Convert one raw value (string from env/flags, or a TOML value) to the field's type."""
    text = hint if isinstance(hint, str) else str(hint)
    optional = "None" in text
    if raw is None or (optional and isinstance(raw, str) and raw == ""):
        if optional:
            return None
        raise ValueError("a value is required")
    if "HostConfig" in text:
        return hosts_from_env(raw) if isinstance(raw, str) else hosts_from_toml(raw)
    if "RateLimit" in text:
        return raw if isinstance(raw, RateLimit) else RateLimit.parse(str(raw))
    if "list" in text:
        if isinstance(raw, list):
            return [str(v) for v in raw]
        return [part.strip() for part in str(raw).split(",") if part.strip()]
    if "bool" in text:
        if isinstance(raw, bool):
            return raw
        lowered = str(raw).strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError("expected true or false")
    if "int" in text:
        if isinstance(raw, bool):
            raise ValueError("expected an integer")
        value: Any = int(raw)
    elif "float" in text:
        if isinstance(raw, bool):
            raise ValueError("expected a number")
        value = float(raw)
    elif "Path" in text:
        value = Path(os.path.expanduser(str(raw)))
    else:
        value = str(raw)
    if name in _POSITIVE and value <= 0:
        raise ValueError("must be positive")
    if name in _NON_NEGATIVE and value < 0:
        raise ValueError("must be 0 or more")
    return value


def _apply(settings: Settings, values: Mapping[str, Any], origin: str) -> None:
    hints = get_type_hints(Settings)
    names = {f.name for f in fields(Settings)}
    for key, raw in values.items():
        name = key.replace("-", "_").lower()
        if name not in names:
            raise ConfigError(f"{origin}: unknown setting '{key}'")
        try:
            setattr(settings, name, _convert(name, hints[name], raw))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{origin}: invalid value for {_label(name, origin)}: {exc}") from None


def _label(name: str, origin: str) -> str:
    if origin == "environment":
        return ENV_PREFIX + name.upper()
    if origin == "command line":
        return "--" + name.replace("_", "-")
    return name


def load_settings(
    *,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if environ is None else environ
    settings = Settings()
    if docker_host := env.get("DOCKER_HOST"):
        settings.docker_host = docker_host
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        _apply(settings, data, f"config file {path}")
    from_env = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG"
    }
    known = {f.name for f in fields(Settings)}
    # Unknown OPENPANEL_WS_* variables (client-side ones such as _TOKEN) are not ours.
    _apply(settings, {k: v for k, v in from_env.items() if k in known}, "environment")
    if overrides:
        _apply(settings, {k: v for k, v in overrides.items() if v is not None}, "command line")
    if settings.docker_contexts:
        try:
            settings.hosts = with_contexts(
                settings.host_configs(), read_context_store(docker_config_dir(env)))
        except ValueError as exc:
            raise ConfigError(f"invalid value for {ENV_PREFIX}DOCKER_CONTEXTS: {exc}") from None
    validate(settings)
    return settings


ORIGINS_SETTING = ENV_PREFIX + "ALLOWED_ORIGINS"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str:
    """`scheme://host[:port]` as a browser sends it in `Origin` (lower case, no default
    port). ValueError for anything else: a path, no scheme, a bad port (docs/protocol.md "Origin")."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r} is not scheme://host[:port]") from None
    scheme = parts.scheme.lower()
    if (scheme not in {"http", "https"} or not parts.hostname or parts.path
            or parts.query or parts.fragment or parts.username or "://" not in text):
        raise ValueError(f"{value!r} is not scheme://host[:port] (e.g. http://127.0.0.1:3000)")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def validate(settings: Settings) -> None:
    for origin in settings.allowed_origins:
        if origin != "*":
            try:
                normalize_origin(origin)
            except ValueError as exc:
                raise ConfigError(f"invalid value for {ORIGINS_SETTING}: {exc}") from None
    if settings.jwt_algorithm not in SUPPORTED_ALGORITHMS:
        raise ConfigError(
            f"invalid value for {ENV_PREFIX}JWT_ALGORITHM: {settings.jwt_algorithm!r} "
            f"(one of {', '.join(sorted(SUPPORTED_ALGORITHMS))})"
        )
    if not settings.jwt_algorithm.startswith("HS") and settings.jwt_public_key_file is None:
        raise ConfigError(
            f"{ENV_PREFIX}JWT_PUBLIC_KEY_FILE is required with {settings.jwt_algorithm}"
        )
    if settings.jwt_public_key_file is not None and not settings.jwt_public_key_file.is_file():
        raise ConfigError(
            f"invalid value for {ENV_PREFIX}JWT_PUBLIC_KEY_FILE: "
            f"{settings.jwt_public_key_file} is not a readable file"
        )
    if settings.log_format not in {"text", "json"}:
        raise ConfigError(f"invalid value for {ENV_PREFIX}LOG_FORMAT: expected text or json")
    if settings.log_level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError(
            f"invalid value for {ENV_PREFIX}LOG_LEVEL: expected debug, info, warning or error"
        )
    if not 0 <= settings.port < 65536:
        raise ConfigError(f"invalid value for {ENV_PREFIX}PORT: must be 0 to 65535")
    ids = [h.id for h in settings.host_configs()]
    if settings.default_host is not None and settings.default_host not in ids:
        raise ConfigError(f"invalid value for {ENV_PREFIX}DEFAULT_HOST: no host "
                          f"'{settings.default_host}' (hosts: {', '.join(ids)})")
    if not settings.docker_host.startswith(("unix://", "tcp://", "http://", "ssh://")):
        raise ConfigError("invalid value for DOCKER_HOST: expected unix://PATH, tcp://HOST:PORT "
                          "or ssh://USER@HOST[:PORT]")
    try:
        EngineTarget(settings.docker_host).check()
    except ValueError as exc:
        raise ConfigError(f"invalid value for DOCKER_HOST: {exc}") from None
