"""Fixtures: a real server per test, real containers, and an engine that must be there in CI.

Every pytest process (each xdist worker too) gets its own state directory: `XDG_STATE_HOME`
points into the process's temporary directory before any test runs, so the in-process
servers and the `serve`/CLI subprocesses that inherit the environment never share the
state of another worker or of the user's own `~/.local/state/openpanel-ws`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from helpers import Containers, RunningServer, running_server, server_factory

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session", autouse=True)
def own_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`XDG_STATE_HOME` of this pytest process: a directory no other worker uses."""
    saved = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state-home"))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = saved


def _engine_answers() -> bool:
    try:
        return subprocess.run(["docker", "version"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def engine() -> None:
    """Engine-backed tests need a real engine: skipped on a laptop without one, failed in CI."""
    if not _engine_answers():
        if IN_CI:
            pytest.fail("no Docker engine answers (CI=true): run scripts/ensure-docker.sh")
        pytest.skip("no Docker engine: run `make engine` (scripts/ensure-docker.sh)")


@pytest.fixture
async def server(engine: None) -> AsyncIterator[RunningServer]:
    async with running_server() as srv:
        yield srv


@pytest.fixture
async def make_server(engine: None) -> AsyncIterator[Callable[..., Awaitable[RunningServer]]]:
    """Start a server with settings overridden (e.g. a short auth timeout)."""
    async with server_factory() as factory:
        yield factory


@pytest.fixture
def containers(engine: None) -> Iterator[Containers]:
    c = Containers()
    try:
        yield c
    finally:
        c.cleanup_sync()


# --- the test hosts (tests/hosts_support.py, docs/hosts.md "The test hosts") ---------------
# (imported here, not at the top: this section is appended by the hosts work)
from hosts_support import Engine2Containers, HostsDescriptor, HungProxy, hosts_descriptor  # noqa: E402


@pytest.fixture(scope="session")
def hosts_setup(engine: None) -> HostsDescriptor:
    """The descriptor of engine2 and the sshd (a failure, not a skip, when missing)."""
    return hosts_descriptor()


@pytest.fixture
def engine2_containers(hosts_setup: HostsDescriptor) -> Iterator[Engine2Containers]:
    """Busybox containers on engine2, removed after the test."""
    c = Engine2Containers()
    try:
        yield c
    finally:
        c.cleanup_sync()


@pytest.fixture
async def hung_proxy(hosts_setup: HostsDescriptor) -> AsyncIterator[HungProxy]:
    """A `HungProxy` (hung) in front of engine2's TLS port: `tls_host(url=hung_proxy.url)`."""
    async with HungProxy(("127.0.0.1", hosts_setup.tcp_port)) as proxy:
        yield proxy
