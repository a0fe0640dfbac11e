"""The map of router shards: stable slots, one owner per room, and who enforces it.

The map itself (:mod:`mcp_tornado.shards`), the ``--router`` list and
``--shard``/``--shards`` settings, a worker's hub sending each room to its
shard's link, and a router refusing a worker with another map or a room of
another shard.  The processes together: tests/test_shards_cluster.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import msgspec
import pytest

from mcp_tornado import cli, protocol, status, wire
from mcp_tornado.admission import Gatekeeper
from mcp_tornado.hub import Hub
from mcp_tornado.peer import SignalEndpoint
from mcp_tornado.router.broker import Router
from mcp_tornado.router_link import RouterLink
from mcp_tornado.settings import LimitSettings, LinkSettings, RouterSettings, WorkerSettings
from mcp_tornado.shards import SLOTS, ShardMap, slot_of
from tests.router.test_broker import FakeWorker
from tests.stubs import StubLink
from tests.test_peer import connect

ROOMS = [f"room-{i}" for i in range(2000)] + ["lobby", "", "é", "日本語", "a" * 200]


def rooms_of(shard: int, count: int = 2, n: int = 3) -> list[str]:
    """``n`` room names that ``shard`` of ``count`` owns."""
    shards = ShardMap(count)
    return [room for room in ROOMS if shards.shard_of(room) == shard][:n]


# --- the map ------------------------------------------------------------------------


def test_slots_are_the_same_in_other_processes_whatever_their_hash_seed() -> None:
    code = (
        "import sys; from mcp_tornado.shards import ShardMap, slot_of; "
        "rooms = sys.stdin.read().split('\\n'); "
        "print(ShardMap(3).fingerprint, hash('lobby')); print(*[slot_of(r) for r in rooms])"
    )
    sample = ROOMS[:300]
    outputs = []
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            input="\n".join(sample),
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
        )
        outputs.append(done.stdout.splitlines())
    (fp1, hash1), (fp2, hash2) = (out[0].split() for out in outputs)
    assert hash1 != hash2  # Python's own hash did change: ours must not
    assert fp1 == fp2 == ShardMap(3).fingerprint
    assert outputs[0][1] == outputs[1][1] == " ".join(str(slot_of(r)) for r in sample)


def test_every_room_has_exactly_one_shard_and_the_slots_are_spread() -> None:
    for count in (1, 2, 3, 5):
        routers = [ShardMap(count, index) for index in range(count)]
        for room in ROOMS:
            assert [r.owns(room) for r in routers].count(True) == 1
            assert routers[ShardMap(count).shard_of(room)].owns(room)
    slots = {slot_of(room) for room in ROOMS}
    assert all(0 <= slot < SLOTS for slot in slots) and len(slots) > SLOTS * 0.8
    two = ShardMap(2)
    share = sum(two.shard_of(room) for room in ROOMS) / len(ROOMS)
    assert 0.4 < share < 0.6


def test_fingerprints_tell_maps_apart() -> None:
    prints = {ShardMap(count).fingerprint for count in range(1, 20)}
    assert len(prints) == 19
    assert ShardMap(2, 1).fingerprint == ShardMap(2).fingerprint  # the index is not the map
    assert ShardMap(2, 1).describe() == f"shard 1 of 2, map {ShardMap(2).fingerprint}"
    with pytest.raises(ValueError, match="--shard must be from 0 to 1"):
        ShardMap(2, 2)


# --- settings -----------------------------------------------------------------------


def test_router_list_from_repeated_flags_commas_and_a_toml_array(tmp_path: Path) -> None:
    a, b, c = (f"ipc://{tmp_path}/{name}.ipc" for name in "abc")
    parsed = cli.parse_settings(["worker", "--router", a, "--router", f"{b},{c}"])
    assert isinstance(parsed, WorkerSettings) and parsed.link.endpoints == (a, b, c)
    config = tmp_path / "worker.toml"
    config.write_text(f'router = ["{a}", "{b}"]\n')
    parsed = cli.parse_settings(["worker", "--config", str(config)])
    assert isinstance(parsed, WorkerSettings) and parsed.link.endpoints == (a, b)
    config.write_text(f'router = "{a}"\n')  # one string, as before shards
    parsed = cli.parse_settings(["worker", "--config", str(config)])
    assert isinstance(parsed, WorkerSettings) and parsed.link.endpoint == a
    assert LinkSettings("ipc:///x").endpoints == ("ipc:///x",)
    with pytest.raises(ValueError, match=r"^--router: an endpoint is listed twice"):
        LinkSettings(f"{a},{a}")


def test_a_router_shard_index_must_be_below_the_count() -> None:
    assert RouterSettings(shard=1, shards=2).shard == 1
    with pytest.raises(ValueError, match=r"^--shard must be below --shards \(2\)"):
        RouterSettings(shard=2, shards=2)
    with pytest.raises(ValueError, match=r"^--shards must be at least 1"):
        RouterSettings(shards=0)


# --- the worker's hub -----------------------------------------------------------------


class ShardLink(StubLink):
    """A stub link with the attributes the hub reads of a real one."""

    def __init__(self, shard: int) -> None:
        super().__init__()
        self.shard = shard
        self.ready = True


def two_shard_hub() -> tuple[Hub, list[ShardLink], SignalEndpoint]:
    hub = Hub(Gatekeeper(LimitSettings(rate=0)), shards=ShardMap(2))
    links = [ShardLink(0), ShardLink(1)]
    for link in links:
        hub.attach(cast(RouterLink, link))
    return hub, links, SignalEndpoint(hub, hub.gate, 1024)


@pytest.mark.gen_test
async def test_the_hub_sends_each_room_to_its_shard_and_a_dead_shard_refuses_only_its_own() -> None:
    hub, links, endpoint = two_shard_hub()
    room0, room1 = rooms_of(0)[0], rooms_of(1)[0]
    connect(endpoint, f"?room={room0}")
    connect(endpoint, f"?room={room1}")
    p0, p1 = hub.peers
    assert links[0].joins == [(p0, room0)] and links[1].joins == [(p1, room1)]
    hub.joined(p0, room0, 1, False, 0)
    hub.joined(p1, room1, 1, False, 0)
    assert hub.relay(p0, b"x") and hub.relay(p1, b"y")
    assert links[0].relayed == [(p0, b"x")] and links[1].relayed == [(p1, b"y")]
    # Each router re-registers only its own rooms' peers.
    listeners = [hub.shard_listener(0), hub.shard_listener(1)]
    assert [r.peer for r in listeners[0].registrations()] == [p0]
    assert [r.peer for r in listeners[1].registrations()] == [p1]
    # Shard 0 goes down: a join to its rooms is refused at once (1013), shard 1's are taken.
    links[0].ready = False
    listeners[0].router_lost()
    assert hub.ready
    _, refused = connect(endpoint, f"?room={room0}")
    frames = refused.frames()
    assert json.loads(frames[0].payload)["code"] == "router_unavailable"
    assert frames[1].close_code == protocol.CloseCode.TRY_AGAIN_LATER
    connect(endpoint, f"?room={rooms_of(1)[1]}")
    assert len(links[1].joins) == 2 and len(links[0].joins) == 1
    hub.leave(p0)
    hub.leave(p1)
    assert links[0].left == [p0] and links[1].left == [p1]
    links[1].ready = False
    assert not hub.ready


# --- the router ----------------------------------------------------------------------


@pytest.fixture
def shard_router() -> Iterator[tuple[Router, str]]:
    endpoint = f"inproc://router-{uuid.uuid4().hex}"
    settings = RouterSettings(
        bind=endpoint, heartbeat_interval=0.05, heartbeat_liveness=10, resync_grace=0.0
    )
    router = Router(msgspec.structs.replace(settings, shard=1, shards=2))
    router.bind()
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    yield router, endpoint
    router.stop()
    thread.join(5)


def test_a_router_refuses_another_map_and_the_rooms_of_other_shards(
    shard_router: tuple[Router, str],
) -> None:
    router, endpoint = shard_router
    ours = ShardMap(2).fingerprint
    stray = FakeWorker(endpoint, "stray")
    worker = FakeWorker(endpoint, "w")
    try:
        for wrong in ("", ShardMap(3).fingerprint):
            stray.inbox.clear()
            stray.send(wire.Hello([], None, 0, wrong))
            stray.quiet(0.3)  # (collects what comes; its heartbeats earn Reregister: unknown)
            answers = [m for m in stray.inbox if type(m) is not wire.Reregister]
            assert answers == [wire.WrongShardMap(ours, 1)]
        assert router.rooms.counts() == (0, 0) and not router.telemetry.workers

        mine, foreign = rooms_of(1)[0], rooms_of(0)[0]
        worker.send(wire.Hello([wire.PeerRecord(5, foreign, False)], None, 0, ours))
        welcome = worker.expect(wire.Welcome)
        assert welcome.refused == [5] and welcome.rejected == []
        worker.send(wire.Join(1, mine), wire.Join(2, foreign))
        assert worker.expect(wire.Joined).room == mine
        assert worker.expect(wire.RoomFull) == wire.RoomFull(2, foreign, over_cap=True)
        assert router.rooms.counts() == (1, 1)
        # `mcp-tornado status` of this router names its shard and map.
        report = status.query(endpoint)
        assert report.shard_map == f"shard 1 of 2, map {ours}"
        assert f"shards   shard 1 of 2, map {ours}" in status.render(endpoint, report).splitlines()
    finally:
        stray.close()
        worker.close()
