"""The invariant checker of tests/history.py finds each kind of violation (so it can fail)."""

from __future__ import annotations

from tests.history import History


def test_a_sound_history_has_no_violations() -> None:
    history = History()
    history.joined("r", "a")
    history.joined("r", "b")
    history.refused("r", "c", "room_full")
    for n in (1, 2):
        history.sent("r", "a", n)
        history.delivered("r", "b", "a", n)
    history.left("r", "a")
    history.joined("r", "c")  # a freed its slot first
    assert history.violations() == []
    assert history.count("joined", "r") == 3 and history.count("refused:room_full", "r") == 1


def test_three_holders_and_every_bad_delivery_are_found() -> None:
    history = History()
    for who in ("a", "b", "c"):
        history.joined("r", who)
    history.sent("r", "a", 1)
    history.sent("r", "a", 2)
    history.delivered("r", "b", "a", 2)
    history.delivered("r", "b", "a", 1)  # out of order
    history.delivered("r", "b", "a", 1)  # twice
    history.delivered("other", "x", "a", 1)  # never sent in that room
    history.sent("r", "b", 1)
    history.delivered("r", "b", "b", 1)  # its own
    assert history.violations() == [
        "r: three hold a slot: ['a', 'b', 'c']",
        "r: b got a's 1 after 2",
        "r: b got a's 1 twice",
        "other: x got a's 1, never sent in this room",
        "r: b got its own message 1",
    ]
