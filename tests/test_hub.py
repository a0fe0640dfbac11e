"""The worker's registry of peers: ids, what a restarted router is told, and fences after it."""

from __future__ import annotations

import pytest

from mcp_tornado import wire
from tests.rawws import CLOSE
from tests.test_peer import connect, worker

pytestmark = pytest.mark.gen_test


async def test_peers_get_fresh_ids_and_are_listed_for_a_restarted_router() -> None:
    hub, _, endpoint = worker()
    connect(endpoint, "?room=a")
    connect(endpoint, "?room=b")
    first, second = hub.peers
    assert second == first + 1
    hub.joined(first, "a", 2, True, 0)
    assert hub.registrations() == [
        wire.PeerRecord(first, "a", True),
        wire.PeerRecord(second, "b", False),
    ]


async def test_a_welcome_resends_the_fences_that_are_out() -> None:
    hub, link, endpoint = worker()
    connect(endpoint, "?room=r")
    connect(endpoint, "?room=r")
    a, b = hub.peers
    hub.peer_joined(a, "r", 2, b)  # the router paired them on this worker
    assert link.fences == [(a, 1), (b, 1)]
    hub.registered()  # a new router never saw those fences
    assert link.fences[2:] == [(a, 2), (b, 2)]
    hub.fenced(a, 2)
    hub.fenced(b, 2)
    hub.registered()  # nothing is out any more
    assert len(link.fences) == 4


async def test_leaving_tells_the_router_once_and_refused_peers_not_at_all() -> None:
    hub, link, endpoint = worker()
    connect(endpoint, "?room=r")
    (peer_id,) = hub.peers
    hub.leave(peer_id)
    hub.leave(peer_id)
    assert link.left == [peer_id]
    connect(endpoint, "?room=r")
    (other,) = hub.peers
    hub.room_full(other)
    assert link.left == [peer_id]


async def test_a_lost_router_releases_every_close_that_waits_for_it() -> None:
    hub, _, endpoint = worker()
    _, transport = connect(endpoint, "?room=r")
    (peer_id,) = hub.peers
    hub.joined(peer_id, "r", 1, False, 0)
    assert hub.leave_then_close(peer_id, 4008)
    assert hub.leaving and CLOSE not in [f.opcode for f in transport.frames()]
    hub.router_lost()
    assert hub.leaving == {}
    assert transport.frames()[-1].close_code == 4008
    hub.left(peer_id)  # a late answer changes nothing
    assert [f.opcode for f in transport.frames()].count(CLOSE) == 1
