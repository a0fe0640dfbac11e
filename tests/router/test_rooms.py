from __future__ import annotations

from mcp_tornado.router.rooms import Departure, RoomTable

# The table has no counting API (the router never counts): tests look at its state.

A = (b"w1", 1)
B = (b"w2", 1)
C = (b"w1", 2)


def test_two_peers_pair_and_a_third_is_refused() -> None:
    table = RoomTable()
    first = table.join(A, "r")
    assert first.accepted and first.peers == 1 and first.partner is None
    second = table.join(B, "r")
    assert second.accepted and second.peers == 2 and second.partner == A
    assert table.partner(A) == B and table.partner(B) == A
    third = table.join(C, "r")
    assert not third.accepted and third.peers == 2
    assert table.room_of(C) is None
    assert table._room_of == {A: "r", B: "r"}


def test_rooms_are_isolated() -> None:
    table = RoomTable()
    table.join(A, "r1")
    table.join(B, "r2")
    assert table.partner(A) is None and table.partner(B) is None
    assert table._rooms == {"r1": [A], "r2": [B]}


def test_leave_frees_the_slot_and_reports_the_partner() -> None:
    table = RoomTable()
    table.join(A, "r")
    table.join(B, "r")
    assert table.leave(A) == Departure(A, "r", B)
    assert table.partner(B) is None
    assert table.join(C, "r").partner == B
    assert table.leave(A) is None


def test_empty_rooms_are_forgotten() -> None:
    table = RoomTable()
    table.join(A, "r")
    table.leave(A)
    assert table._rooms == {} and table._room_of == {} and table._by_worker == {}


def test_rejoining_the_same_room_is_idempotent() -> None:
    table = RoomTable()
    table.join(A, "r")
    table.join(B, "r")
    again = table.join(A, "r")
    assert again.accepted and again.peers == 2 and again.partner == B


def test_joining_another_room_leaves_the_first() -> None:
    table = RoomTable()
    table.join(A, "r1")
    table.join(B, "r1")
    table.join(A, "r2")
    assert table.room_of(A) == "r2" and table.room_of(B) == "r1"
    assert table._rooms["r1"] == [B] and table.partner(B) is None


def test_drop_worker_frees_all_its_peers() -> None:
    table = RoomTable()
    table.join(A, "r1")
    table.join(B, "r1")
    table.join(C, "r2")
    table.join((b"w1", 3), "r2")
    departures = sorted(table.drop_worker(b"w1"))
    assert departures == [
        Departure(A, "r1", B),
        Departure(C, "r2", None),
        Departure((b"w1", 3), "r2", None),
    ]
    assert table._room_of == {B: "r1"} and table.partner(B) is None
    assert table.peers_of_worker(b"w1") == set()
