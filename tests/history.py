"""A history of what clients saw (joins, refusals, leaves, messages) and the invariants on it.

Usage::

    history = History()
    history.joined("room", "alice")             # the server said joined
    history.refused("room", "carol", "room_full")
    history.sent("room", "alice", 1)            # alice sent her message 1
    history.delivered("room", "bob", "alice", 1)  # bob received it
    history.left("room", "alice")               # alice closed (or was closed)
    assert history.violations() == []

The invariants every run must keep, whatever failed meanwhile (issue 14, test 7):

* never more than two clients hold a slot in a room at once (a slot is held
  from ``joined`` until ``left``);
* a message is delivered only in the room it was sent in, only to another
  client than its sender, at most once, and each sender's messages arrive in
  the order sent.

Times are the recorder's ``time.monotonic()``: the history is kept by one
process (the test's), so its order is the order the test observed.
"""

from __future__ import annotations

import time
from collections import defaultdict


class History:
    """Events as the test's clients observed them; :meth:`violations` checks the invariants."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, str, str, int]] = []  # t, kind, room, who, from, n

    def _add(self, kind: str, room: str, who: str, sender: str = "", n: int = 0) -> None:
        self.events.append((time.monotonic(), kind, room, who, sender, n))

    def joined(self, room: str, who: str) -> None:
        self._add("joined", room, who)

    def refused(self, room: str, who: str, reason: str) -> None:
        self._add("refused:" + reason, room, who)

    def left(self, room: str, who: str) -> None:
        self._add("left", room, who)

    def sent(self, room: str, who: str, n: int) -> None:
        self._add("sent", room, who, who, n)

    def delivered(self, room: str, who: str, sender: str, n: int) -> None:
        self._add("delivered", room, who, sender, n)

    def count(self, kind: str, room: str) -> int:
        return sum(1 for _, k, r, *_ in self.events if k == kind and r == room)

    def violations(self) -> list[str]:
        """Every broken invariant, as one line each (empty: the history is sound)."""
        found: list[str] = []
        holding: dict[str, set[str]] = defaultdict(set)
        sent: dict[tuple[str, str], set[int]] = defaultdict(set)
        got: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for _, kind, room, who, sender, n in sorted(self.events, key=lambda e: e[0]):
            if kind == "joined":
                holding[room].add(who)
                if len(holding[room]) > 2:
                    found.append(f"{room}: three hold a slot: {sorted(holding[room])}")
            elif kind == "left":
                holding[room].discard(who)
            elif kind == "sent":
                sent[room, who].add(n)
            elif kind == "delivered":
                seen = got[room, who, sender]
                if sender == who:
                    found.append(f"{room}: {who} got its own message {n}")
                elif n not in sent[room, sender]:
                    found.append(f"{room}: {who} got {sender}'s {n}, never sent in this room")
                elif n in seen:
                    found.append(f"{room}: {who} got {sender}'s {n} twice")
                elif seen and n < seen[-1]:
                    found.append(f"{room}: {who} got {sender}'s {n} after {seen[-1]}")
                seen.append(n)
        return found
