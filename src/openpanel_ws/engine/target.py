"""Where an engine is and how to reach it: the address of one Docker host (no I/O).

Three transports (docs/hosts.md):

- ``unix:///var/run/docker.sock``: a socket on this machine;
- ``tcp://host:2376``: TCP, with TLS when any of `ca`/`cert`/`key` is given (the server
  certificate and its name are verified unless `tls_verify` is false, which is logged);
  plain TCP (no TLS files) is accepted for the default host's ``DOCKER_HOST`` only;
- ``ssh://user@host[:port]``: one SSH connection per host; every engine connection is a
  channel on it to the remote `ssh_socket`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_SOCKET",
    "SCHEMES",
    "EngineTarget",
]

DEFAULT_SOCKET = "/var/run/docker.sock"
SCHEMES = ("unix", "tcp", "ssh")


@dataclass(frozen=True, slots=True)
class EngineTarget:
    url: str
    # TCP + TLS: PEM files; all three, or a `certs` directory holding ca.pem, cert.pem, key.pem
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    tls_verify: bool = True
    # SSH: known_hosts (None: ~/.ssh/known_hosts), private key (None: asyncssh's defaults),
    # the engine's socket on the remote host, keepalive interval in seconds.
    ssh_known_hosts: Path | None = None
    ssh_identity: Path | None = None
    ssh_socket: str = DEFAULT_SOCKET
    ssh_keepalive: float = 15.0

    @property
    def scheme(self) -> str:
        scheme = urlsplit(self.url).scheme
        return "tcp" if scheme == "http" else scheme

    @property
    def uses_tls(self) -> bool:
        return self.scheme == "tcp" and any(p is not None for p in (self.ca, self.cert, self.key))

    @property
    def on_this_machine(self) -> bool:
        """A unix socket: the engine runs on the machine the gateway runs on."""
        return self.scheme == "unix"

    def describe(self) -> str:
        """The address for logs and /api/hosts (never a key or a password)."""
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            return f"unix://{parts.path or DEFAULT_SOCKET}"
        user = f"{parts.username}@" if parts.username else ""
        port = f":{parts.port}" if parts.port else ""
        return f"{self.scheme}://{user}{parts.hostname or ''}{port}"

    def check(self) -> None:
        """ValueError naming what is wrong with this address (config load time)."""
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"{self.url!r}: {exc}") from None
        if self.scheme not in SCHEMES:
            raise ValueError(f"{self.url!r}: expected unix://PATH, tcp://HOST:PORT or "
                             "ssh://USER@HOST[:PORT]")
        if self.scheme != "unix" and not parts.hostname:
            raise ValueError(f"{self.url!r}: no host name")
        if self.uses_tls:
            missing = [n for n, p in (("cert", self.cert), ("key", self.key)) if p is None]
            if self.tls_verify and self.ca is None:
                missing.insert(0, "ca")
            if missing:
                raise ValueError(f"{self.url!r}: TLS needs {', '.join(missing)} "
                                 "(or a certs directory with ca.pem, cert.pem, key.pem)")
        if self.scheme == "ssh" and self.ssh_keepalive <= 0:
            raise ValueError("ssh keepalive must be positive")
