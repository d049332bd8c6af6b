"""The soak (`make soak MINUTES=60`): a mixed load against a real server and the real
engine, for as long as asked, sampling the server and checking every follower's lines.

    .venv/bin/python tests/soak/soak.py --minutes 60 [--output FILE] [--interval 30]

The load (issue 28, by default): F followers of a container printing R numbered lines a
second, stats and metrics subscribers, `/ws/logs` clients, a container created,
subscribed and removed every 5 s, a connect/authenticate/subscribe/leave every 0.5 s on
every gateway (seven shapes, a new subject each), and a terminal opened, used and closed
(or dropped and resumed, or dropped and left to its grace period) every 10 s.

Phases: warm-up with churn; quiet (churn stopped, in-flight work done, detached
terminals expired): the **baseline** sample and the tracemalloc reference; the measured
churn for `--minutes`; quiet again: the **end** sample. The report (stdout and JSON):
RSS slope per hour over the measured phase, fds first and last, gaps, duplicates,
errors, reconnects, tracebacks in the server's log, object counts and table sizes that
did not come back to the baseline, and tracemalloc's top growth.

The server runs in its own process (`server.py`), so what is measured is the gateway's
own memory, not the clients'. Traffic is on 127.0.0.1 only, and every loop is bounded by
the length asked for: the soak ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from load import (  # noqa: E402
    Tally,
    Target,
    TerminalUser,
    churn_once,
    container_once,
    follower,
    persistent,
    subscriber,
)

IMAGE = os.environ.get("OPENPANEL_WS_TEST_IMAGE", "openpanel-ws-test:busybox")
SECRET = "soak-secret-" + "s" * 40
SAMPLE_GAP = 1.0  # seconds between the samples of a quiet phase (in-flight work passes)
TERMINAL_GRACE = 15.0  # detached terminals of the churn expire this soon (default 60 s)


@dataclass
class Plan:
    minutes: float = 20.0
    warmup: float = 120.0  # seconds of churn before the baseline
    interval: float = 30.0  # seconds between samples
    followers: int = 50
    rate: int = 20  # lines a second of the followed container
    stats: int = 10
    metrics: int = 10
    logs: int = 5
    churn_every: float = 0.5
    container_every: float = 5.0
    terminal_every: float = 10.0
    tracemalloc: int = 1  # frames per trace; 0: off
    top: int = 10


async def docker(*args: str, check: bool = True, timeout: float = 60) -> str:
    proc = await asyncio.create_subprocess_exec("docker", *args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {err.decode().strip()}")
    return out.decode().strip()


class ServerProcess:
    """`server.py` as a child: its port, and samples on request."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.port = 0
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, workdir: Path, plan: Plan) -> ServerProcess:
        log_path = workdir / "server.log"
        log = log_path.open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "server.py"), "--secret", SECRET,
            "--state-dir", str(workdir / "state"), "--tracemalloc", str(plan.tracemalloc),
            "--terminal-grace", str(TERMINAL_GRACE), "--audit-log", str(workdir / "audit.log"),
            "--top", str(plan.top),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
            limit=64 * 1024 * 1024)
        log.close()
        self = cls(proc, log_path)
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not first:
            raise RuntimeError(f"server did not start: {log_path.read_text()[-2000:]}")
        self.port = orjson.loads(first)["port"]
        return self

    async def ask(self, command: str, timeout: float = 300) -> dict[str, Any]:
        async with self._lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the server exited ({self.proc.returncode}); its log ends:\n{tail}")
            value: dict[str, Any] = orjson.loads(line)
            return value

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def tracebacks(self) -> tuple[int, list[str]]:
        text = self.log_path.read_text(errors="replace")
        lines = text.splitlines()
        errors = [line for line in lines if " ERROR " in line or " CRITICAL " in line]
        return text.count("Traceback (most recent call last)"), errors[:20]


async def every(period: float, stop: asyncio.Event, tally: Tally, name: str, limit: int,
                cycle: Callable[[int], Awaitable[None]]) -> None:
    """Start `cycle(n)` every `period` seconds until `stop`, at most `limit` at once (a
    slow cycle delays the next rather than piling up); failures are recorded."""
    running: set[asyncio.Task[None]] = set()
    n = 0
    next_at = time.monotonic()

    async def guarded(k: int) -> None:
        try:
            await cycle(k)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            tally.error(f"{name} #{k}: {type(exc).__name__}: {exc}")

    while not stop.is_set():
        if len(running) < limit:
            task = asyncio.create_task(guarded(n))
            running.add(task)
            task.add_done_callback(running.discard)
            n += 1
        next_at += period
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
    if running:
        await asyncio.wait(set(running), timeout=120)


class Churn:
    """The three churns (connections, containers, terminals), started and stopped together."""

    def __init__(self, target: Target, tally: Tally, plan: Plan) -> None:
        self.target, self.tally, self.plan = target, tally, plan
        self.counter = 0
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.stop = asyncio.Event()
        base = self.counter
        terminals = TerminalUser(self.target, self.tally)
        plan, target, tally, stop = self.plan, self.target, self.tally, self.stop
        self.tasks = [
            asyncio.create_task(every(plan.churn_every, stop, tally, "churn", 8,
                                      lambda n: churn_once(target, tally, base + n))),
            asyncio.create_task(every(plan.container_every, stop, tally, "container", 2,
                                      lambda n: container_once(target, tally, n, IMAGE, docker))),
            asyncio.create_task(every(plan.terminal_every, stop, tally, "terminal", 2,
                                      lambda n: terminals.once(base + n))),
        ]

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        self.counter += 1_000_000


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600


def grown(before: dict[str, int], after: dict[str, int]) -> dict[str, list[int]]:
    """Keys whose value is larger after than before: key -> [before, after]."""
    return {k: [before.get(k, 0), v] for k, v in sorted(after.items()) if v > before.get(k, 0)}


class Soak:
    """One run: the server, the container, the clients, the samples and the report."""

    def __init__(self, plan: Plan, workdir: Path, timeout: float = 30.0) -> None:
        self.plan = plan
        self.timeout = timeout  # seconds any one reply may take
        self.workdir = workdir
        self.tally = Tally()
        self.samples: list[dict[str, Any]] = []
        self.baseline: dict[str, Any] = {}
        self.end: dict[str, Any] = {}
        self.phases: dict[str, float] = {}

    async def run(self, progress: Callable[[str], None] = print) -> dict[str, Any]:
        plan = self.plan
        name = f"soak-follow-{os.getpid():x}-{time.monotonic_ns() % 10**6:x}"
        await docker("run", "-d", "--name", name, "--label", "openpanel-ws-soak=1", IMAGE, "sh", "-c",
                     f"i=0; while :; do i=$((i+1)); echo $i; usleep {1_000_000 // plan.rate}; done")
        server = await ServerProcess.start(self.workdir, plan)
        connector = aiohttp.TCPConnector(limit=0)
        try:
            async with aiohttp.ClientSession(connector=connector) as session:
                target = Target(f"http://127.0.0.1:{server.port}", SECRET, name, session,
                                self.timeout)
                return await self._phases(server, target, progress)
        finally:
            await server.stop()
            await docker("rm", "-f", name, check=False)

    async def _phases(self, server: ServerProcess, target: Target,
                      progress: Callable[[str], None]) -> dict[str, Any]:
        plan, tally = self.plan, self.tally
        stop = asyncio.Event()
        long_lived = self._long_lived(target, stop)
        started = time.monotonic()
        churn = Churn(target, tally, plan)
        churn.start()
        await asyncio.sleep(plan.warmup)
        await churn.finish()
        progress(f"warm-up done ({plan.warmup:.0f}s); quiet for the baseline")
        self.baseline = await self._quiet(server)
        await server.ask("reference")
        self.phases["measured_start"] = time.monotonic() - started
        churn.start()
        measured_start = time.monotonic()
        by = measured_start + plan.minutes * 60
        while time.monotonic() < by:
            await asyncio.sleep(min(plan.interval, max(0.0, by - time.monotonic())))
            sample = await server.ask("sample")
            sample["client"] = {"lines": tally.lines, "gaps": tally.gaps, "duplicates": tally.duplicates,
                                "errors": tally.error_count, "reconnects": tally.reconnects}
            self.samples.append(sample)
            progress(_line(sample))
        await churn.finish()
        self.phases["measured_seconds"] = time.monotonic() - measured_start
        progress("churn stopped; quiet for the end sample")
        self.end = await self._quiet(server, self.baseline)
        stop.set()
        await asyncio.gather(*long_lived)
        leftovers = await _leftover_processes(target.container)
        return self.report(server, leftovers)

    def _long_lived(self, target: Target, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        plan, tally, c = self.plan, self.tally, target.container
        specs: list[tuple[str, str, Any]] = (
            [("follower", "/ws/containers", follower(target, tally, stop))] * plan.followers
            + [("stats", "/ws/containers", subscriber(target, tally, stop, {
                "type": "subscribe_stats", "containerId": c, "interval": 1000}, "subscribed_stats"))]
            * plan.stats
            + [("metrics", "/ws/metrics", subscriber(target, tally, stop, {
                "type": "subscribe", "interval": 1000}, "subscribed"))] * plan.metrics
            + [("logs", "/ws/logs", subscriber(target, tally, stop, None, None))] * plan.logs)
        return [asyncio.create_task(persistent(target, tally, stop, kind, body, path))
                for kind, path, body in specs]

    async def _quiet(self, server: ServerProcess, baseline: dict[str, Any] | None = None) -> dict[str, Any]:
        """Once the churn has stopped: detached terminals expire, then samples a second
        apart. Without a `baseline` (taking one): three, each count the largest seen (the
        level at rest, timers that come and go included). With one: until nothing is
        above it (at most 20), each count the smallest seen (in-flight work passes)."""
        await asyncio.sleep(TERMINAL_GRACE + 5)
        merged: dict[str, Any] = {}
        pick = max if baseline is None else min
        for n in range(20 if baseline else 3):
            sample = await server.ask("sample")
            merged = _merged(merged, sample, pick) if merged else sample
            if n >= 2 and (baseline is None or not _above(baseline, merged)):
                break
            await asyncio.sleep(SAMPLE_GAP)
        return merged

    def report(self, server: ServerProcess, leftovers: list[str]) -> dict[str, Any]:
        tracebacks, error_lines = server.tracebacks()
        samples = self.samples
        points = [(s["t"], s["rss_kib"] / 1024) for s in samples]
        traced = [(s["t"], s["tracemalloc"]["traced_kib"] / 1024) for s in samples
                  if "traced_kib" in s.get("tracemalloc", {})]
        own = [(s["t"], (s["rss_kib"] - s["tracemalloc"].get("tracemalloc_overhead_kib", 0)) / 1024)
               for s in samples]
        last = samples[-1] if samples else self.end
        tally = asdict(self.tally)
        return {
            "plan": asdict(self.plan),
            "phases": self.phases,
            "samples": len(samples),
            "rss_mib_first": round(points[0][1], 2) if points else None,
            "rss_mib_last": round(points[-1][1], 2) if points else None,
            "rss_slope_mib_per_hour": _round(slope_per_hour(points)),
            # The allocator's high-water mark settles slowly: the second half alone.
            "rss_slope_second_half_mib_per_hour": _round(slope_per_hour(points[len(points) // 2:])),
            "traced_slope_second_half_mib_per_hour": _round(slope_per_hour(traced[len(traced) // 2:])),
            "rss_less_tracemalloc_slope_mib_per_hour": _round(slope_per_hour(own)),
            "traced_slope_mib_per_hour": _round(slope_per_hour(traced)),
            "fds_first": self.baseline.get("fds"), "fds_last": self.end.get("fds"),
            "fds_max": max((s["fds"] for s in samples), default=None),
            "lines": tally["lines"], "gaps": tally["gaps"], "duplicates": tally["duplicates"],
            "errors": tally["error_count"], "error_samples": tally["errors"],
            "reconnects": tally["reconnects"], "cycles": tally["cycles"], "messages": tally["messages"],
            "tracebacks": tracebacks, "server_error_lines": error_lines,
            "leftover_processes": leftovers,
            "baseline": {k: self.baseline.get(k) for k in ("tracked", "fds", "rss_kib")},
            "end": {k: self.end.get(k) for k in ("tracked", "fds", "rss_kib")},
            "tracked_grown": grown(self.baseline.get("tracked", {}), self.end.get("tracked", {})),
            "objects_grown": grown(self.baseline.get("objects", {}), self.end.get("objects", {})),
            "tables_grown": grown(self.baseline.get("tables", {}), self.end.get("tables", {})),
            "tracemalloc_top_growth": last.get("tracemalloc", {}).get("top_growth_total", []),
            "allocator_slopes_per_hour": _allocator_slopes(samples),
            "series": [{"t": s["t"], "rss_kib": s["rss_kib"], "fds": s["fds"], **s["tracked"],
                        **s.get("allocator", {}),
                        "traced_kib": s.get("tracemalloc", {}).get("traced_kib"),
                        "top_interval": s.get("tracemalloc", {}).get("top_growth_interval", [])[:3]}
                       for s in samples],
        }


def _merged(a: dict[str, Any], b: dict[str, Any], pick: Callable[[int, int], int]) -> dict[str, Any]:
    """`b` with each count (fds, tracked, objects, tables) `pick`ed from `a`'s and `b`'s."""
    out = dict(b)
    out["fds"] = pick(a["fds"], b["fds"])
    for section in ("tracked", "objects", "tables"):
        keys = set(a[section]) | set(b[section])
        out[section] = {k: pick(a[section].get(k, 0), b[section].get(k, 0)) for k in sorted(keys)}
    return out


def _above(baseline: dict[str, Any], sample: dict[str, Any]) -> bool:
    if sample["fds"] > baseline["fds"]:
        return True
    return any(grown(baseline[section], sample[section]) for section in ("tracked", "objects"))


def _allocator_slopes(samples: list[dict[str, Any]]) -> dict[str, float | None]:
    """Slope per hour of each allocator figure (Python blocks; glibc KiB in use, free)."""
    keys = sorted({k for s in samples for k in s.get("allocator", {})})
    return {k: _round(slope_per_hour([(s["t"], s["allocator"][k]) for s in samples
                                      if k in s.get("allocator", {})])) for k in keys}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _line(sample: dict[str, Any]) -> str:
    tr, cl = sample["tracked"], sample["client"]
    traced = sample.get("tracemalloc", {}).get("traced_kib")
    return (f"t={sample['t']:7.0f}s rss={sample['rss_kib'] / 1024:6.1f}MiB traced={traced}KiB "
            f"fds={sample['fds']} sessions={tr['sessions']} tasks={tr['tasks']} "
            f"timers={tr['loop_timers']} lines={cl['lines']} gaps={cl['gaps']} dups={cl['duplicates']} "
            f"errors={cl['errors']} " + " ".join(f"{k}={v}" for k, v in sample.get("allocator", {}).items())
            + "".join(
                f"\n    +{g['size_diff_kib']}KiB {g['count_diff']:+} {g['where']}"
                for g in sample.get("tracemalloc", {}).get("top_growth_interval", [])[:3]))


async def _leftover_processes(container: str) -> list[str]:
    """Processes in the followed container besides its printing loop (terminal shells
    that outlived their session would show here)."""
    out = await docker("exec", container, "ps", "-o", "pid,stat,args", check=False)
    rows = []
    for row in out.splitlines()[1:]:
        fields = row.split(None, 2)
        if len(fields) < 3 or fields[0] == "1" or fields[1].startswith("Z"):
            continue
        if "usleep" in fields[2] or "ps -o" in fields[2]:
            continue
        rows.append(row.strip())
    return rows


def summary(report: dict[str, Any]) -> str:
    keys = ("samples", "rss_mib_first", "rss_mib_last", "rss_slope_mib_per_hour",
            "rss_slope_second_half_mib_per_hour", "rss_less_tracemalloc_slope_mib_per_hour",
            "traced_slope_mib_per_hour", "traced_slope_second_half_mib_per_hour",
            "allocator_slopes_per_hour", "fds_first",
            "fds_last", "fds_max", "lines", "gaps", "duplicates", "errors", "reconnects", "tracebacks",
            "leftover_processes", "cycles", "tracked_grown", "objects_grown", "tables_grown")
    out = [f"{k}: {report[k]}" for k in keys]
    out.append("tracemalloc top growth (measured phase):")
    out.extend(f"  {g['size_diff_kib']:>9} KiB {g['count_diff']:>7} blocks  {g['where']}"
               for g in report["tracemalloc_top_growth"])
    if report["error_samples"]:
        out.append("first errors:")
        out.extend("  " + e for e in report["error_samples"][:10])
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Plan()
    for key, value in asdict(defaults).items():
        parser.add_argument("--" + key.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--output", default=str(HERE / "results" / "latest.json"))
    args = parser.parse_args()
    plan = Plan(**{k: getattr(args, k) for k in asdict(defaults)})
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        def progress(text: str) -> None:
            print(time.strftime("%H:%M:%S"), text, flush=True)

        report = asyncio.run(Soak(plan, Path(workdir)).run(progress))
        output.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(summary(report))
    print(f"JSON: {output}")


if __name__ == "__main__":
    main()
