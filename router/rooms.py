"""Room membership: the router's single source of truth, kept free of I/O so it can be tested alone.

A peer is a :data:`PeerKey`, ``(worker_id, peer)``.  A room holds at most
:data:`MAX_PEERS` peers; a peer is in at most one room.  The table keeps the
partner of every paired peer in a dict so that relaying a message, the hot
path, is a single lookup.
"""

from __future__ import annotations

from typing import Final, NamedTuple, TypeAlias

PeerKey: TypeAlias = tuple[bytes, int]
MAX_PEERS: Final = 2


class Departure(NamedTuple):
    """A peer left ``room``; ``partner`` (if any) stays there, now alone."""

    peer: PeerKey
    room: str
    partner: PeerKey | None


class RoomTable:
    """Which peer is in which room, and with whom.

    Usage::

        table = RoomTable()
        other = table.join(key, "lobby")     # -> JoinResult
        partner = table.partner(key)         # hot path
        gone = table.leave(key)              # -> Departure | None
        room = table.rebind(key, other_key)  # the same slot, another key
        gone_all = table.drop_worker(b"w1")  # -> list[Departure]
    """

    def __init__(self) -> None:
        self._rooms: dict[str, list[PeerKey]] = {}
        self._room_of: dict[PeerKey, str] = {}
        self._partner: dict[PeerKey, PeerKey] = {}
        self._by_worker: dict[bytes, set[int]] = {}

    def room_of(self, peer: PeerKey) -> str | None:
        return self._room_of.get(peer)

    def partner(self, peer: PeerKey) -> PeerKey | None:
        return self._partner.get(peer)

    def counts(self) -> tuple[int, int]:
        """Rooms with at least one peer, and peers in rooms."""
        return len(self._rooms), len(self._room_of)

    def peers_of_worker(self, worker: bytes) -> set[int]:
        return set(self._by_worker.get(worker, ()))

    def count_of_worker(self, worker: bytes) -> int:
        """How many slots ``worker``'s peers hold (and so at most how many rooms)."""
        return len(self._by_worker.get(worker, ()))

    def join(self, peer: PeerKey, room: str) -> JoinResult:
        """Give ``peer`` a slot in ``room`` if there is one.

        Joining again into the room a peer is already in is a no-op that reports
        the current state; joining another room first leaves the old one.
        """
        current = self._room_of.get(peer)
        if current == room:
            return JoinResult(True, len(self._rooms[room]), self._partner.get(peer))
        if current is not None:
            self.leave(peer)
        members = self._rooms.setdefault(room, [])
        if len(members) >= MAX_PEERS:
            return JoinResult(False, len(members), None)
        partner = members[0] if members else None
        members.append(peer)
        self._room_of[peer] = room
        self._by_worker.setdefault(peer[0], set()).add(peer[1])
        if partner is not None:
            self._partner[peer] = partner
            self._partner[partner] = peer
        return JoinResult(True, len(members), partner)

    def leave(self, peer: PeerKey) -> Departure | None:
        """Free ``peer``'s slot.  Returns ``None`` if it held none."""
        room = self._room_of.pop(peer, None)
        if room is None:
            return None
        members = self._rooms[room]
        members.remove(peer)
        if not members:
            del self._rooms[room]
        worker_peers = self._by_worker[peer[0]]
        worker_peers.discard(peer[1])
        if not worker_peers:
            del self._by_worker[peer[0]]
        partner = self._partner.pop(peer, None)
        if partner is not None:
            del self._partner[partner]
        return Departure(peer, room, partner)

    def rebind(self, old: PeerKey, new: PeerKey) -> str:
        """Give ``old``'s slot (room and partner) to ``new``, which holds none; returns the room.

        How a suspended peer keeps its slot under another key, and a resumed one
        takes it back (see :mod:`mcp_tornado.router.suspended`).
        """
        if new in self._room_of:
            raise ValueError(f"{new!r} already holds a slot")
        room = self._room_of.pop(old)
        members = self._rooms[room]
        members[members.index(old)] = new
        self._room_of[new] = room
        worker_peers = self._by_worker[old[0]]
        worker_peers.discard(old[1])
        if not worker_peers:
            del self._by_worker[old[0]]
        self._by_worker.setdefault(new[0], set()).add(new[1])
        partner = self._partner.pop(old, None)
        if partner is not None:
            self._partner[new] = partner
            self._partner[partner] = new
        return room

    def size(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    def drop_worker(self, worker: bytes) -> list[Departure]:
        """Free every slot held by ``worker``'s peers (it died or left).

        Departures whose partner was on the same worker report no partner: that
        partner is gone too.
        """
        departures = [self.leave((worker, peer)) for peer in self.peers_of_worker(worker)]
        return [
            d._replace(partner=None) if d.partner is not None and d.partner[0] == worker else d
            for d in departures
            if d is not None
        ]


class JoinResult(NamedTuple):
    """Outcome of :meth:`RoomTable.join`; ``peers`` is the room's size afterwards."""

    accepted: bool
    peers: int
    partner: PeerKey | None
