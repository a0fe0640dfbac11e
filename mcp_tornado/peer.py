"""A signaling peer: one client in one room, behind a WebSocket connection.

A :class:`Peer` is the :class:`~mcp_tornado.connection.Handler` of a
connection to ``/ws/signal/``.  It holds what belongs to the client rather
than to its socket: its room and its id with the router, its rate limit, what
to do when it stops reading, and, when its partner is on this worker too, the
local pair and its fence.  It talks to the router only through the worker's
:class:`~mcp_tornado.hub.Hub`, which also brings it the router's answers as
calls (``joined``, ``deliver``, ``peer_left``...).  Everything a client is
told is built from :mod:`mcp_tornado.protocol` here, in one place.

:class:`SignalEndpoint` admits connections (connection cap, Host, origins) and
gives each accepted one a new peer.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, ClassVar, Final

import msgspec

from mcp_tornado import handshake, protocol, telemetry
from mcp_tornado.admission import Gatekeeper, Refusal, wants_resume
from mcp_tornado.capacity import TOO_MANY_FROM_IP
from mcp_tornado.connection import REFUSED_CLOSE_WAIT, Connection, WriteScheduler
from mcp_tornado.origins import HostPolicy
from mcp_tornado.proxies import TrustedProxies
from mcp_tornado.ratelimit import CLOSE, DROP_AND_WARN, TokenBucket
from mcp_tornado.telemetry import counters
from mcp_tornado.websocket import MAX_FRAGMENTS

if TYPE_CHECKING:
    from mcp_tornado.hub import Hub

log = logging.getLogger(__name__)

MAX_HELD = 1000  # messages held for a fence; more are refused as undelivered

_CROSS_ORIGIN = handshake.Rejection(403, "Cross origin websockets not allowed")
_TOO_MANY_FROM_CLIENT = handshake.Rejection(429, TOO_MANY_FROM_IP, (("Retry-After", "5"),))
_UNKNOWN_HOST = handshake.Rejection(
    421, "Host not allowed: reach this server by a name in --allowed-host"
)
_RATE_LIMITED_EVENT = protocol.event_frame(
    protocol.Error(protocol.ErrorCode.RATE_LIMITED, "Too many messages; slow down")
)
_BINARY_EVENT = protocol.event_frame(
    protocol.Error(protocol.ErrorCode.INVALID_MESSAGE, "Binary frames must hold UTF-8 JSON")
)
_ROOM_FULL = protocol.ROOM_FULL_EVENT.encode()
_CANDIDATE = protocol.CANDIDATE
_LEAVE = protocol.LEAVE
# The relay's counters, bound once: [kind * 2 + path] (path 0: local, 1: through the router).
_RELAYED = counters.relayed
_RELAYED_BYTES = counters.relayed_bytes
assert (telemetry.LOCAL, telemetry.ROUTED) == (0, 1)
_NO_PEER = protocol.NO_PEER_EVENT.encode()
_PEER_GONE = protocol.PEER_GONE_EVENT.encode()
_UNDELIVERED = protocol.UNDELIVERED_EVENT.encode()
_ROUTER_UNAVAILABLE = protocol.ROUTER_UNAVAILABLE_EVENT.encode()
_INVALID_RESUME = protocol.INVALID_RESUME_EVENT.encode()
# A client's Close frame with one of these codes (1005: it carried none) is a goodbye:
# its slot is freed at once even when it could resume.  Any other code suspends it.
_CLEAN_CLOSES: Final = frozenset({1000, 1001, 1005})


class SignalEndpoint:
    """The signaling endpoint of a worker: admits upgrades and makes a :class:`Peer` for each."""

    __slots__ = (
        "gate",
        "hosts",
        "hub",
        "max_backlog",
        "max_fragments",
        "max_message_size",
        "proxies",
        "writes",
    )

    def __init__(
        self,
        hub: Hub,
        gate: Gatekeeper,
        max_message_size: int,
        hosts: HostPolicy | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.hub = hub
        self.gate = gate
        self.proxies = proxies  # whose X-Forwarded-For/Forwarded names the client
        # None: the defaults of a server whose --host is a wildcard (IPs and localhost)
        self.hosts = hosts if hosts is not None else HostPolicy((), "", gate.limits.allowed_origins)
        self.max_message_size = max_message_size
        self.max_fragments: int | None = MAX_FRAGMENTS
        self.max_backlog = gate.limits.max_pending_bytes
        self.writes = WriteScheduler()

    def accept(
        self, connection: Connection, request: handshake.Upgrade
    ) -> Peer | handshake.Rejection:
        # (--max-connections is enforced at accept, for every connection: capacity.py)
        proxies = self.proxies
        if proxies:  # behind a trusted proxy: the client it names counts, from now on
            peer = connection.peer_ip()
            if proxies.trusts(peer):
                client = proxies.client(peer, request.forwarded_for, request.forwarded)
                connection.client_ip = client
                slot = connection.slot
                if slot is not None and not slot.claim(client):
                    counters.refused[telemetry.PER_IP] += 1
                    return _TOO_MANY_FROM_CLIENT
        gate = self.gate
        if not self.hosts.allows(request.host):  # DNS rebinding: a name that is not ours
            counters.refused[telemetry.HOST] += 1
            return _UNKNOWN_HOST
        if request.origin is not None and not gate.origins.allows(request.origin, request.host):
            counters.refused[telemetry.ORIGIN] += 1
            return _CROSS_ORIGIN
        gate.connections += 1
        if wants_resume(request.query):
            return ResumablePeer(self.hub, connection)
        return Peer(self.hub, connection)

    def released(self, connection: Connection) -> None:
        self.gate.connections -= 1


class Peer:
    """One client of the signaling endpoint: its room, its limits, its partner."""

    __slots__ = (
        "_closing",
        "_fence_seq",
        "_held",
        "bucket",
        "connection",
        "hub",
        "paired",
        "paired_at",
        "partner",
        "peer_id",
        "resume",
        "resume_grace",
        "room",
    )

    resumable: ClassVar[bool] = False  # asked for resume (see ResumablePeer)

    def __init__(self, hub: Hub, connection: Connection) -> None:
        self.hub = hub
        self.connection = connection
        self.room = protocol.DEFAULT_ROOM
        self.peer_id: int | None = None  # set while it holds (or asks for) a slot in its room
        self.paired = False  # whether the router last said it has a partner
        # The other peer of the room when it is a peer of this worker too:
        # messages then go to it directly once a fence confirmed that the ones
        # already routed through the router have arrived (see pair_locally).
        self.partner: Peer | None = None
        self._held: list[bytes] | None = None  # messages held while a fence is out
        self._fence_seq = 0
        self.bucket: TokenBucket | None = None
        self._closing = False  # it left its room and waits for the router to confirm
        # When its pair formed (monotonic), until it relays the answer: the call set-up
        # time is measured on the answerer's worker.  0.0: no set-up being timed.
        self.paired_at = 0.0
        self.resume = ""  # its resume token from the router: while set, a drop suspends it
        self.resume_grace = 0.0

    # --- the connection's events (mcp_tornado.connection.Handler) ---------------

    def opened(self, request: handshake.Upgrade) -> None:
        gate = self.hub.gate
        admission = gate.admit(request.query)
        if isinstance(admission, Refusal):
            token = admission.close_code == protocol.CloseCode.INVALID_TOKEN
            counters.refused[telemetry.TOKEN if token else telemetry.ROOM_NAME] += 1
            counters.error(msgspec.json.decode(admission.event, type=protocol.Error).code)
            self.refuse(admission.event.encode(), admission.close_code)
            return
        self.room = admission.room
        self.bucket = gate.bucket(time.monotonic())
        # The 101 waits for the router's answer (joined or room_full; resumed or
        # refused): once a client's socket is open, it is in its room.
        if admission.resume:
            if not self.hub.resume(self, admission.resume):
                self.router_unavailable()
        elif not self.hub.join(self):
            self.router_unavailable()

    def message_received(self, data: bytes, text: bool) -> None:
        if self.peer_id is None:
            return
        if not text:
            try:
                data.decode()
            except UnicodeDecodeError:
                if not self._count_frame():
                    counters.error(protocol.ErrorCode.INVALID_MESSAGE)
                    self.send(_BINARY_EVENT)
                return
        if self._count_frame():
            return
        kind = protocol.client_frame_kind(data)
        if not isinstance(kind, int):
            counters.error(kind.code)
            self.send(protocol.event_frame(kind))
            return
        if kind != _CANDIDATE:  # (candidates, the bulk, skip this)
            self._signaled(kind)
        if self.partner is None:
            if self._route(data):
                _RELAYED[kind * 2 + 1] += 1
                _RELAYED_BYTES[1] += len(data)
            return
        if self._held is None:  # the fence is behind us
            self.partner.send(data)
        elif len(self._held) < MAX_HELD:
            self._held.append(data)
        else:  # routing it would overtake the held ones
            self._undelivered()
            return
        _RELAYED[kind * 2] += 1
        _RELAYED_BYTES[0] += len(data)

    def _signaled(self, kind: int) -> None:
        """An offer, answer or leave is relayed (its kind from the one decode of the frame).

        The call set-up ends with the first answer after the pair formed; an offerer's ends.
        """
        if kind == _LEAVE:
            self._said_goodbye()
            return
        if self.paired_at and kind == protocol.ANSWER:
            counters.call_setup.observe(time.monotonic() - self.paired_at)
        self.paired_at = 0.0

    def _said_goodbye(self) -> None:
        """The client relayed a ``leave``: a plain peer has nothing to remember of it."""

    def ping_received(self, data: bytes) -> None:
        # Pings are frames too, and each costs a pong: rate-limit them first.
        if not self._count_frame():
            self.connection.pong(data)

    def frames_received(self, count: int) -> None:
        # Fragments and pongs cost parsing too: charged like messages (nothing to drop).
        if self.bucket is None or self.peer_id is None:
            return
        verdict = self.bucket.take_many(time.monotonic(), count)
        if verdict:
            counters.rate_limited += count
        if verdict == DROP_AND_WARN:
            self._warn_rate_limited()
        elif verdict == CLOSE:
            self._warn_rate_limited()
            self.end(protocol.CloseCode.RATE_LIMITED)

    def close_received(self) -> None:
        # Our echo goes once the router has freed (or suspended) the slot.
        if self.resume:
            code = self.connection.client_close_code()
            self.end(None, suspend=code is not None and code not in _CLEAN_CLOSES)
        else:
            self.end(None)

    def stalled(self) -> None:
        # It stopped reading: drop it rather than buffer without bound.
        code = int(protocol.CloseCode.TOO_SLOW)
        log.info(
            "dropping a client that stopped reading (room %r)",
            self.room,
            extra={"event": "slow_reader_dropped", **self._facts(), "code": code},
        )
        counters.slow_readers += 1
        self.end(code)

    def connection_lost(self) -> None:
        # No handshake to complete: nobody waits for the router.  No goodbye came
        # either, so a resumable peer is suspended (keeps its slot for its resume).
        suspend = bool(self.resume)
        if log.isEnabledFor(logging.DEBUG) and self.peer_id is not None:
            log.debug(
                "peer %d gone without a closing handshake (room %r)",
                self.peer_id,
                self.room,
                extra={"event": "peer_lost", **self._facts(), "suspended": suspend},
            )
        self._leave_room(suspend=suspend)

    def _facts(self) -> dict[str, object]:
        """What log lines about this peer say about it."""
        return {"room": self.room, "peer": self.peer_id, "client": self.connection.remote_ip()}

    # --- sending ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send a text frame holding ``data`` (UTF-8) to the client."""
        self.connection.send_text(data)

    def refuse(self, event: bytes, close_code: int) -> None:
        """Send ``event`` (an error frame), then close with ``close_code``; it holds no slot.

        Its place in the worker's connection caps is given back at once, and it
        has :data:`~mcp_tornado.connection.REFUSED_CLOSE_WAIT` to answer the close.
        """
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "refused a peer of room %r with %d",
                self.room,
                close_code,
                extra={"event": "peer_refused", **self._facts(), "code": close_code},
            )
        self.send(event)
        self._leave_room()
        self._closing = False
        connection = self.connection
        connection.close(close_code, protocol.close_reason(close_code), REFUSED_CLOSE_WAIT)
        connection.release()

    def router_unavailable(self) -> None:
        counters.joins[telemetry.JOIN_ROUTER_UNAVAILABLE] += 1
        counters.error(protocol.ErrorCode.ROUTER_UNAVAILABLE)
        self.refuse(_ROUTER_UNAVAILABLE, protocol.CloseCode.TRY_AGAIN_LATER)

    def end(self, code: int | None, suspend: bool = False) -> None:
        """Leave the room, then close with ``code`` (``None``: echo the client's).

        The close frame waits until the router has freed the slot
        (:meth:`~mcp_tornado.hub.Hub.leave_then_close`), so a client whose
        closing handshake has completed has left its room at the router.
        ``suspend``: a resumable peer keeps its slot for its resume instead.
        """
        if self._closing:
            return  # the router's answer will close it
        if log.isEnabledFor(logging.DEBUG) and self.peer_id is not None:
            log.debug(
                "peer %d leaves room %r (%s)",
                self.peer_id,
                self.room,
                "the client closed" if code is None else f"closing with {code}",
                extra={"event": "peer_left", **self._facts(), "code": code},
            )
        peer_id, self.peer_id = self.peer_id, None
        # The leave goes first: a local partner's held messages, routed next, must
        # find the slot suspended (and be held) or freed (and be answered no_peer).
        closing = peer_id is not None and self.hub.leave_then_close(peer_id, code, suspend)
        self._drop_partner()
        if closing:
            self._closing = True
        else:
            self.close(code)

    def close(self, code: int | None) -> None:
        """Close the connection now with ``code`` (``None``: echo the client's)."""
        self._closing = False
        self.connection.close(code, protocol.close_reason(code) if code is not None else "")

    def _route(self, data: bytes) -> bool:
        """Relay ``data`` through the router; ``False``: refused (the client is told)."""
        if self.peer_id is None or not self.hub.relay(self.peer_id, data):
            self._undelivered()
            return False
        return True

    def _undelivered(self) -> None:
        counters.error(protocol.ErrorCode.ROUTER_UNAVAILABLE)
        self.send(_UNDELIVERED)

    def _count_frame(self) -> bool:
        """Take a frame from the rate limit; ``True`` if it must be dropped."""
        if self.bucket is None or self.peer_id is None:
            return False
        verdict = self.bucket.take(time.monotonic())
        if verdict:
            counters.rate_limited += 1
        if verdict == DROP_AND_WARN:
            self._warn_rate_limited()
        elif verdict == CLOSE:
            self._warn_rate_limited()
            self.end(protocol.CloseCode.RATE_LIMITED)
        return verdict != 0

    def _warn_rate_limited(self) -> None:
        counters.error(protocol.ErrorCode.RATE_LIMITED)
        self.send(_RATE_LIMITED_EVENT)

    def _leave_room(self, suspend: bool = False) -> None:
        """Give up the room slot (if it holds one) and tell a local partner."""
        peer_id, self.peer_id = self.peer_id, None
        if peer_id is not None:
            self.hub.leave(peer_id, suspend)
        self._drop_partner()

    def _drop_partner(self) -> None:
        partner, self.partner = self.partner, None
        if partner is not None:
            partner._partner_left()

    # --- the router's answers (called by the hub) -------------------------------

    def joined(self, room: str, peers: int, initiator: bool, local_partner: Peer | None) -> None:
        self.paired = initiator
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "peer %s joined room %r (%d peers)",
                self.peer_id,
                room,
                peers,
                extra={"event": "peer_joined", **self._facts(), "peers": peers},
            )
        counters.joins[telemetry.JOIN_OK] += 1
        if initiator:
            self.paired_at = time.monotonic()
        self.connection.complete_upgrade()  # the socket opens now that it is in the room
        ice_servers = self.hub.ice.for_peer()  # fresh TURN credentials for each join
        if self.resume:
            event = protocol.Joined(
                room, peers, initiator, ice_servers, self.resume, self.resume_grace
            )
        else:
            event = protocol.Joined(room, peers, initiator, ice_servers)
        self.send(protocol.event_frame(event))
        if local_partner is not None:
            self.pair_locally(local_partner)

    def peer_joined(self, room: str, peers: int, local_partner: Peer | None) -> None:
        self.paired = True
        self.paired_at = time.monotonic()
        self.send(protocol.event_frame(protocol.PeerJoined(room, peers)))
        if local_partner is not None:
            self.pair_locally(local_partner)

    def peer_left(self, room: str, peers: int) -> None:
        self.paired = False
        self.paired_at = 0.0
        self.send(_PEER_GONE)
        self.send(protocol.event_frame(protocol.PeerLeft(room, peers)))

    def no_peer(self) -> None:
        counters.no_peer += 1
        self.send(_NO_PEER)

    def undelivered(self) -> None:
        self._undelivered()

    def room_full(self) -> None:
        counters.joins[telemetry.JOIN_ROOM_FULL] += 1
        counters.error(protocol.ErrorCode.ROOM_FULL)
        self.refuse(_ROOM_FULL, protocol.CloseCode.ROOM_FULL)

    # --- resume (mcp_tornado.router.suspended) ----------------------------------------

    def resumed(
        self,
        room: str,
        peers: int,
        initiator: bool,
        token: str,
        grace: float,
        local_partner: Peer | None,
    ) -> None:
        """It has its slot back; the messages held for it follow (as ``deliver``)."""
        self.resume, self.resume_grace = token, grace
        self.paired = peers > 1
        self.connection.complete_upgrade()
        ice_servers = self.hub.ice.for_peer()  # fresh TURN credentials, as for a join
        event = protocol.Resumed(room, peers, initiator, token, grace, ice_servers)
        self.send(protocol.event_frame(event))
        if local_partner is not None:
            self.pair_locally(local_partner)

    def resume_refused(self) -> None:
        counters.error(protocol.ErrorCode.INVALID_RESUME)
        self.refuse(_INVALID_RESUME, protocol.CloseCode.INVALID_RESUME)

    def peer_reconnecting(self, room: str) -> None:
        # Still paired: if the router restarts meanwhile, the partner is claimed as
        # paired and, when it does not come back, this peer is told it left.
        self.send(protocol.event_frame(protocol.PeerReconnecting(room)))

    def peer_resumed(self, room: str, local_partner: Peer | None) -> None:
        self.paired = True
        self.send(protocol.event_frame(protocol.PeerResumed(room)))
        if local_partner is not None:
            self.pair_locally(local_partner)

    def replaced(self) -> None:
        """Its slot now belongs to a newer connection that resumed it: close, without leaving."""
        self.peer_id = None
        self.resume = ""
        self._drop_partner()
        self.close(protocol.CloseCode.REPLACED)

    # --- a partner on this worker --------------------------------------------------

    def pair_locally(self, partner: Peer) -> None:
        """The router paired us with ``partner``, a peer of this worker too.

        Both fence (:class:`~mcp_tornado.wire.Fence`): messages sent until the
        router answers are held, then go to the partner directly, as does
        everything after.
        """
        if self.partner is not None or partner.partner is not None:
            return  # the second notice of the pair
        if self.peer_id is None or partner.peer_id is None:
            return  # one of them left already
        self.partner, partner.partner = partner, self
        for peer in (self, partner):
            peer._held = []
            peer.fence()

    def fence(self) -> None:
        """(Re)send this peer's fence, if one is out (also after the router came back)."""
        if self._held is not None and self.peer_id is not None:
            self._fence_seq += 1
            self.hub.fence(self.peer_id, self._fence_seq)

    def fenced(self, seq: int) -> None:
        """The router has handled everything sent before fence ``seq``: go direct."""
        held, partner = self._held, self.partner
        if held is None or partner is None or seq != self._fence_seq:
            return  # an older fence, or the partner left meanwhile
        self._held = None
        for message in held:
            partner.send(message)

    def _partner_left(self) -> None:
        self.partner = None
        held, self._held = self._held, None
        for message in held or ():  # through the router, which says the peer is gone
            self._route(message)


class ResumablePeer(Peer):
    """A peer whose client asked for resume (``?resumable=1``, or ``?resume=TOKEN``).

    A resumable peer that relays ``{"type":"leave"}`` said goodbye (the kind
    comes from the one decode every frame gets): it forgets its token, and its
    socket's end then frees its slot at once instead of suspending it.
    """

    __slots__ = ()

    resumable: ClassVar[bool] = True

    def _said_goodbye(self) -> None:
        self.resume = ""
