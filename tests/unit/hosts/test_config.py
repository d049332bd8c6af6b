"""Hosts configuration parsed with plain calls: TOML ``[[hosts]]``, ``OPENPANEL_WS_HOSTS``,
``default_host`` (docs/hosts.md "Configuration")."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from openpanel_ws.config import ConfigError, load_settings
from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.hosts.config import HostConfig, hosts_from_env, hosts_from_toml

TOML = """
[[hosts]]
id = "local"
engine = "unix:///var/run/docker.sock"

[[hosts]]
id = "prod"
engine = "tcp://10.0.0.5:2376"
certs = "/etc/openpanel-ws/prod"
timeout = 10
terminals = false

[[hosts]]
id = "edge"
engine = "ssh://deploy@edge.example:2222"
known_hosts = "/etc/openpanel-ws/known_hosts"
identity = "/etc/openpanel-ws/id_ed25519"
socket = "/run/docker.sock"
keepalive = 30
enabled = false
"""


def test_the_documented_toml() -> None:
    local, prod, edge = hosts_from_toml(tomllib.loads(TOML)["hosts"])
    assert local == HostConfig("local", EngineTarget("unix:///var/run/docker.sock"))
    certs = Path("/etc/openpanel-ws/prod")
    assert prod == HostConfig("prod", EngineTarget(
        "tcp://10.0.0.5:2376", ca=certs / "ca.pem", cert=certs / "cert.pem",
        key=certs / "key.pem"), timeout=10.0, terminals=False)
    assert edge == HostConfig("edge", EngineTarget(
        "ssh://deploy@edge.example:2222", ssh_known_hosts=Path("/etc/openpanel-ws/known_hosts"),
        ssh_identity=Path("/etc/openpanel-ws/id_ed25519"), ssh_socket="/run/docker.sock",
        ssh_keepalive=30.0), enabled=False)
    assert prod.target.uses_tls and edge.target.scheme == "ssh"
    assert edge.target.describe() == "ssh://deploy@edge.example:2222"


def test_the_environment_form() -> None:
    hosts = hosts_from_env("local=unix:///var/run/docker.sock, prod=tcp://h:2376?certs=/c")
    assert [h.id for h in hosts] == ["local", "prod"]
    assert hosts[1].target == EngineTarget("tcp://h:2376", ca=Path("/c/ca.pem"),
                                           cert=Path("/c/cert.pem"), key=Path("/c/key.pem"))


@pytest.mark.parametrize(("tables", "message"), [
    ([{"id": "Bad Id", "engine": "unix:///x"}], "hosts[0]: id must be a slug"),
    ([{"id": "a"}], "hosts[0] (a): engine URL is required"),
    ([{"id": "a", "engine": "http2://x"}], "hosts[0] (a): 'http2://x': expected unix://PATH"),
    ([{"id": "a", "engine": "tcp://h:2376", "ca": "/ca.pem"}], "TLS needs cert, key"),
    ([{"id": "a", "engine": "unix:///x", "colour": 1}], "unknown key 'colour'"),
    ([{"id": "a", "engine": "unix:///x"}, {"id": "a", "engine": "unix:///y"}],
     "host id 'a' is configured twice"),
    ([{"id": "a", "engine": "ssh://h", "keepalive": 0}], "keepalive must be a positive number"),
])
def test_a_bad_entry_is_named(tables: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ValueError) as info:
        hosts_from_toml(tables)
    assert message in str(info.value)


def test_default_host_must_be_configured(tmp_path: Path) -> None:
    env = {"OPENPANEL_WS_HOSTS": "a=unix:///x,b=unix:///y"}
    assert load_settings(environ={**env, "OPENPANEL_WS_DEFAULT_HOST": "b"}).default_host == "b"
    with pytest.raises(ConfigError, match="no host 'c' \\(hosts: a, b\\)"):
        load_settings(environ={**env, "OPENPANEL_WS_DEFAULT_HOST": "c"})


def test_the_config_file_form(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('default_host = "prod"\n' + TOML)
    settings = load_settings(config_file=path, environ={})
    assert [h.id for h in settings.host_configs()] == ["local", "prod", "edge"]
    assert settings.default_host == "prod"
