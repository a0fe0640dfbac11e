"""A worker's peers, and the router's answers turned into calls on them.

Usage::

    hub = Hub(gate, IceServers(settings.ice))
    link = RouterLink(settings, hub)   # the link reports to the hub
    hub.attach(link)
    hub.join(peer)                     # a peer asks for its room's slot

With router shards (:mod:`mcp_tornado.shards`) the hub holds one link per shard,
in shard order, each reporting through that shard's :class:`ShardListener`::

    hub = Hub(gate, ice, ShardMap(2))
    for shard in range(2):
        hub.attach(RouterLink(settings, hub.shard_listener(shard), shard=shard))

A peer's join, resume, relays, fences and leave go to the link of its room's
shard; a shard that is down refuses only its own rooms' joins (1013), and its
loss finishes only its own peers' pending work.

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
from mcp_tornado.shards import ShardMap

if TYPE_CHECKING:
    from mcp_tornado.peer import Peer
    from mcp_tornado.router_link import RouterLink


class Hub:
    """Every peer of a worker that holds (or asks for) a slot in a room, by id."""

    def __init__(
        self, gate: Gatekeeper, ice: IceServers | None = None, shards: ShardMap | None = None
    ) -> None:
        self.gate = gate
        self.shards = shards if shards is not None else ShardMap()
        self.links: list[RouterLink] = []  # by shard
        self._link_of: dict[int, RouterLink] = {}  # peer id -> its room's link (several shards)
        self.ice = ice if ice is not None else IceServers(IceSettings())  # what joined carries
        self.peers: dict[int, Peer] = {}
        # Peers whose leave the router has not confirmed yet, with the close code
        # (None: echo the client's) their connection closes with once it has.
        self.leaving: dict[int, tuple[Peer, int | None]] = {}
        self._next_id = 1

    link: RouterLink  # the first attached (shard 0's), set by attach()

    def attach(self, link: RouterLink) -> None:
        """Add the link of the next shard (in shard order), before the first peer joins."""
        if not self.links:
            self.link = link
        self.links.append(link)

    def shard_listener(self, shard: int) -> ShardListener:
        """What shard ``shard``'s link reports to: this hub, for that shard's peers."""
        return ShardListener(self, shard)

    @property
    def ready(self) -> bool:
        """Whether any shard's router takes joins (the worker is ready)."""
        return any(link.ready for link in self.links)

    def link_for(self, room: str) -> RouterLink:
        """The link of ``room``'s shard."""
        links = self.links
        return links[0] if len(links) == 1 else links[self.shards.shard_of(room)]

    def _link(self, peer_id: int) -> RouterLink:
        return self.link if len(self.links) == 1 else self._link_of.get(peer_id, self.link)

    def _pop(self, peer_id: int) -> Peer | None:
        if len(self.links) > 1:
            self._link_of.pop(peer_id, None)
        return self.peers.pop(peer_id, None)

    # --- what peers call -----------------------------------------------------------

    def join(self, peer: Peer) -> bool:
        """Register ``peer`` and ask the router for a slot in ``peer.room``.

        ``False`` if the router is unavailable (the caller refuses the client
        with a retryable close).  The answer arrives later as ``joined`` or
        ``room_full``; messages relayed meanwhile reach the router after the
        join, in order.
        """
        link = self.link_for(peer.room)
        if not link.ready:
            return False
        peer_id = self._register(peer, link)
        link.join(peer_id, peer.room, peer.resumable)
        return True

    def resume(self, peer: Peer, token: str) -> bool:
        """Register ``peer`` and ask the router for the suspended slot ``token`` names.

        Like :meth:`join`: ``False`` if the router is unavailable; the answer
        arrives later as ``resumed`` (then the held messages) or ``resume_refused``.
        """
        link = self.link_for(peer.room)
        if not link.ready:
            return False
        link.resume(self._register(peer, link), peer.room, token)
        return True

    def _register(self, peer: Peer, link: RouterLink) -> int:
        peer_id = self._next_id
        self._next_id += 1
        peer.peer_id = peer_id
        self.peers[peer_id] = peer
        if len(self.links) > 1:
            self._link_of[peer_id] = link
        return peer_id

    def relay(self, peer_id: int, payload: bytes) -> bool:
        """Forward a client's frame; ``False``: not accepted, tell the client."""
        return self._link(peer_id).relay(peer_id, payload)

    def fence(self, peer_id: int, seq: int) -> None:
        if peer_id in self.peers:
            self._link(peer_id).fence(peer_id, seq)

    def leave(self, peer_id: int, suspend: bool = False) -> None:
        """Forget ``peer_id`` and free its slot; nobody waits for the router's answer.

        ``suspend``: the socket ended without a clean goodbye (a resumable peer
        keeps its slot for its resume grace).
        """
        link = self._link(peer_id)
        if self._pop(peer_id) is not None:
            link.leave(peer_id, suspend)

    def leave_then_close(self, peer_id: int, code: int | None, suspend: bool = False) -> bool:
        """Free ``peer_id``'s slot; close its connection with ``code`` once the router confirms.

        So a client whose closing handshake has completed has left its room,
        and may rejoin at once through any worker.  ``False``: there is no
        router to confirm (or no slot): the caller closes now.
        """
        link = self._link(peer_id)
        peer = self._pop(peer_id)
        if peer is None or not link.leave(peer_id, suspend):
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
        peer = self._pop(peer_id)
        if peer is not None:
            peer.room_full()

    def refused(self, peer_id: int) -> None:
        peer = self._pop(peer_id)
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

    def router_lost(self, shard: int | None = None) -> None:
        """Nothing in flight will be answered: finish what waits for the router.

        ``shard``: only that shard's router is gone (None: every router).
        """
        for peer_id, (peer, code) in list(self.leaving.items()):
            if self._ours(shard, peer.room):
                del self.leaving[peer_id]
                peer.close(code)
        for peer_id, peer in list(self.peers.items()):
            # (an upgrading peer's join will never be confirmed)
            if peer.connection.upgrading and self._ours(shard, peer.room):
                self._pop(peer_id)
                peer.router_unavailable()

    def _ours(self, shard: int | None, room: str) -> bool:
        return shard is None or len(self.links) <= 1 or self.shards.shard_of(room) == shard

    def registrations(self, shard: int | None = None) -> list[wire.PeerRecord]:
        """Every peer (of ``shard``) with its room, for the router to rebuild its table from."""
        return [
            wire.PeerRecord(pid, peer.room, peer.paired, peer.resume)
            for pid, peer in self.peers.items()
            if self._ours(shard, peer.room)
        ]

    def registered(self, shard: int | None = None) -> None:
        """The router (re)welcomed this worker: fences sent to one that went away are lost."""
        for peer in list(self.peers.values()):
            if self._ours(shard, peer.room):
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
        peer = self._pop(peer_id)
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
        peer = self._pop(peer_id)
        if peer is not None:
            peer.replaced()


class ShardListener:
    """What one shard's :class:`~mcp_tornado.router_link.RouterLink` reports to: the hub.

    Peer ids are the hub's, unique across shards, so a peer's answers go
    straight to the hub; only what concerns a whole router (its loss, its
    welcome, the peers to re-register with it) is narrowed to ``shard``'s rooms.
    """

    def __init__(self, hub: Hub, shard: int) -> None:
        self.hub = hub
        self.shard = shard
        self.joined = hub.joined
        self.peer_joined = hub.peer_joined
        self.peer_left = hub.peer_left
        self.deliver = hub.deliver
        self.no_peer = hub.no_peer
        self.undelivered = hub.undelivered
        self.room_full = hub.room_full
        self.refused = hub.refused
        self.fenced = hub.fenced
        self.left = hub.left
        self.resumable = hub.resumable
        self.resumed = hub.resumed
        self.resume_refused = hub.resume_refused
        self.peer_reconnecting = hub.peer_reconnecting
        self.peer_resumed = hub.peer_resumed
        self.replaced = hub.replaced

    def registrations(self) -> list[wire.PeerRecord]:
        return self.hub.registrations(self.shard)

    def registered(self) -> None:
        self.hub.registered(self.shard)

    def router_lost(self) -> None:
        self.hub.router_lost(self.shard)
