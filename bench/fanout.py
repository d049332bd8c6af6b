"""Scenario 1, fan-out: the gateway's fan-out vs a bare aiohttp broadcast and raw asyncio.

    .venv/bin/python bench/fanout.py [--clients 100,1000] [--deliveries 200000] [--repeats 3]
        [--bursts 1,64]

Three servers run side by side, each in its own process: `bench_server.py` (the real
application; `/ws/bench` fans out through `protocol.encode`, `text_frame`, `Session.send_frame`
and every client's `ClientWriter`: the frame built once, written through once per loop
turn), `baseline_server.py` (bare aiohttp, `send_frame` of pre-encoded bytes to each
socket in turn) and `raw_server.py` (the Python limit: a plain asyncio server writing
pre-framed bytes with `transport.write`). All run on the same event loop
implementation, in the same run. The same client processes (`wsclient.py`, 4
processes) hold C authenticated connections to each server. A round:
arm the clients to expect N `bench` frames each, read the server's CPU time, trigger the
publish over HTTP, wait until every client has all N frames. N is chosen so that a
round is about `--deliveries` deliveries. Rounds alternate gateway/baseline, and the
median of `--repeats` rounds is reported.

burst B: the source hands over B messages per event-loop turn. B=1 is a source that
yields between any two messages (one engine event per read): every client's writer
task wakes once per message, the worst case for per-client writers. B=64 is a source
under load (a chunk of lines per read): each writer sends 64 frames per wake-up. The
baseline gets the same grouping (B frames to one socket, then the next socket). The
headline (`ratio_to_ceiling`) is the first burst given, 1 by default.

deliveries/s           C x N / (last client's last frame - trigger), wall clock
CPU-s per M deliveries server CPU (utime+stime, /proc/<pid>/stat) over the round / (C x N) x 1e6
ratio_to_ceiling       server CPU per delivery, aiohttp baseline / gateway (at 1,000 clients)
ratio_to_raw           server CPU per delivery, raw asyncio / gateway (at 1,000 clients)
server_us_per_delivery the gateway's server CPU us per delivery (1,000 clients, burst 1)
client_us_per_delivery the client processes' CPU us per delivery, beside each figure
throughput_ratio       deliveries/s, gateway / baseline (wall clock; bounded by the client
                       processes too, which share the machine's cores with the server)
"""

from __future__ import annotations

import os
from typing import Any

from common import CpuMeter, emit, log, median, post, rnd, scenario_parser, server, token
from wsclient import FleetHandle, TargetSpec, ready_fleets, split

SIZE = 200


def one_round(fleets: list[FleetHandle], name: str, url: str, pid: int, clients: int, n: int,
              burst: int) -> dict[str, float]:
    for fleet in fleets:
        fleet.expect(name, "bench", n, timeout=120)
    meter = CpuMeter(pid, [f.pid for f in fleets])
    post(f"{url}/bench/publish?count={n}&size={SIZE}&burst={burst}", timeout=180)
    done = [fleet.wait_done(180) for fleet in fleets]
    cpu = meter.read()
    reached = sum(r for _, r in done)
    if reached != clients:
        raise RuntimeError(f"{name}: only {reached} of {clients} clients got all {n} frames")
    elapsed = max(t for t, _ in done) - meter.started
    deliveries = clients * n
    return {"deliveries_per_s": deliveries / elapsed, "cpu_s_per_million": cpu.server_s / deliveries * 1e6,
            "seconds": elapsed, "server_cpu_s": cpu.server_s, "client_cpu_total_s": cpu.clients_s,
            "client_us_per_delivery": cpu.clients_s / deliveries * 1e6}


def summarize(rounds: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, rs in rounds.items():
        out[name] = {
            "deliveries_per_s": rnd(median([r["deliveries_per_s"] for r in rs]), 0),
            "cpu_s_per_million": rnd(median([r["cpu_s_per_million"] for r in rs]), 3),
            "seconds": rnd(median([r["seconds"] for r in rs]), 3),
            "client_cpu_s": rnd(median([r["client_cpu_total_s"] for r in rs]), 2),
            "client_us_per_delivery": rnd(median([r["client_us_per_delivery"] for r in rs]), 2),
        }
    g, b, raw = out["gateway"], out["baseline"], out["raw"]
    out["ratio_to_ceiling"] = rnd(b["cpu_s_per_million"] / g["cpu_s_per_million"], 3)
    out["ratio_to_raw"] = rnd(raw["cpu_s_per_million"] / g["cpu_s_per_million"], 3)
    out["throughput_ratio"] = rnd(g["deliveries_per_s"] / b["deliveries_per_s"], 3)
    return out


def measure(clients: int, deliveries: int, repeats: int, procs: int, bursts: list[int]) -> dict[str, Any]:
    n = max(100, round(deliveries / clients))
    out: dict[str, Any] = {"clients": clients, "messages": n, "message_bytes": SIZE, "rounds": repeats}
    with server("bench_server.py") as gw, server("baseline_server.py") as base, \
            server("raw_server.py") as raw:
        specs = [[TargetSpec("gateway", gw.port, "/ws/bench", k, token()),
                  TargetSpec("baseline", base.port, "/ws/bench", k, "none"),
                  TargetSpec("raw", raw.port, "/ws/bench", k, "none")]
                 for k in split(clients, procs)]
        with ready_fleets(specs) as fleets:
            servers = {"gateway": gw, "baseline": base, "raw": raw}
            for name, srv in servers.items():  # warm-up
                one_round(fleets, name, srv.url, srv.pid, clients, 50, 1)
            for burst in bursts:
                rounds: dict[str, list[dict[str, float]]] = {"gateway": [], "baseline": [], "raw": []}
                for i in range(repeats):
                    order = ["gateway", "baseline", "raw"]
                    order = order[i % 3:] + order[:i % 3]  # each server goes first in turn
                    for name in order:
                        srv = servers[name]
                        r = one_round(fleets, name, srv.url, srv.pid, clients, n, burst)
                        rounds[name].append(r)
                        log(f"  fanout {clients:>5} clients x {n} msgs, burst {burst:>2}, {name:>8}: "
                            f"{r['deliveries_per_s']:>9,.0f} deliveries/s, "
                            f"{r['cpu_s_per_million']:.2f} CPU-s/M, {r['seconds']:.2f} s, "
                            f"clients {r['client_us_per_delivery']:.1f} us CPU/delivery")
                out[f"burst_{burst}"] = summarize(rounds)
    return out


def main() -> None:
    parser = scenario_parser(__doc__, clients="100,1000", deliveries=300_000, repeats=3, procs=4,
                             bursts="1,64")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio",
                        help="event loop of all three servers (uvloop: must be installed)")
    args = parser.parse_args()
    os.environ["BENCH_LOOP"] = args.loop
    bursts = [int(x) for x in args.bursts.split(",")]
    results = {}
    for c in (int(x) for x in args.clients.split(",")):
        results[str(c)] = measure(c, args.deliveries, args.repeats, args.procs, bursts)
    top = results[str(max(int(x) for x in results))]
    head = top[f"burst_{bursts[0]}"]
    emit({
        "ratio_to_raw": head["ratio_to_raw"],
        "ratio_to_ceiling": head["ratio_to_ceiling"],
        "server_us_per_delivery": head["gateway"]["cpu_s_per_million"],
        **{f"burst{b}_ratio_to_ceiling": top[f"burst_{b}"]["ratio_to_ceiling"] for b in bursts[1:]},
        **{f"burst{b}_ratio_to_raw": top[f"burst_{b}"]["ratio_to_raw"] for b in bursts[1:]},
        "client_us_per_delivery": head["gateway"]["client_us_per_delivery"],
        "throughput_ratio": head["throughput_ratio"],
        "deliveries_per_s": head["gateway"]["deliveries_per_s"],
        "cpu_s_per_million": head["gateway"]["cpu_s_per_million"],
        "headline": f"{max(int(x) for x in results)} clients, burst {bursts[0]}",
        "loop": args.loop,
        "by_clients": results,
    })


if __name__ == "__main__":
    main()
