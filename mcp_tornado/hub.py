"""A worker's peers, and the router's answers turned into calls on them.

Usage::

    hub = Hub(gate, IceServers(settings.ice))
    link = RouterLink(settings, hub)   # the link reports to the hub
    hub.attach(link)
    hub.join(peer)                     # a peer asks for its room's slot

The :class:`Hub` is the worker's registry of :class:`~mcp_tornado.peer.Peer`
objects by the id the router knows them by.  Peers ask it to join, relay,
fence and leave; it forwards those to the router link.  The link, which only
speaks the wire, reports what the router said through the
:class:`~mcp_tornado.router_link.LinkListener` calls below, by peer id; the hub
finds the peer and calls it.  Keeping the registry here, not in the link, is
what lets a peer outlive its connection and a worker hold several links.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp_tornado import wire
from mcp_tornado.admission import Gatekeeper
from mcp_tornado.ice import IceServers
from mcp_tornado.settings import IceSettings

if TYPE_CHECKING:
    from mcp_tornado.peer import Peer
    from mcp_tornado.router_link import RouterLink


class Hub:
    """Every peer of a worker that holds (or asks for) a slot in a room, by id."""

    def __init__(self, gate: Gatekeeper, ice: IceServers | None = None) -> None:
        self.gate = gate
        self.ice = ice if ice is not None else IceServers(IceSettings())  # what joined carries
        self.peers: dict[int, Peer] = {}
        # Peers whose leave the router has not confirmed yet, with the close code
        # (None: echo the client's) their connection closes with once it has.
        self.leaving: dict[int, tuple[Peer, int | None]] = {}
        self._next_id = 1

    link: RouterLink  # set by attach(), before the first peer joins

    def attach(self, link: RouterLink) -> None:
        self.link = link

    # --- what peers call -----------------------------------------------------------

    def join(self, peer: Peer) -> bool:
        """Register ``peer`` and ask the router for a slot in ``peer.room``.

        ``False`` if the router is unavailable (the caller refuses the client
        with a retryable close).  The answer arrives later as ``joined`` or
        ``room_full``; messages relayed meanwhile reach the router after the
        join, in order.
        """
        link = self.link
        if not link.ready:
            return False
        peer_id = self._register(peer)
        link.join(peer_id, peer.room, peer.resumable)
        return True

    def resume(self, peer: Peer, token: str) -> bool:
        """Register ``peer`` and ask the router for the suspended slot ``token`` names.

        Like :meth:`join`: ``False`` if the router is unavailable; the answer
        arrives later as ``resumed`` (then the held messages) or ``resume_refused``.
        """
        link = self.link
        if not link.ready:
            return False
        link.resume(self._register(peer), peer.room, token)
        return True

    def _register(self, peer: Peer) -> int:
        peer_id = self._next_id
        self._next_id += 1
        peer.peer_id = peer_id
        self.peers[peer_id] = peer
        return peer_id

    def relay(self, peer_id: int, payload: bytes) -> bool:
        """Forward a client's frame; ``False``: not accepted, tell the client."""
        return self.link.relay(peer_id, payload)

    def fence(self, peer_id: int, seq: int) -> None:
        if peer_id in self.peers:
            self.link.fence(peer_id, seq)

    def leave(self, peer_id: int, suspend: bool = False) -> None:
        """Forget ``peer_id`` and free its slot; nobody waits for the router's answer.

        ``suspend``: the socket ended without a clean goodbye (a resumable peer
        keeps its slot for its resume grace).
        """
        if self.peers.pop(peer_id, None) is not None:
            self.link.leave(peer_id, suspend)

    def leave_then_close(self, peer_id: int, code: int | None, suspend: bool = False) -> bool:
        """Free ``peer_id``'s slot; close its connection with ``code`` once the router confirms.

        So a client whose closing handshake has completed has left its room,
        and may rejoin at once through any worker.  ``False``: there is no
        router to confirm (or no slot): the caller closes now.
        """
        peer = self.peers.pop(peer_id, None)
        if peer is None or not self.link.leave(peer_id, suspend):
            return False
        self.leaving[peer_id] = (peer, code)
        return True

    # --- what the link reports (mcp_tornado.router_link.LinkListener) ----------------

    def joined(
        self, peer_id: int, room: str, peers: int, initiator: bool, local_partner: int
    ) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            partner = self.peers.get(local_partner) if local_partner else None
            peer.joined(room, peers, initiator, partner)

    def peer_joined(self, peer_id: int, room: str, peers: int, local_partner: int) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            partner = self.peers.get(local_partner) if local_partner else None
            peer.peer_joined(room, peers, partner)

    def peer_left(self, peer_id: int, room: str, peers: int) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.peer_left(room, peers)

    def deliver(self, peer_id: int, payload: bytes) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.connection.send_text(payload)

    def no_peer(self, peer_id: int) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.no_peer()

    def undelivered(self, peer_id: int) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.undelivered()

    def room_full(self, peer_id: int) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is not None:
            peer.room_full()

    def refused(self, peer_id: int) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is not None:
            peer.router_unavailable()  # 1013: try again later (or through another worker)

    def fenced(self, peer_id: int, seq: int) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.fenced(seq)

    def left(self, peer_id: int) -> None:
        leaving = self.leaving.pop(peer_id, None)
        if leaving is not None:
            leaving[0].close(leaving[1])

    def router_lost(self) -> None:
        """Nothing in flight will be answered: finish what waits for the router."""
        leaving, self.leaving = self.leaving, {}
        for peer, code in leaving.values():
            peer.close(code)
        for peer_id, peer in list(self.peers.items()):
            if peer.connection.upgrading:  # its join will never be confirmed
                del self.peers[peer_id]
                peer.router_unavailable()

    def registrations(self) -> list[wire.PeerRecord]:
        """Every peer with its room, for the router to rebuild its table from."""
        return [
            wire.PeerRecord(pid, peer.room, peer.paired, peer.resume)
            for pid, peer in self.peers.items()
        ]

    def registered(self) -> None:
        """The router (re)welcomed this worker: fences sent to one that went away are lost."""
        for peer in list(self.peers.values()):
            peer.fence()

    # --- resume (mcp_tornado.router.suspended) ----------------------------------------

    def resumable(self, peer_id: int, token: str, grace: float) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.resume, peer.resume_grace = token, grace

    def resumed(
        self,
        peer_id: int,
        room: str,
        peers: int,
        initiator: bool,
        token: str,
        grace: float,
        local_partner: int,
    ) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            partner = self.peers.get(local_partner) if local_partner else None
            peer.resumed(room, peers, initiator, token, grace, partner)

    def resume_refused(self, peer_id: int) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is not None:
            peer.resume_refused()

    def peer_reconnecting(self, peer_id: int, room: str) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.peer_reconnecting(room)

    def peer_resumed(self, peer_id: int, room: str, local_partner: int) -> None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            partner = self.peers.get(local_partner) if local_partner else None
            peer.peer_resumed(room, partner)

    def replaced(self, peer_id: int) -> None:
        peer = self.peers.pop(peer_id, None)
        if peer is not None:
            peer.replaced()
