"""`docker_contexts = true`: the Docker CLI's context store, faked in a directory, becomes
hosts (layout of docker/cli's context store: meta/<sha256(name)>/meta.json and
tls/<sha256(name)>/docker/{ca,cert,key}.pem)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from openpanel_ws.config import ConfigError, load_settings
from openpanel_ws.engine.target import EngineTarget
from openpanel_ws.hosts.config import HostConfig
from openpanel_ws.hosts.contexts import (
    context_dir_of,
    host_from_context,
    read_context_store,
    slugify,
    with_contexts,
)


def add_context(config_dir: Path, name: str, host: str, *, tls: tuple[str, ...] = (),
                skip_verify: bool = False) -> Path:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config_dir / "contexts" / "meta" / digest
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({
        "Name": name, "Metadata": {"Description": "test"},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}}}))
    tls_dir = config_dir / "contexts" / "tls" / digest / "docker"
    for file in tls:
        tls_dir.mkdir(parents=True, exist_ok=True)
        (tls_dir / file).write_text("PEM")
    return tls_dir


def test_the_directory_is_the_sha256_of_the_name() -> None:
    # docker/cli: digest.FromString("default").Encoded()
    assert context_dir_of("default") == (
        "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f")


@pytest.mark.parametrize(("name", "slug"), [
    ("prod", "prod"), ("Prod EU", "prod-eu"), ("my_ctx", "my_ctx"), ("--x.y--", "x-y"),
    ("a" * 80, "a" * 63),
])
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_a_name_without_letters_is_refused() -> None:
    with pytest.raises(ValueError, match="no letters or digits"):
        slugify("***")


def test_a_store_of_three_transports(tmp_path: Path) -> None:
    tls_dir = add_context(tmp_path, "Prod EU", "tcp://10.0.0.5:2376",
                          tls=("ca.pem", "cert.pem", "key.pem"))
    add_context(tmp_path, "builder", "ssh://deploy@build.example")
    add_context(tmp_path, "rootless", "unix:///run/user/1000/docker.sock")
    found = read_context_store(tmp_path)
    assert [name for name, _ in found] == ["Prod EU", "builder", "rootless"]
    hosts = {host.id: host.target for _, host in found}
    assert hosts == {
        "prod-eu": EngineTarget("tcp://10.0.0.5:2376", ca=tls_dir / "ca.pem",
                                cert=tls_dir / "cert.pem", key=tls_dir / "key.pem"),
        "builder": EngineTarget("ssh://deploy@build.example"),
        "rootless": EngineTarget("unix:///run/user/1000/docker.sock"),
    }
    assert hosts["prod-eu"].uses_tls


def test_skip_tls_verify(tmp_path: Path) -> None:
    add_context(tmp_path, "lab", "tcp://lab:2376", tls=("cert.pem", "key.pem"), skip_verify=True)
    ((_, host),) = read_context_store(tmp_path)
    assert host.target.uses_tls and not host.target.tls_verify and host.target.ca is None


def test_tls_without_a_client_certificate_is_refused(tmp_path: Path) -> None:
    add_context(tmp_path, "half", "tcp://h:2376", tls=("ca.pem",))
    with pytest.raises(ValueError, match=r"docker context 'half': .*TLS needs cert, key"):
        read_context_store(tmp_path)


def test_unusable_contexts_are_left_out(tmp_path: Path) -> None:
    add_context(tmp_path, "win", "npipe:////./pipe/docker_engine")
    meta = tmp_path / "contexts" / "meta" / context_dir_of("k8s")
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": "k8s", "Endpoints": {"kubernetes": {}}}))
    assert read_context_store(tmp_path) == ()


def test_no_store_is_no_hosts(tmp_path: Path) -> None:
    assert read_context_store(tmp_path / "none") == ()


def test_a_malformed_meta_is_one_line(tmp_path: Path) -> None:
    meta = tmp_path / "contexts" / "meta" / context_dir_of("x")
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"docker context store .*meta.json: "):
        read_context_store(tmp_path)
    with pytest.raises(ValueError, match="without a Name"):
        host_from_context({"Endpoints": {}}, {})


def test_two_contexts_with_one_id_clash(tmp_path: Path) -> None:
    add_context(tmp_path, "Prod", "tcp://a:2375")
    add_context(tmp_path, "prod", "tcp://b:2375")
    local = (HostConfig.local(),)
    with pytest.raises(ValueError, match=(
            "docker context 'prod' becomes host id 'prod', as does docker context 'Prod'")):
        with_contexts(local, read_context_store(tmp_path))


def test_a_context_and_a_configured_host_clash(tmp_path: Path) -> None:
    add_context(tmp_path, "local", "tcp://a:2375")
    with pytest.raises(ValueError, match="as does configured host 'local'"):
        with_contexts((HostConfig.local(),), read_context_store(tmp_path))


def test_the_setting_adds_contexts_after_the_hosts(tmp_path: Path) -> None:
    add_context(tmp_path, "builder", "ssh://deploy@build.example")
    env = {"DOCKER_CONFIG": str(tmp_path), "OPENPANEL_WS_DOCKER_CONTEXTS": "true"}
    assert [h.id for h in load_settings(environ=env).host_configs()] == ["local", "builder"]
    env["OPENPANEL_WS_HOSTS"] = "edge=tcp://edge:2375"
    assert [h.id for h in load_settings(environ=env).host_configs()] == ["edge", "builder"]
    env.pop("OPENPANEL_WS_DOCKER_CONTEXTS")
    assert [h.id for h in load_settings(environ=env).host_configs()] == ["edge"]


def test_a_clash_is_a_config_error(tmp_path: Path) -> None:
    add_context(tmp_path, "Local", "tcp://a:2375")
    env = {"DOCKER_CONFIG": str(tmp_path), "OPENPANEL_WS_DOCKER_CONTEXTS": "1"}
    with pytest.raises(ConfigError, match=(
            "invalid value for OPENPANEL_WS_DOCKER_CONTEXTS: docker context 'Local' becomes "
            "host id 'local', as does configured host 'local'")):
        load_settings(environ=env)
