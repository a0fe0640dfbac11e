"""A real router and two real workers on two ports, driven by WebSocket clients."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
from tornado.httpclient import HTTPClientError
from tornado.websocket import websocket_connect

from tests.support import Client, Cluster

pytestmark = [pytest.mark.gen_test(timeout=20), pytest.mark.usefixtures("close_clients")]


def room() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


async def pair(cluster: Cluster, name: str) -> tuple[Client, Client]:
    """A on worker 0 and B on worker 1, both joined and aware of each other."""
    a = await Client.connect(cluster.url(name, 0))
    assert (await a.recv()) == {"type": "joined", "room": name, "peers": 1, "initiator": False}
    b = await Client.connect(cluster.url(name, 1))
    assert (await b.recv()) == {"type": "joined", "room": name, "peers": 2, "initiator": True}
    assert (await a.recv()) == {"type": "peer-joined", "room": name, "peers": 2}
    return a, b


async def test_relay_across_workers_both_ways_byte_for_byte(cluster: Cluster) -> None:
    a, b = await pair(cluster, room())
    frames = [
        '{"type":"offer","sdp":"v=0\\r\\no=- 1 2 IN IP4 127.0.0.1\\r\\n"}',
        '{ "type" : "offer", "offer": {"type": "offer", "sdp": "v=0"}, "z": [1, 2.50, null] }',
        '{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host",'
        '"sdpMid":"0","sdpMLineIndex":0},"unicode":"\u00e9\U0001f600"}',
        '{"type":"leave","reason":"bye"}',
    ]
    for frame in frames:
        b.send(frame)
        assert await a.recv_raw() == frame
        a.send(frame.replace("offer", "answer"))
        assert await b.recv_raw() == frame.replace("offer", "answer")
    assert await a.nothing_within(0.2), "no echo to the sender"
    assert await b.nothing_within(0.05)


async def test_rooms_are_isolated(cluster: Cluster) -> None:
    a1, b1 = await pair(cluster, room())
    a2, b2 = await pair(cluster, room())
    a1.send({"type": "offer", "sdp": "room1"})
    a2.send({"type": "offer", "sdp": "room2"})
    assert (await b1.recv())["sdp"] == "room1"
    assert (await b2.recv())["sdp"] == "room2"
    assert await b1.nothing_within(0.2)
    assert await b2.nothing_within(0.05)


async def test_two_peer_limit_holds_across_workers(cluster: Cluster) -> None:
    name = room()
    a = await Client.connect(cluster.url(name, 0))
    await a.recv_type("joined")
    b = await Client.connect(cluster.url(name, 0))
    await b.recv_type("joined")
    third = await Client.connect(cluster.url(name, 1))
    assert (await third.recv()) == {"type": "error", "code": "room_full", "message": "Room is full"}
    assert await third.closed() == 4409
    # The two members are untouched and still talk.
    a.send({"type": "offer", "sdp": "still here"})
    assert (await b.recv_type("offer"))["sdp"] == "still here"


async def test_slot_freed_on_close_and_partner_told(cluster: Cluster) -> None:
    name = room()
    a, b = await pair(cluster, name)
    b.close()
    assert (await a.recv()) == {"type": "leave"}
    assert (await a.recv()) == {"type": "peer-left", "room": name, "peers": 1}
    c = await Client.connect(cluster.url(name, 1))
    assert (await c.recv()) == {"type": "joined", "room": name, "peers": 2, "initiator": True}
    assert (await a.recv())["type"] == "peer-joined"


async def test_leave_on_abrupt_disconnect(cluster: Cluster) -> None:
    name = room()
    a, b = await pair(cluster, name)
    b.cut()
    assert (await a.recv()) == {"type": "leave"}
    assert (await a.recv_type("peer-left"))["peers"] == 1
    c = await Client.connect(cluster.url(name, 0))
    assert (await c.recv_type("joined"))["peers"] == 2


async def test_bad_frames_get_errors_and_the_connection_stays_usable(cluster: Cluster) -> None:
    a, b = await pair(cluster, room())
    for frame, code in [
        ("{not json", "invalid_json"),
        ('{"type":"shout"}', "unknown_type"),
        ("[]", "invalid_message"),
        ('{"sdp":"no type"}', "invalid_message"),
    ]:
        a.send(frame)
        error = await a.recv()
        assert error["type"] == "error" and error["code"] == code and error["message"]
    assert await b.nothing_within(0.1), "invalid frames are never relayed"
    a.send({"type": "offer", "sdp": "fine"})
    assert (await b.recv())["sdp"] == "fine"


async def test_first_message_right_after_connect_is_delivered(cluster: Cluster) -> None:
    name = room()
    a = await Client.connect(cluster.url(name, 0))
    await a.recv_type("joined")
    # No waiting for "joined": existing clients send the offer the moment the socket opens.
    b = Client(await websocket_connect(cluster.url(name, 1)))
    b.send({"type": "offer", "sdp": "immediate"})
    b.send({"type": "candidate", "candidate": {"candidate": "c1"}})
    assert (await a.recv_type("offer"))["sdp"] == "immediate"
    assert (await a.recv())["candidate"] == {"candidate": "c1"}


async def test_message_while_alone_is_dropped_with_a_notice(cluster: Cluster) -> None:
    name = room()
    a = await Client.connect(cluster.url(name, 0))
    await a.recv_type("joined")
    a.send({"type": "offer", "sdp": "stale"})
    notice = await a.recv()
    assert notice["type"] == "info" and notice["code"] == "no_peer"
    b = await Client.connect(cluster.url(name, 1))
    await b.recv_type("joined")
    assert await b.nothing_within(0.3), "a stale offer must not be replayed to a newcomer"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "default"),
        ("?room", "default"),
        ("?room=", "default"),
        ("?x=1&room=caf%C3%A9%20room&y=2", "caf\u00e9 room"),
        ("?room=a+b", "a b"),
        ("?other=1", "default"),
    ],
)
async def test_query_string_parsing(cluster: Cluster, query: str, expected: str) -> None:
    client = await Client.connect(cluster.url(None, 0, query=query))
    joined = await client.recv_type("joined")
    assert joined["room"] == expected
    client.close()


async def test_health_and_unknown_paths(cluster: Cluster) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.ports[1]}/healthz") as response:
        assert json.loads(response.read())["status"] == "ok"
    with pytest.raises(HTTPClientError):
        await websocket_connect(f"ws://127.0.0.1:{cluster.ports[0]}/ws/other/")


async def test_many_pairs_relay_in_order(cluster: Cluster) -> None:
    pairs = [await pair(cluster, room()) for _ in range(20)]
    for a, _ in pairs:
        for i in range(50):
            a.send(json.dumps({"type": "candidate", "n": i}))
    for _, b in pairs:
        assert [(await b.recv())["n"] for _ in range(50)] == list(range(50))


async def test_slot_is_free_as_soon_as_a_clean_close_completes(cluster: Cluster) -> None:
    name = room()
    stays = await Client.connect(cluster.url(name, 0))
    await stays.recv_type("joined")
    for i in range(30):
        # Alternate workers: the leave and the next join travel different pipes.
        peer = await Client.connect(cluster.url(name, i % 2))
        assert (await peer.recv()) == {
            "type": "joined",
            "room": name,
            "peers": 2,
            "initiator": True,
        }
        peer.close()
        await peer.closed()  # the closing handshake is complete
    assert (await stays.recv_type("peer-left"))["peers"] == 1
