"""The router's resume book alone: tokens, suspension, holding and its bounds, expiry."""

from __future__ import annotations

from mcp_tornado import wire
from mcp_tornado.router.rooms import RoomTable
from mcp_tornado.router.suspended import SUSPENDED, ResumeBook

A = (b"w1", 1)
B = (b"w2", 1)


def book(grace: float = 10.0, messages: int = 3, size: int = 100) -> ResumeBook:
    return ResumeBook(grace, messages, size)


def test_tokens_are_unguessable_single_use_and_bound_to_their_room() -> None:
    resumes = book()
    token = resumes.issue(A, "r", initiator=False)
    assert len(token) >= 22 and token != resumes.issue(B, "r", initiator=True)
    assert resumes.claim(token, "other") is None, "another room"
    assert resumes.claim(token + "x", "r") is None, "forged"
    entry = resumes.claim(token, "r")
    assert entry is not None and entry.key == A
    away = resumes.suspend(A, now=0.0)
    assert away is not None and away[0] == SUSPENDED
    fresh, held = resumes.rebind(entry, (b"w3", 9))
    assert fresh != token and held == []
    assert resumes.claim(token, "r") is None, "used"
    assert resumes.claim(fresh, "r") is entry


def test_a_peer_that_left_or_never_asked_is_not_suspended() -> None:
    resumes = book()
    resumes.issue(A, "r", initiator=False)
    resumes.forget(A)
    assert resumes.suspend(A, 0.0) is None
    assert resumes.suspend(B, 0.0) is None
    assert book(grace=0).suspend(A, 0.0) is None


def test_held_messages_come_back_in_order_and_the_bounds_are_counted() -> None:
    resumes = book(messages=3, size=10)
    token = resumes.issue(A, "r", initiator=False)
    away = resumes.suspend(A, 0.0)
    assert away is not None
    for n in range(3):
        assert resumes.hold(wire.Deliver(away[1], f"m{n}".encode())) is None
    assert resumes.hold(wire.Deliver(away[1], b"m3")) == away, "the 4th message is over"
    entry = resumes.claim(token, "r")
    assert entry is not None
    _, held = resumes.rebind(entry, B)
    assert [m.payload for m in held if isinstance(m, wire.Deliver)] == [b"m0", b"m1", b"m2", b"m3"]
    by_bytes = book(messages=100, size=10)
    by_bytes.issue(A, "r", initiator=False)
    away = by_bytes.suspend(A, 0.0)
    assert away is not None
    assert by_bytes.hold(wire.Deliver(away[1], b"12345")) is None
    assert by_bytes.hold(wire.Deliver(away[1], b"123456")) == away
    assert by_bytes.hold(wire.Deliver(999, b"x")) is None, "a freed slot holds nothing"


def test_suspensions_expire_after_the_grace_once_and_not_when_resumed() -> None:
    resumes = book(grace=5.0)
    t1 = resumes.issue(A, "r", initiator=False)
    resumes.issue(B, "r", initiator=True)
    first = resumes.suspend(A, 100.0)
    second = resumes.suspend(B, 101.0)
    assert first is not None and second is not None
    assert resumes.next_deadline() == 105.0
    assert resumes.due(104.9) == []
    assert resumes.due(105.0) == [first]
    assert resumes.due(105.0) == [], "each once"
    resumes.forget(first)  # what the router does with it: free the slot
    assert resumes.claim(t1, "r") is None, "expired"
    entry_b = resumes.entry(second)
    assert entry_b is not None
    resumes.rebind(entry_b, (b"w3", 2))
    assert resumes.due(200.0) == [], "resumed: nothing expires"
    assert resumes.suspended_count == 0


def test_room_table_rebind_moves_the_slot_and_the_partner() -> None:
    table = RoomTable()
    table.join(A, "r")
    table.join(B, "r")
    away = (SUSPENDED, 1)
    assert table.rebind(A, away) == "r"
    assert table.partner(B) == away and table.partner(away) == B
    assert table.room_of(A) is None and table.peers_of_worker(b"w1") == set()
    assert table.size("r") == 2
    back = (b"w3", 5)
    table.rebind(away, back)
    assert table.partner(B) == back and table.peers_of_worker(b"w3") == {5}
    assert not table.join((b"w4", 1), "r").accepted, "still two peers"


def test_the_totals_count_suspensions_and_resumes() -> None:
    resumes = book()
    token = resumes.issue(A, "r", initiator=False)
    resumes.suspend(A, 0.0)
    entry = resumes.claim(token, "r")
    assert entry is not None
    resumes.rebind(entry, B)
    assert (resumes.suspensions, resumes.resumed, resumes.suspended_count) == (1, 1, 0)
