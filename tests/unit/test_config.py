from pathlib import Path

import pytest

from openpanel_ws.config import ConfigError, load_settings
from openpanel_ws.ratelimit import RateLimit


def test_defaults_are_the_specification_s() -> None:
    s = load_settings(environ={})
    assert (s.host, s.port, s.auth_timeout, s.heartbeat_interval) == ("127.0.0.1", 3001, 30.0, 30.0)
    assert s.rate_limit_containers == RateLimit(10, 1.0)
    assert s.rate_limit_terminal == RateLimit(10, 1.0)
    assert s.rate_limit_logs == RateLimit(100, 60.0)
    assert s.rate_limit_metrics == RateLimit(100, 60.0)
    assert s.max_message_bytes == 65536
    assert s.jwt_algorithm == "HS256"


def test_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('port = 4000\nhost = "0.0.0.0"\nauth_timeout = 10\nallowed_origins = ["https://a"]\n')
    env = {"OPENPANEL_WS_PORT": "5000", "OPENPANEL_WS_AUTH_TIMEOUT": "12",
           "OPENPANEL_WS_RATE_LIMIT_LOGS": "20/min", "OPENPANEL_WS_TOKEN": "client-side, ignored"}
    s = load_settings(config_file=cfg, environ=env, overrides={"port": "6000"})
    assert s.port == 6000
    assert s.auth_timeout == 12.0
    assert s.host == "0.0.0.0"
    assert s.allowed_origins == ["https://a"]
    assert s.rate_limit_logs == RateLimit(20, 60.0)


def test_docker_host_from_the_standard_variable() -> None:
    assert load_settings(environ={"DOCKER_HOST": "tcp://10.0.0.2:2375"}).docker_host == "tcp://10.0.0.2:2375"
    (local,) = load_settings(environ={"DOCKER_HOST": "ssh://deploy@edge:2222"}).host_configs()
    assert local.target.scheme == "ssh"


@pytest.mark.parametrize(
    ("env", "needle"),
    [({"OPENPANEL_WS_PORT": "http"}, "OPENPANEL_WS_PORT"),
     ({"OPENPANEL_WS_PORT": "70000"}, "OPENPANEL_WS_PORT"),
     ({"OPENPANEL_WS_AUTH_TIMEOUT": "-1"}, "OPENPANEL_WS_AUTH_TIMEOUT"),
     ({"OPENPANEL_WS_RATE_LIMIT_CONTAINERS": "fast"}, "OPENPANEL_WS_RATE_LIMIT_CONTAINERS"),
     ({"OPENPANEL_WS_JWT_ALGORITHM": "none"}, "OPENPANEL_WS_JWT_ALGORITHM"),
     ({"OPENPANEL_WS_JWT_ALGORITHM": "RS256"}, "OPENPANEL_WS_JWT_PUBLIC_KEY_FILE"),
     ({"OPENPANEL_WS_LOG_FORMAT": "xml"}, "OPENPANEL_WS_LOG_FORMAT"),
     ({"DOCKER_HOST": "ftp://x"}, "DOCKER_HOST"),
     ({"DOCKER_HOST": "ssh://"}, "DOCKER_HOST")],
)
def test_a_wrong_value_is_one_line_naming_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_key_in_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        load_settings(config_file=cfg, environ={})


def test_broken_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("port = \n")
    with pytest.raises(ConfigError, match="config file"):
        load_settings(config_file=cfg, environ={})
    with pytest.raises(ConfigError, match="config file"):
        load_settings(config_file=tmp_path / "missing.toml", environ={})


def test_no_hosts_is_one_local_host_on_docker_host() -> None:
    s = load_settings(environ={"DOCKER_HOST": "unix:///run/other.sock"})
    (local,) = s.host_configs()
    assert local.id == "local"
    assert local.target.url == "unix:///run/other.sock"


def test_hosts_from_the_file_and_the_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'default_host = "edge"\n'
        '[[hosts]]\nid = "prod-1"\nengine = "tcp://10.0.0.5:2376"\ncerts = "/etc/opws/prod-1"\n'
        'terminals = false\ntimeout = 2\n'
        '[[hosts]]\nid = "edge"\nengine = "ssh://deploy@edge.example:2200"\n'
        'known_hosts = "/etc/opws/known_hosts"\n')
    s = load_settings(config_file=cfg, environ={})
    prod, edge = s.host_configs()
    assert (prod.id, prod.terminals, prod.timeout) == ("prod-1", False, 2.0)
    assert prod.target.uses_tls and prod.target.ca == Path("/etc/opws/prod-1/ca.pem")
    assert edge.target.describe() == "ssh://deploy@edge.example:2200"
    assert s.default_host == "edge"
    env = {"OPENPANEL_WS_HOSTS": "local=unix:///var/run/docker.sock, b=tcp://h:2376?certs=/c"}
    local, b = load_settings(environ=env).host_configs()
    assert local.target.on_this_machine and b.target.cert == Path("/c/cert.pem")


@pytest.mark.parametrize(
    ("env", "needle"),
    [({"OPENPANEL_WS_HOSTS": "Prod=unix:///x"}, "id must be a slug"),
     ({"OPENPANEL_WS_HOSTS": "a=unix:///x,a=unix:///y"}, "configured twice"),
     ({"OPENPANEL_WS_HOSTS": "a=ftp://x"}, "expected unix://PATH"),
     ({"OPENPANEL_WS_HOSTS": "a=tcp://h:2376?tls=1"}, "unknown URL parameter"),
     ({"OPENPANEL_WS_HOSTS": "a"}, "is not id=URL"),
     ({"OPENPANEL_WS_HOSTS": "a=unix:///x", "OPENPANEL_WS_DEFAULT_HOST": "b"}, "no host 'b'")],
)
def test_a_wrong_host_is_one_line_naming_it(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_a_tls_host_without_its_files_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[hosts]]\nid = "p"\nengine = "tcp://h:2376"\ncert = "/c.pem"\n')
    with pytest.raises(ConfigError, match="TLS needs ca, key"):
        load_settings(config_file=cfg, environ={})
