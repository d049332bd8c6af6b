"""`openpanel-ws metrics` end to end against a real server."""

from __future__ import annotations

import orjson

from client_support import CliStream, run_cli, ws_url
from helpers import RunningServer


async def test_metrics_json_lines(server: RunningServer) -> None:
    cli = await CliStream.start("metrics", "--interval", "500", "--url", ws_url(server.url))
    try:
        samples = [orjson.loads(await cli.readline(60)) for _ in range(3)]
    finally:
        await cli.stop()
    for sample in samples:
        system = sample["system"]
        assert set(system) >= {"cpu", "memory", "disk", "network"}
        assert system["memory"]["used"] + system["memory"]["free"] == system["memory"]["total"]
        assert sample["timestamp"].endswith("Z")
    assert samples[0]["timestamp"] < samples[-1]["timestamp"]


async def test_metrics_no_stream_prints_one_sample_and_exits(server: RunningServer) -> None:
    rc, out, err = await run_cli("metrics", "--no-stream", "--url", ws_url(server.url))
    assert rc == 0, err
    assert len(out.splitlines()) == 1
    assert orjson.loads(out)["system"]["cpu"]["cores"] >= 1


async def test_metrics_interval_out_of_range_is_a_usage_error() -> None:
    rc, _, err = await run_cli("metrics", "--interval", "10")
    assert rc == 2 and "must be between 500 and 60000 ms" in err
