"""A signaling peer: admission, what it tells its client, rate limits, and the router's answers.

Peers run on real connections over stub transports, with the router link
stubbed out (tests/stubs.py), so every answer a client gets is checked
without processes.
"""

from __future__ import annotations

import json
from typing import cast

import pytest

from mcp_tornado import protocol
from mcp_tornado.admission import Gatekeeper
from mcp_tornado.connection import Connection
from mcp_tornado.hub import Hub
from mcp_tornado.ice import IceServers
from mcp_tornado.peer import Peer, SignalEndpoint
from mcp_tornado.router_link import RouterLink
from mcp_tornado.settings import IceSettings, LimitSettings
from tests.rawws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    encode_frame,
    upgrade_request,
)
from tests.stubs import StubLink, StubTransport

pytestmark = pytest.mark.gen_test


def worker(limits: LimitSettings | None = None) -> tuple[Hub, StubLink, SignalEndpoint]:
    link = StubLink()
    hub = Hub(Gatekeeper(limits or LimitSettings(rate=0)))
    hub.attach(cast(RouterLink, link))
    return hub, link, SignalEndpoint(hub, hub.gate, 1024)


def connect(endpoint: SignalEndpoint, query: str = "?room=r") -> tuple[Connection, StubTransport]:
    connection = Connection(endpoint, None)
    transport = StubTransport()
    connection.connection_made(transport)
    connection.data_received(upgrade_request(8000, f"/ws/signal/{query}"))
    return connection, transport


def only_peer(hub: Hub) -> Peer:
    (peer,) = hub.peers.values()
    return peer


def joined(hub: Hub, room: str = "r") -> int:
    """The router's answer to the only peer's join (written out); its id."""
    peer = only_peer(hub)
    peer_id = cast(int, peer.peer_id)
    hub.joined(peer_id, room, 1, False, 0)
    peer.connection.write_queued()
    return peer_id


async def test_the_socket_opens_only_once_the_router_has_put_the_peer_in_its_room() -> None:
    hub, link, endpoint = worker()
    connection, transport = connect(endpoint, "?room=lobby")
    peer = only_peer(hub)
    assert link.joins == [(peer.peer_id, "lobby")]
    assert transport.writes == [] and connection.upgrading  # no 101 yet
    joined(hub, "lobby")
    assert transport.head().startswith(b"HTTP/1.1 101 ")
    connection.write_queued()
    assert [json.loads(t) for t in transport.texts()] == [
        {"type": "joined", "room": "lobby", "peers": 1, "initiator": False}
    ]
    assert endpoint.gate.connections == 1


async def test_joined_carries_the_ice_servers_with_each_peers_own_credential() -> None:
    hub, _, endpoint = worker()
    hub.ice = IceServers(
        IceSettings(("turn:t.example",), ("stun:s.example",), b"peer-test-secret-0123456789")
    )
    transports = [connect(endpoint, "?room=lobby")[1] for _ in range(2)]
    for number, (peer_id, peer) in enumerate(list(hub.peers.items())):
        hub.joined(peer_id, "lobby", number + 1, number == 1, 0)
        peer.connection.write_queued()
    events = [json.loads(transport.texts()[0]) for transport in transports]
    turns = []
    for event in events:
        turn, stun = event.pop("iceServers")
        assert turn["urls"] == ["turn:t.example"] and stun == {"urls": ["stun:s.example"]}
        turns.append(turn)
    assert events[0] == {"type": "joined", "room": "lobby", "peers": 1, "initiator": False}
    assert turns[0]["username"] != turns[1]["username"]
    assert turns[0]["credential"] != turns[1]["credential"]


async def test_frames_sent_before_the_101_follow_the_join_and_answers_wait_for_it() -> None:
    hub, link, endpoint = worker()
    connection, transport = connect(endpoint)
    connection.data_received(encode_frame(TEXT, b'{"type":"offer"}') + encode_frame(TEXT, b"{"))
    connection.write_queued()
    assert link.relayed == [(only_peer(hub).peer_id, b'{"type":"offer"}')]
    assert transport.writes == []  # the error answer waits for the 101
    joined(hub)
    connection.write_queued()
    assert [json.loads(t)["type"] for t in transport.texts()] == ["error", "joined"]


async def test_a_join_the_router_never_answers_is_refused_when_the_router_is_lost() -> None:
    hub, _, endpoint = worker()
    _, transport = connect(endpoint)
    hub.router_lost()
    assert hub.peers == {}
    frames = transport.frames()
    assert transport.head().startswith(b"HTTP/1.1 101 ")
    assert json.loads(frames[0].payload)["code"] == "router_unavailable"
    assert frames[1].close_code == protocol.CloseCode.TRY_AGAIN_LATER


async def test_a_bad_room_is_refused_after_the_upgrade_and_never_reaches_the_router() -> None:
    hub, link, endpoint = worker()
    _, transport = connect(endpoint, "?room=bad%00room")
    assert hub.peers == {} and link.joins == []
    frames = transport.frames()
    assert json.loads(frames[0].payload)["code"] == "invalid_room"
    assert frames[1].close_code == protocol.CloseCode.INVALID_ROOM


async def test_without_a_router_a_join_is_refused_with_try_again_later() -> None:
    _hub, link, endpoint = worker()
    link.ready = False
    _, transport = connect(endpoint)
    frames = transport.frames()
    assert json.loads(frames[0].payload)["code"] == "router_unavailable"
    assert frames[1].close_code == protocol.CloseCode.TRY_AGAIN_LATER


async def test_messages_are_checked_once_and_relayed_as_the_clients_bytes() -> None:
    hub, link, endpoint = worker()
    connection, transport = connect(endpoint)
    joined(hub)
    transport.forget_frames()
    sent = b'{ "type":"offer", "sdp":"v=0", "extra":[1,2] }'
    connection.data_received(encode_frame(TEXT, sent) + encode_frame(TEXT, b"{oops"))
    connection.data_received(encode_frame(BINARY, sent) + encode_frame(BINARY, b"\xff"))
    connection.write_queued()
    assert [payload for _, payload in link.relayed] == [sent, sent]
    assert [json.loads(t)["code"] for t in transport.texts()] == ["invalid_json", "invalid_message"]


async def test_router_events_reach_the_right_peer_as_client_json() -> None:
    hub, _, endpoint = worker()
    connection, transport = connect(endpoint)
    peer_id = joined(hub)
    hub.peer_joined(peer_id, "r", 2, 0)
    hub.deliver(peer_id, b'{"type":"answer"}')
    hub.no_peer(peer_id)
    hub.undelivered(peer_id)
    hub.peer_left(peer_id, "r", 1)
    hub.deliver(peer_id + 1, b"for nobody")  # an unknown id: ignored
    connection.write_queued()
    assert [json.loads(t).get("code", json.loads(t)["type"]) for t in transport.texts()] == [
        "joined",
        "peer-joined",
        "answer",
        "no_peer",
        "router_unavailable",
        "leave",
        "peer-left",
    ]


async def test_room_full_opens_the_socket_then_closes_it_with_4409() -> None:
    hub, _, endpoint = worker()
    _, transport = connect(endpoint)
    hub.room_full(cast(int, only_peer(hub).peer_id))
    assert hub.peers == {}
    assert transport.head().startswith(b"HTTP/1.1 101 ")
    frames = transport.frames()
    assert json.loads(frames[0].payload) == {
        "type": "error",
        "code": "room_full",
        "message": "Room is full",
    }
    assert frames[1].close_code == protocol.CloseCode.ROOM_FULL


async def test_pings_count_against_the_rate_limit_before_they_are_answered() -> None:
    hub, _, endpoint = worker(LimitSettings(rate=1, burst=2))
    connection, transport = connect(endpoint)
    joined(hub)
    transport.forget_frames()
    connection.data_received(b"".join(encode_frame(PING, b"%d" % n) for n in range(3)))
    connection.write_queued()
    frames = transport.frames()
    assert [f.opcode for f in frames] == [PONG, PONG, TEXT]  # the third: rate_limited, no pong
    assert json.loads(frames[2].payload)["code"] == "rate_limited"


async def test_fragments_and_pongs_count_against_the_rate_limit() -> None:
    hub, link, endpoint = worker(LimitSettings(rate=1, burst=3))
    connection, transport = connect(endpoint)
    peer_id = joined(hub)
    transport.forget_frames()
    message = (
        encode_frame(TEXT, b'{"type":"leave"', fin=False)
        + encode_frame(PONG, b"")
        + encode_frame(CONTINUATION, b"}")
    )
    connection.data_received(message)  # 3 frames: exactly the burst; relayed
    assert link.relayed == [(peer_id, b'{"type":"leave"}')]
    connection.data_received(encode_frame(PONG, b""))  # one more: warned
    connection.write_queued()
    assert [json.loads(f.payload)["code"] for f in transport.frames()] == ["rate_limited"]
    connection.data_received(encode_frame(PONG, b"") * 2)  # burst frames over: closed
    assert link.left == [peer_id]  # leaving; the 4429 follows the router's answer
    hub.left(peer_id)
    assert transport.frames()[-1].close_code == protocol.CloseCode.RATE_LIMITED


async def test_a_clients_close_is_echoed_only_once_the_router_has_freed_its_slot() -> None:
    hub, link, endpoint = worker()
    connection, transport = connect(endpoint)
    peer_id = joined(hub)
    transport.forget_frames()
    connection.data_received(encode_frame(CLOSE, b"\x03\xe8"))
    assert link.left == [peer_id] and hub.peers == {}
    assert transport.frames() == [] and not transport.closed  # no echo yet
    connection.data_received(encode_frame(CLOSE, b"\x03\xe8"))  # (said twice: still waits)
    hub.left(peer_id)
    assert [f.close_code for f in transport.frames()] == [1000] and transport.closed
    connection.connection_lost(None)
    assert endpoint.gate.connections == 0


async def test_a_client_that_stops_reading_is_closed_with_4008_once_it_has_left() -> None:
    hub, link, endpoint = worker(LimitSettings(rate=0, max_pending_bytes=1000))
    connection, transport = connect(endpoint)
    peer_id = joined(hub)
    connection.write_queued()
    transport.forget_frames()
    for _ in range(20):
        hub.deliver(peer_id, b'{"type":"candidate","pad":"' + b"x" * 100 + b'"}')
    assert hub.peers == {} and link.left == [peer_id]
    hub.left(peer_id)
    assert [f.opcode for f in transport.frames()] == [CLOSE]
    assert transport.frames()[0].close_code == protocol.CloseCode.TOO_SLOW


async def test_without_a_router_to_confirm_a_leave_the_close_is_not_held() -> None:
    hub, link, endpoint = worker()
    connection, transport = connect(endpoint)
    peer_id = joined(hub)
    transport.forget_frames()
    link.ready = False
    connection.data_received(encode_frame(CLOSE, b"\x03\xe8"))
    assert link.left == [peer_id]
    assert [f.close_code for f in transport.frames()] == [1000]


# --- resume (the worker's side; the router's is tests/router, end to end tests/test_resume) ---


def resumable(hub: Hub, endpoint: SignalEndpoint) -> tuple[Peer, StubTransport]:
    """A client that asked for resume, joined with token ``tok``; its transport, emptied."""
    connect(endpoint, "?room=r&resumable=1")
    peer = only_peer(hub)
    hub.resumable(cast(int, peer.peer_id), "tok", 10.0)
    joined(hub)
    transport = cast(StubTransport, peer.connection.transport)
    transport.forget_frames()
    return peer, transport


async def test_a_resumable_client_gets_its_token_in_joined() -> None:
    hub, link, endpoint = worker()
    connection, transport = connect(endpoint, "?room=r&resumable=1")
    peer_id = cast(int, only_peer(hub).peer_id)
    assert link.resumable_joins == [peer_id]
    hub.resumable(peer_id, "tok", 10.0)
    joined(hub)
    connection.write_queued()
    assert json.loads(transport.texts()[0]) == {
        "type": "joined",
        "room": "r",
        "peers": 1,
        "initiator": False,
        "resume": "tok",
        "resumeGrace": 10.0,
    }


@pytest.mark.parametrize(
    ("goodbye", "suspended"),
    [
        (b"", True),  # the TCP connection just ends
        (encode_frame(CLOSE, (4000).to_bytes(2, "big")), True),
        (encode_frame(CLOSE, (1000).to_bytes(2, "big")), False),
        (encode_frame(CLOSE, (1001).to_bytes(2, "big")), False),
        (encode_frame(CLOSE, b""), False),  # no code: a browser's ws.close()
        (encode_frame(TEXT, b'{"type":"leave"}'), False),  # then the connection ends
        (encode_frame(TEXT, b"{}", mask=False), False),  # a protocol violation (1002)
    ],
)
async def test_only_an_end_without_goodbye_suspends_a_resumable_peer(
    goodbye: bytes, suspended: bool
) -> None:
    hub, link, endpoint = worker()
    peer, _ = resumable(hub, endpoint)
    peer_id = peer.peer_id
    if goodbye:
        peer.connection.data_received(goodbye)
    peer.connection.connection_lost(None)
    assert (link.suspended, link.left) == (([peer_id], []) if suspended else ([], [peer_id]))


async def test_a_plain_peer_is_never_suspended() -> None:
    hub, link, endpoint = worker()
    connect(endpoint)
    peer_id = joined(hub)
    only_peer(hub).connection.connection_lost(None)
    assert (link.suspended, link.left) == ([], [peer_id])


async def test_a_resume_waits_for_the_router_then_says_resumed() -> None:
    hub, link, endpoint = worker()
    connection, transport = connect(endpoint, "?room=r&resume=tok")
    peer = only_peer(hub)
    assert link.resumes == [(peer.peer_id, "r", "tok")] and link.joins == []
    assert connection.upgrading
    hub.resumed(cast(int, peer.peer_id), "r", 2, True, "next", 10.0, 0)
    hub.deliver(cast(int, peer.peer_id), b'{"type":"candidate","n":0}')
    connection.write_queued()
    assert transport.head().startswith(b"HTTP/1.1 101 ")
    assert [json.loads(t) for t in transport.texts()] == [
        {
            "type": "resumed",
            "room": "r",
            "peers": 2,
            "initiator": True,
            "resume": "next",
            "resumeGrace": 10.0,
        },
        {"type": "candidate", "n": 0},
    ]
    assert peer.resume == "next" and peer.paired


async def test_joined_and_resumed_of_a_resumable_peer_carry_fresh_ice_servers() -> None:
    hub, _, endpoint = worker()
    hub.ice = IceServers(IceSettings(("turn:t.example",), (), b"peer-test-secret-0123456789"))
    _, transport = connect(endpoint, "?room=r&resumable=1")
    peer_id = cast(int, only_peer(hub).peer_id)
    hub.resumable(peer_id, "tok", 10.0)
    joined(hub)
    _, again = connect(endpoint, "?room=r&resume=tok")
    (resumer,) = (p for p in hub.peers.values() if p.peer_id != peer_id)
    hub.resumed(cast(int, resumer.peer_id), "r", 1, False, "next", 10.0, 0)
    resumer.connection.write_queued()
    first, second = json.loads(transport.texts()[0]), json.loads(again.texts()[0])
    assert (first["type"], first["resume"], second["type"], second["resume"]) == (
        "joined", "tok", "resumed", "next"
    )  # fmt: skip
    (turn,), (turn_again,) = first["iceServers"], second["iceServers"]
    assert turn["urls"] == turn_again["urls"] == ["turn:t.example"]
    assert turn["username"] != turn_again["username"]  # a credential of its own, fresh


async def test_a_refused_resume_gets_invalid_resume_and_4410() -> None:
    hub, _, endpoint = worker()
    _, transport = connect(endpoint, "?room=r&resume=stale")
    hub.resume_refused(cast(int, only_peer(hub).peer_id))
    frames = transport.frames()
    assert json.loads(frames[0].payload)["code"] == "invalid_resume"
    assert frames[1].close_code == protocol.CloseCode.INVALID_RESUME
    assert hub.peers == {}


async def test_a_replaced_socket_is_closed_with_4411_without_leaving() -> None:
    hub, link, endpoint = worker()
    peer, transport = resumable(hub, endpoint)
    hub.replaced(cast(int, peer.peer_id))
    assert transport.frames()[-1].close_code == protocol.CloseCode.REPLACED
    peer.connection.connection_lost(None)
    assert link.left == [] and link.suspended == [] and hub.peers == {}
