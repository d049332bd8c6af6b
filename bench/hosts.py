"""Scenario 8, many hosts: what a hung host costs the others, SSH's cost, events fan-in.

    .venv/bin/python bench/hosts.py [--seconds 6] [--rate 200] [--subscribers 100]
                                    [--rounds 2] [--clients 500] [--containers 20]
                                    [--parts hung,ssh,events]

Uses the test hosts of scripts/ensure-hosts.sh (engine2 over its unix socket, TCP + TLS and
SSH; /var/tmp/openpanel-ws-hosts/hosts.json) and the log-latency and events harness of
bench/loglatency.py and bench/events.py (same clock, engine timestamps, client processes).

- `hung_host_latency_ratio`: log-latency p99 of `--subscribers` on a local container at
  `--rate` lines/s while a second host hangs (engine2's TLS port behind a proxy that
  accepts and never answers, tests/hosts_support.py `HungProxy`; engine timeout 2 s; 20
  clients subscribed to a container there and 20 on /ws/logs, which listen to every host),
  divided by the same with the local host alone (and the 20 /ws/logs clients). `--rounds`
  rounds of (alone, hung), medians. Target <= 1.1.
- `ssh_log_latency_ratio`: the same log p99 for a container on engine2, read through the
  SSH transport (`/hosts/ssh/ws/containers`) over through engine2's unix socket
  (`/hosts/e2/ws/containers`), one gateway serving both. Reported.
- `events_fanin_p99_ms`: Docker events of 3 hosts (local; engine2 over TLS; engine2 over
  SSH: engine2's events arrive under both ids) to `--clients` clients on /ws/logs while
  `--containers` containers are run and removed on each engine; p50/p99 beside each
  engine's own p99 (a direct reader of its /events). Reported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from common import IMAGE, ROOT, CpuMeter, emit, latency_ms, log, rnd, scenario_args, server, token
from events import DirectEvents
from loglatency import phase
from wsclient import TargetSpec, collect_all, merged, ready_fleets, split

sys.path.insert(0, str(ROOT / "tests"))
from hosts_support import HostsDescriptor, HungProxy, hosts_descriptor, ssh_toml, tls_toml

LOCAL = "unix:///var/run/docker.sock"
HUNG_TIMEOUT = 2.0


def rate_script(rate: int) -> str:
    """loglatency.py's clock-paced printer (rate/100 lines every 10 ms)."""
    return ("read s _ < /proc/uptime; s=${s%.*}${s#*.}; i=0; while true; do "
            "read u _ < /proc/uptime; u=${u%.*}${u#*.}; "
            f"t=$(( (u - s) * {int(rate / 100)} )); "
            'while [ $i -lt $t ]; do i=$((i+1)); echo "bench line $i"; done; usleep 2000; done')


def docker_on(engine: str, *args: str, check: bool = True) -> None:
    subprocess.run(["docker", "-H", engine, *args], check=check, capture_output=True, timeout=60)


@contextmanager
def container_on(engine: str, command: str) -> Iterator[str]:
    name = f"opws-bench-hosts-{uuid.uuid4().hex[:6]}"
    docker_on(engine, "run", "-d", "--name", name, IMAGE, "sh", "-c", command)
    try:
        yield name
    finally:
        docker_on(engine, "rm", "-f", name, check=False)


@contextmanager
def config(*tables: str) -> Iterator[dict[str, str]]:
    """The env of a gateway serving these `[[hosts]]` tables (a config file of its own)."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="opws-bench-hosts-") as f:
        f.write("\n".join(tables))
        f.flush()
        yield {"OPENPANEL_WS_CONFIG": f.name}


def local_toml() -> str:
    return f'[[hosts]]\nid = "local"\nengine = "{LOCAL}"\n'


def unix_toml(host_id: str, engine: str) -> str:
    return f'[[hosts]]\nid = "{host_id}"\nengine = "{engine}"\n'


@contextmanager
def hung_proxy(port: int) -> Iterator[HungProxy]:
    """A HungProxy in front of 127.0.0.1:`port`, on an event loop of its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    proxy = asyncio.run_coroutine_threadsafe(HungProxy(("127.0.0.1", port)).start(), loop).result(10)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def log_p99(env: dict[str, str], container: str, args: Any, path: str = "/ws/containers",
            beside: list[TargetSpec] | None = None) -> dict[str, Any]:
    with server("bench_server.py", env=env) as srv:
        beside = [dataclasses.replace(spec, port=srv.port) for spec in beside or []]
        return phase(srv.port, srv.pid, container, args.subscribers, args.seconds, args.procs,
                     path=path, beside=beside)


def hung_host_ratio(hosts: HostsDescriptor, args: Any) -> dict[str, Any]:
    listeners = TargetSpec("listeners", 0, "/ws/logs", 20, token())
    alone: list[float] = []
    hung: list[float] = []
    with container_on(LOCAL, rate_script(args.rate)) as name, hung_proxy(hosts.tcp_port) as proxy:
        waiting = TargetSpec("waiting", 0, "/ws/containers", 20, token(), after_auth=[
            {"type": "subscribe_logs", "containerId": "anything", "host": "hung"}])
        hung_table = tls_toml("hung", url=proxy.url) + f"timeout = {HUNG_TIMEOUT}\n"
        for r in range(args.rounds):
            with config(local_toml()) as env:
                alone.append(log_p99(env, name, args, beside=[listeners])["p99_ms"])
            with config(local_toml(), hung_table) as env:
                hung.append(log_p99(env, name, args, beside=[listeners, waiting])["p99_ms"])
            log(f"  round {r + 1}: local p99 alone {alone[-1]} ms, with a hung host {hung[-1]} ms "
                f"(proxy accepted {proxy.accepted} connections)")
    ratio = statistics.median(hung) / statistics.median(alone)
    return {"hung_host_latency_ratio": rnd(ratio, 3), "local_p99_alone_ms": alone,
            "local_p99_with_hung_host_ms": hung, "hung_timeout_s": HUNG_TIMEOUT}


def ssh_ratio(hosts: HostsDescriptor, args: Any) -> dict[str, Any]:
    with container_on(hosts.engine2_unix, rate_script(args.rate)) as name, \
            config(local_toml(), unix_toml("e2", hosts.engine2_unix), ssh_toml("ssh")) as env:
        unix = log_p99(env, name, args, path="/hosts/e2/ws/containers")
        ssh = log_p99(env, name, args, path="/hosts/ssh/ws/containers")
    log(f"  engine2 log p99: unix socket {unix['p99_ms']} ms, SSH {ssh['p99_ms']} ms")
    return {"ssh_log_latency_ratio": rnd(ssh["p99_ms"] / unix["p99_ms"], 3),
            "ssh_p99_ms": ssh["p99_ms"], "unix_p99_ms": unix["p99_ms"],
            "ssh_p50_ms": ssh["p50_ms"], "unix_p50_ms": unix["p50_ms"]}


def churn(engine: str, prefix: str, index: int) -> None:
    name = f"{prefix}{index}"
    docker_on(engine, "run", "-d", "--name", name, IMAGE, "sleep", "30")
    docker_on(engine, "rm", "-f", name, check=False)


def events_fanin(hosts: HostsDescriptor, args: Any) -> dict[str, Any]:
    engines = {"local": LOCAL, "engine2": hosts.engine2_unix}
    prefix = f"opws-bench-hev-{uuid.uuid4().hex[:6]}-"
    with config(local_toml(), tls_toml("tls"), ssh_toml("ssh")) as env, \
            server("bench_server.py", env=env) as srv:
        specs = [[TargetSpec("events", srv.port, "/ws/logs", k, token(), latency_type=b"docker_event")]
                 for k in split(args.clients, args.procs)]
        with ready_fleets(specs) as fleets:
            time.sleep(2.0)  # every host's events stream attached
            collect_all(fleets, "events")
            direct = {key: DirectEvents(url) for key, url in engines.items()}
            for reader in direct.values():
                reader.start()
            meter = CpuMeter(srv.pid, [f.pid for f in fleets])
            jobs = [(url, i) for i in range(args.containers) for url in engines.values()]
            try:
                with ThreadPoolExecutor(args.workers) as pool:
                    list(pool.map(lambda job: churn(job[0], prefix, job[1]), jobs))
            finally:
                for url in engines.values():
                    docker_on(url, "rm", "-f", *(f"{prefix}{i}" for i in range(args.containers)),
                              check=False)
            time.sleep(1.5)  # the last events through
            for reader in direct.values():
                reader.stop()
            cpu = meter.read()
            data = collect_all(fleets, "events")
    got = merged(data)
    if not got.latencies_ms:
        raise RuntimeError(f"no docker_event frames received: {got.errors[:3]}")
    out: dict[str, Any] = {"events_fanin_p99_ms": latency_ms(got.latencies_ms)["p99_ms"],
                           "events_fanin_p50_ms": latency_ms(got.latencies_ms)["p50_ms"],
                           "events_fanin_max_ms": latency_ms(got.latencies_ms)["max_ms"],
                           "events_per_client": rnd(len(got.latencies_ms) / args.clients, 1),
                           "clients": args.clients, **cpu.us_per_delivery(got.frames)}
    for key, reader in direct.items():
        engine = latency_ms([x * 1000.0 for x in reader.latencies])
        out[f"engine_{key}_p99_ms"] = engine["p99_ms"]
        out[f"engine_{key}_p50_ms"] = engine["p50_ms"]
    log(f"  events of 3 hosts to {args.clients} clients: p50 {out['events_fanin_p50_ms']} ms, "
        f"p99 {out['events_fanin_p99_ms']} ms (engines' own p99: local {out['engine_local_p99_ms']}, "
        f"engine2 {out['engine_engine2_p99_ms']} ms), {out['events_per_client']} events each")
    return out


def main() -> None:
    args = scenario_args(__doc__, seconds=6.0, rate=200, subscribers=100, rounds=2,
                         clients=500, containers=20, workers=4, procs=4, parts="hung,ssh,events")
    hosts = hosts_descriptor()
    result: dict[str, Any] = {}
    parts = {"hung": hung_host_ratio, "ssh": ssh_ratio, "events": events_fanin}
    for key in args.parts.split(","):
        part = parts[key]
        try:
            result.update(part(hosts, args))
        except Exception as exc:  # one part failing leaves the others' figures
            log(f"  {part.__name__} failed: {exc!r}")
            result[f"{part.__name__}_error"] = repr(exc)[:300]
    emit(result)


if __name__ == "__main__":
    main()
