"""Shared helpers of the benchmarks: /proc readings, process control, machine facts.

Nothing here talks to the gateway; see `wsclient.py` for the load generators and
`bench_server.py` / `baseline_server.py` for the servers under test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
IMAGE = os.environ.get("OPENPANEL_WS_TEST_IMAGE", "openpanel-ws-test:busybox")
SECRET = "bench-secret-" + "s" * 40


# --- /proc -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (fields 14 and 15 of /proc/<pid>/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    """VmRSS from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def engine_pids() -> dict[str, int]:
    """The oldest dockerd and containerd processes (the engine, not shims)."""
    pids: dict[str, int] = {}
    for name in ("dockerd", "containerd"):
        out = subprocess.run(["pgrep", "-xo", name], capture_output=True, text=True).stdout.split()
        if out:
            pids[name] = int(out[0])
    return pids


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def use_loop_from_env() -> str:
    """BENCH_LOOP=uvloop: the server under test and its baselines on uvloop (if installed;
    it is not a dependency of the project, see docs/bench.md)."""
    if os.environ.get("BENCH_LOOP") == "uvloop":
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        uvloop.install()
        return "uvloop"
    return "asyncio"


def server_start(description: str) -> int:
    """What every server under test does first: its `--port`, more file descriptors, and
    the loop that BENCH_LOOP names. Returns the port."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    port: int = parser.parse_args().port
    raise_nofile()
    use_loop_from_env()
    return port


def scenario_parser(doc: str, **defaults: int | float | str | bool) -> argparse.ArgumentParser:
    """What every scenario does first: SIGTERM ends it through its `finally` blocks
    (`exit_on_sigterm`), and its options: one `--some-name` for each `some_name=default`,
    of the default's type (a `False` default: a flag). The description is `doc`'s first line."""
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for name, default in defaults.items():
        option = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(option, action="store_true")
        else:
            parser.add_argument(option, type=type(default), default=default)
    return parser


def scenario_args(doc: str, **defaults: int | float | str | bool) -> argparse.Namespace:
    """`scenario_parser(doc, **defaults).parse_args()`."""
    return scenario_parser(doc, **defaults).parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class CpuWindow:
    """CPU seconds (utime + stime) of a server and of its client processes over `wall_s`."""

    server_s: float
    clients_s: float
    wall_s: float

    def us_per_delivery(self, deliveries: int) -> dict[str, float | None]:
        """The `server_cpu_us_per_delivery` and `client_cpu_us_per_delivery` keys of a result."""
        return {"server_cpu_us_per_delivery": rnd(self.server_s / deliveries * 1e6, 2),
                "client_cpu_us_per_delivery": rnd(self.clients_s / deliveries * 1e6, 2)}


class CpuMeter:
    """Measures a window: `restart()` at its start, `read()` at its end (see `CpuWindow`)."""

    def __init__(self, server_pid: int, client_pids: Sequence[int] = ()) -> None:
        self.server_pid = server_pid
        self.client_pids = list(client_pids)
        self.restart()

    def restart(self) -> None:
        self.clients0 = self._clients()
        self.server0 = cpu_seconds(self.server_pid)
        self.started = time.monotonic()

    def read(self) -> CpuWindow:
        wall = time.monotonic() - self.started
        server_s = cpu_seconds(self.server_pid) - self.server0
        return CpuWindow(server_s, self._clients() - self.clients0, wall)

    def _clients(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.client_pids)


# --- statistics --------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_ms(values: Sequence[float], digits: int = 2) -> dict[str, float | None]:
    """The `p50_ms`, `p99_ms` (nearest rank) and `max_ms` keys of a result, from latencies
    in milliseconds; None where there is no value."""
    return {"p50_ms": rnd(percentile(values, 50), digits), "p99_ms": rnd(percentile(values, 99), digits),
            "max_ms": rnd(max(values), digits) if values else None}


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rnd(value: float | None, digits: int = 3) -> float | None:
    if value is None or value != value:  # NaN
        return None
    return round(value, digits)


# --- servers -----------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.1)
    raise RuntimeError("server did not become healthy")


@contextlib.contextmanager
def server(script: str, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run `bench/<script>` on a free loopback port; SIGTERM it (then SIGKILL) at exit."""
    with _serving([str(BENCH / script)], args, env) as srv:
        yield srv


@contextlib.contextmanager
def app_server(env: dict[str, str] | None = None) -> Iterator[Server]:
    """`python -m openpanel_ws serve` (the application alone) as `server` runs a script."""
    with _serving(["-m", "openpanel_ws", "serve"], (), env) as srv:
        yield srv


@contextlib.contextmanager
def _serving(command: list[str], args: Sequence[str], env: dict[str, str] | None) -> Iterator[Server]:
    port = free_port()
    full_env = {**os.environ, "OPENPANEL_WS_JWT_SECRET": SECRET, "OPENPANEL_WS_LOG_LEVEL": "warning",
                **(env or {})}
    proc = subprocess.Popen([sys.executable, *command, "--port", str(port), *args], env=full_env, cwd=ROOT)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield Server(proc, port)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def post(url: str, timeout: float = 120.0) -> dict[str, Any]:
    req = urllib.request.Request(url, method="POST", data=b"")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        value: dict[str, Any] = json.loads(resp.read())
        return value


def token(subject: str = "bench", roles: Sequence[str] = ("admin",)) -> str:
    from openpanel_ws.auth import issue_token

    return issue_token(SECRET, subject=subject, roles=list(roles), ttl_seconds=3600)


# --- containers --------------------------------------------------------------------------


def docker_run(name: str, *command: str) -> None:
    subprocess.run(["docker", "run", "-d", "--name", name, IMAGE, *command],
                   check=True, capture_output=True, timeout=60)


def docker_rm(*names: str) -> None:
    if names:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=60)


# --- machine -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import aiohttp
    import orjson
    import psutil

    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_mib": psutil.virtual_memory().total // (1024 * 1024),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "orjson": orjson.__version__,
        "psutil": psutil.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(Exception):
        out = subprocess.run(["docker", "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}"],
                             capture_output=True, text=True, timeout=10).stdout.split()
        info["docker"] = out[0]
        info["docker_api"] = out[1]
    with contextlib.suppress(Exception):
        from openpanel_ws import __version__

        info["openpanel_ws"] = __version__
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def exit_on_sigterm() -> None:
    """SIGTERM (run.py's time limit) -> SystemExit, so `finally` blocks remove the
    scenario's containers and stop its servers."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, handler)


CONTAINER_PREFIXES = ("opws-bench-stats-", "opws-bench-logs-", "opws-bench-term-", "opws-bench-ev-")


def remove_stale_containers() -> None:
    """Containers this harness names, left behind by an interrupted run."""
    out = subprocess.run(["docker", "ps", "-aq", *(f"--filter=name=^{p}" for p in CONTAINER_PREFIXES)],
                         capture_output=True, text=True, timeout=30).stdout.split()
    if out:
        subprocess.run(["docker", "rm", "-f", *out], capture_output=True, timeout=60)


def emit(result: dict[str, Any]) -> None:
    """A scenario's last stdout line: its JSON result, read by run.py."""
    print("RESULT " + json.dumps(result), flush=True)


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)
