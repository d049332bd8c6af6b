"""Fan-out to logs clients: one encoding shared by every client, filters per client."""

import asyncio
from pathlib import Path
from typing import Any

import orjson

from fakes import Sink
from openpanel_ws.gateways.base import Session
from openpanel_ws.gateways.logs.audience import Audience
from openpanel_ws.gateways.logs.fanout import Fanout
from openpanel_ws.gateways.logs.filters import EventFilter
from openpanel_ws.outbound import ClientWriter, WriteScheduler
from openpanel_ws.protocol import SLOW_CONSUMER_REASON
from openpanel_ws.sendqueue import QueueLimits

FIXTURE = Path(__file__).resolve().parents[3] / "fixtures" / "logs" / "engine-events.jsonl"
EVENTS: list[dict[str, Any]] = [orjson.loads(line) for line in FIXTURE.read_bytes().splitlines() if line]
SCHEDULER = WriteScheduler(QueueLimits(1000, 10_000_000), 1.0)
HELD = QueueLimits(100, 1_000_000)  # live frames held for a client during its replay
LOCAL = Audience(frozenset({"local"}), True)  # the one host of a gateway configured with none


def session(name: str) -> tuple[Session, Sink]:
    sink = Sink()
    writer = ClientWriter(sink.ws, sink, SCHEDULER)
    sink.peer = writer
    return Session(name, writer), sink


async def drain(*sessions: Session) -> None:
    for s in sessions:
        s.close(1000, "")
        await asyncio.wait_for(s.writer.wait_closed(), 2)


async def test_the_same_bytes_go_to_every_client() -> None:
    fan = Fanout(HELD)
    pairs = [session(f"c{i}") for i in range(3)]
    for s, _ in pairs:
        fan.add(s, LOCAL)
    die = next(e for e in EVENTS if e["Action"] == "die")
    fan.publish_event("local", die)
    await drain(*(s for s, _ in pairs))
    frames = [sink.frames for _, sink in pairs]
    assert all(len(f) == 2 for f in frames)  # docker_event, then its system_log
    assert frames[0][0] is frames[1][0] is frames[2][0]  # encoded once
    assert frames[0][1] is frames[1][1] is frames[2][1]
    event_msg, line_msg = orjson.loads(frames[0][0]), orjson.loads(frames[0][1])
    assert event_msg["type"] == "docker_event" and event_msg["event"] == die
    assert line_msg["type"] == "system_log" and line_msg["level"] == "warning"
    assert line_msg["timestamp"] == event_msg["timestamp"]


async def test_filters_are_per_client_and_removal_is_complete() -> None:
    fan = Fanout(HELD)
    (a, sink_a), (b, sink_b) = session("a"), session("b")
    fan.add(a, LOCAL)
    fan.add(b, LOCAL)
    fan.set_filter(a, EventFilter.parse({"type": ["volume"]}))
    for event in EVENTS:
        fan.publish_event("local", event)
    fan.discard(b)
    fan.publish_event("local", EVENTS[0])
    assert len(fan) == 1 and b not in fan
    await drain(a, b)
    types = {orjson.loads(f)["event"]["Type"] for f in sink_a.frames
             if orjson.loads(f)["type"] == "docker_event"}
    assert types == {"volume"}
    assert sum(orjson.loads(f)["type"] == "docker_event" for f in sink_b.frames) == len(EVENTS)


async def test_set_filter_ignores_unknown_sessions_and_empty_filter_means_everything() -> None:
    fan = Fanout(HELD)
    s, sink = session("s")
    fan.set_filter(s, EventFilter.parse({"type": ["x"]}))
    assert s not in fan
    fan.add(s, LOCAL)
    fan.set_filter(s, EventFilter.parse({"type": ["x"]}))
    fan.set_filter(s, EventFilter.parse({}))
    fan.publish_event("local", EVENTS[0])
    fan.broadcast({"type": "system_log", "message": "m"})
    await drain(s)
    assert [orjson.loads(f)["type"] for f in sink.frames] == ["docker_event", "system_log", "system_log"]


async def test_replay_goes_before_held_live_frames_without_duplicates() -> None:
    fan = Fanout(HELD)
    s, sink = session("s")
    joined = EVENTS[30]["timeNano"]
    fan.add(s, LOCAL, now_nanos=joined)
    early, later = EVENTS[29], EVENTS[31]  # stamped before / after the client joined
    fan.publish_event("local", early)  # in flight when the client joined: delivered live
    until = fan.begin_replay(s)
    assert until == joined
    assert fan.begin_replay(s) is None  # one replay at a time
    fan.publish_event("local", later)  # held while the replay is fetched
    fan.broadcast({"type": "system_log", "message": "held"})
    replayed = [e for e in EVENTS if e["timeNano"] < joined]
    count = fan.finish_replay(s, [("local", e) for e in replayed], {"type": "subscribed", "filters": {}})
    assert count == len(replayed) - 1  # `early` is not sent twice
    await drain(s)
    msgs = [orjson.loads(f) for f in sink.frames]
    events = [m["event"] for m in msgs if m["type"] == "docker_event"]
    assert events[0] == early
    ack = next(i for i, m in enumerate(msgs) if m["type"] == "subscribed")
    assert msgs[ack]["replayed"] == count
    assert [m["event"] for m in msgs[ack:] if m["type"] == "docker_event"] == [
        e for e in replayed if e is not early] + [later]
    assert msgs[-1] == {"type": "system_log", "message": "held"}
    keys = [(e["timeNano"], e["Action"], e["Actor"]["ID"]) for e in events]
    assert len(keys) == len(set(keys))


async def test_held_frames_are_bounded() -> None:
    fan = Fanout(HELD)
    s, sink = session("s")
    fan.add(s, LOCAL)
    fan.begin_replay(s)
    for _ in range(HELD.max_frames + 1):
        fan.broadcast({"type": "system_log"})
    assert s.closed  # a slow consumer, closed with 1013 instead of growing memory
    fan.finish_replay(s, [])
    await asyncio.wait_for(s.writer.wait_closed(), 2)
    assert sink.frames == []  # the held frames were dropped
    assert sink.closed == (1013, SLOW_CONSUMER_REASON.encode())


async def test_a_clients_state_lives_in_its_session_and_goes_with_it() -> None:
    fan = Fanout(HELD)
    s, _ = session("s")
    fan.set_filter(s, EventFilter.parse({"type": ["x"]}))
    fan.set_scopes(s, ("web-*",))
    assert s.state is None  # nothing is made for a session that never joined
    fan.add(s, LOCAL, now_nanos=42)
    state = s.state
    assert state is not None and state.joined_nanos == 42 and state.scopes is None
    fan.set_scopes(s, ("web-*",))
    fan.set_filter(s, EventFilter.parse({"type": ["volume"]}))
    assert state.scopes == ("web-*",) and state.filter is not None
    fan.add(s, LOCAL)  # again: the same state
    assert s.state is state
    fan.discard(s)
    assert s.state is None and s not in fan and len(fan) == 0
    await drain(s)


TWO = Audience(frozenset({"local", "other"}), True)


async def test_each_host_has_its_frames_and_each_client_its_hosts() -> None:
    fan = Fanout(HELD)
    (both, sink_both), (route, sink_route), (none, sink_none) = (
        session("both"), session("route"), session("none"))
    fan.add(both, TWO)
    fan.add(route, Audience(frozenset({"other"}), False))  # /hosts/other/ws/logs
    fan.add(none, Audience(frozenset(), False))  # the route of a host out of scope
    die = next(e for e in EVENTS if e["Action"] == "die")
    fan.publish_event("local", die)
    fan.publish_event("other", die)  # one engine behind two ids: once per host id
    fan.broadcast({"type": "host_status", "host": "local"}, host="local")
    fan.broadcast_machine({"type": "system_log", "source": "syslog"})
    assert fan.hosts_heard() == {"local", "other"} and fan.machine_heard()
    await drain(both, route, none)
    got = [orjson.loads(f) for f in sink_both.frames]
    assert [(m["type"], m.get("host")) for m in got] == [
        ("docker_event", "local"), ("system_log", "local"),
        ("docker_event", "other"), ("system_log", "other"),
        ("host_status", "local"), ("system_log", None)]
    assert sink_route.frames == sink_both.frames[2:4]  # the same bytes, built once
    assert sink_route.frames[0] is sink_both.frames[2]
    assert sink_none.frames == []


async def test_a_replay_merges_hosts_and_skips_per_host_what_came_live() -> None:
    fan = Fanout(HELD)
    s, sink = session("s")
    joined = EVENTS[30]["timeNano"]
    fan.add(s, TWO, now_nanos=joined)
    early = EVENTS[29]
    fan.publish_event("local", early)  # live from `local` only
    fan.begin_replay(s)
    count = fan.finish_replay(s, [("local", early), ("other", early)],
                              {"type": "subscribed", "filters": {}})
    assert count == 1  # `other`'s copy is another host's event: replayed
    await drain(s)
    msgs = [orjson.loads(f) for f in sink.frames]
    assert [m["host"] for m in msgs if m["type"] == "docker_event"] == ["local", "other"]


async def test_narrowed_audience_stops_that_hosts_events() -> None:
    fan = Fanout(HELD)
    s, sink = session("s")
    fan.add(s, TWO)
    fan.set_scopes(s, None, Audience(frozenset({"local"}), True))
    fan.publish_event("other", EVENTS[0])
    fan.broadcast({"type": "host_status", "host": "other"}, host="other")
    fan.publish_event("local", EVENTS[0])
    assert fan.hosts_heard() == {"local"}
    await drain(s)
    assert {orjson.loads(f)["host"] for f in sink.frames} == {"local"}


async def test_the_hosts_heard_follow_clients_coming_going_and_reauthenticating() -> None:
    fan = Fanout(HELD)
    (a, _), (b, _) = session("a"), session("b")
    fan.add(a, TWO)
    fan.add(b, Audience(frozenset({"other"}), False))
    assert fan.hosts_heard() == {"local", "other"} and fan.machine_heard()
    fan.set_scopes(a, None, Audience(frozenset({"local"}), False))
    assert fan.hosts_heard() == {"local", "other"} and not fan.machine_heard()
    fan.discard(b)
    fan.discard(b)  # twice: counted once
    assert fan.hosts_heard() == {"local"}
    fan.discard(a)
    assert fan.hosts_heard() == set() and not fan.machine_heard()
    fan.add(a, TWO)
    fan.clear()
    assert fan.hosts_heard() == set() and not fan.machine_heard()
    await drain(a, b)
