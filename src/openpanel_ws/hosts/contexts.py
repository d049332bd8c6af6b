"""The user's `docker context` store as hosts (docs/hosts.md "Configuration").

With ``docker_contexts = true`` every context of the Docker CLI's store becomes a host,
its name slugified into the host id. The store (docker/cli ``context/store``):

- ``$DOCKER_CONFIG/contexts/meta/<sha256(name)>/meta.json`` (``DOCKER_CONFIG`` defaults
  to ``~/.docker``): ``{"Name": ..., "Endpoints": {"docker": {"Host": URL,
  "SkipTLSVerify": bool}}}``;
- ``$DOCKER_CONFIG/contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem``: its TLS files,
  when it has any.

`host_from_context` is the pure part (a parsed meta.json and the TLS files found);
`read_context_store` reads the store; `with_contexts` adds them to the configured hosts.
Two contexts (or a context and a configured host) with the same id are a ValueError.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openpanel_ws.engine.target import SCHEMES, EngineTarget
from openpanel_ws.hosts.config import HostConfig

__all__ = [
    "context_dir_of",
    "docker_config_dir",
    "host_from_context",
    "read_context_store",
    "slugify",
    "with_contexts",
]

log = logging.getLogger(__name__)

TLS_FILES = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}


def docker_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"])
    return Path(env.get("HOME") or Path.home()) / ".docker"


def context_dir_of(name: str) -> str:
    """The store's directory name of a context: the hex sha256 of its name."""
    return hashlib.sha256(name.encode()).hexdigest()


def slugify(name: str) -> str:
    """A context name as a host id: lower case; runs of other characters become '-'."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")[:63].rstrip("-_")
    if not slug:
        raise ValueError(f"docker context {name!r}: no letters or digits for a host id")
    return slug


def host_from_context(meta: Mapping[str, Any], tls_files: Mapping[str, Path]) -> HostConfig | None:
    """The host of one context's meta.json; None when it has no Docker endpoint this
    gateway can use (logged). ValueError for a malformed one."""
    name = meta.get("Name")
    if not isinstance(name, str) or not name:
        raise ValueError("docker context without a Name")
    endpoints = meta.get("Endpoints")
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    url = docker.get("Host") if isinstance(docker, dict) else None
    if not isinstance(url, str) or not url:
        log.warning("docker context %r has no docker endpoint: not a host", name)
        return None
    assert isinstance(docker, dict)
    target = EngineTarget(
        url, ca=tls_files.get("ca"), cert=tls_files.get("cert"), key=tls_files.get("key"),
        tls_verify=not bool(docker.get("SkipTLSVerify", False)),
    )
    if target.scheme not in SCHEMES:
        log.warning("docker context %r: %s endpoints are not supported: not a host", name, url)
        return None
    try:
        target.check()
    except ValueError as exc:
        raise ValueError(f"docker context {name!r}: {exc}") from None
    return HostConfig(slugify(name), target)


def read_context_store(config_dir: Path) -> tuple[tuple[str, HostConfig], ...]:
    """(context name, host) for every usable context of the store, in name order."""
    meta_root = config_dir / "contexts" / "meta"
    if not meta_root.is_dir():
        return ()
    found: list[tuple[str, HostConfig]] = []
    for entry in sorted(meta_root.iterdir()):
        meta_file = entry / "meta.json"
        if not meta_file.is_file():
            continue
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"docker context store {meta_file}: {exc}") from None
        if not isinstance(meta, dict):
            raise ValueError(f"docker context store {meta_file}: not a JSON object")
        tls_dir = config_dir / "contexts" / "tls" / entry.name / "docker"
        files = {k: tls_dir / f for k, f in TLS_FILES.items() if (tls_dir / f).is_file()}
        host = host_from_context(meta, files)
        if host is not None:
            found.append((str(meta["Name"]), host))
    return tuple(sorted(found, key=lambda item: item[0]))


def with_contexts(configured: tuple[HostConfig, ...],
                  contexts: tuple[tuple[str, HostConfig], ...]) -> tuple[HostConfig, ...]:
    """The configured hosts, then one per context; ValueError when two share an id."""
    owner = {host.id: f"configured host '{host.id}'" for host in configured}
    out = list(configured)
    for name, host in contexts:
        if host.id in owner:
            raise ValueError(f"docker context {name!r} becomes host id '{host.id}', "
                             f"as does {owner[host.id]}")
        owner[host.id] = f"docker context {name!r}"
        out.append(host)
    return tuple(out)
