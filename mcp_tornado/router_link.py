"""A worker's link to one router: a DEALER socket, batched per event-loop turn.

:class:`RouterLink` only speaks the wire (:mod:`mcp_tornado.wire`): it sends
``join``, ``resume``, ``relay``, ``fence`` and ``leave`` (or ``lost``) for peer
ids, and reports what the router answers to a :class:`LinkListener` (the worker's
:class:`~mcp_tornado.hub.Hub`), by peer id.  It holds no peers and builds
nothing a client sees, so a worker can hold several links (one per router
shard) behind one hub.  It also owns the worker's view of the router's
health:

* ``ready`` becomes true when the router answers our :class:`~mcp_tornado.wire.Hello`
  with :class:`~mcp_tornado.wire.Welcome`.
* It becomes false when the router says :class:`~mcp_tornado.wire.Bye`, when
  the connection to it drops (a socket monitor reports it at once), when
  no heartbeat arrived for ``heartbeat_interval * heartbeat_liveness`` seconds,
  or when a heartbeat carries a new router epoch (the router restarted).
* It stays false while the router refuses our map of router shards
  (:class:`~mcp_tornado.wire.WrongShardMap`: its ``--shard``/``--shards`` do
  not match our ``--router`` list; :attr:`RouterLink.refusal` says why).
* While not ready the link re-sends ``Hello`` (listing every live peer and its
  room, so a restarted router rebuilds its table) on every heartbeat tick, and
  callers refuse new joins and messages with a retryable error: nothing is
  accepted that could be silently lost.

With ``gauges`` (a callable returning the worker's current gauges), each
heartbeat also carries the worker's metrics (:meth:`~mcp_tornado.telemetry.
WorkerCounters.report`) and a send time the router echoes, for the round-trip
histogram; its Hello says who the worker is (:class:`~mcp_tornado.wire.WorkerInfo`).

Sends never block the event loop: they are queued and flushed once per loop
turn as one frame.  If the DEALER's high-water mark is reached the batch stays
queued and is retried; the queue is bounded by ``max_backlog`` messages, past
which :meth:`RouterLink.relay` reports the router as overloaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Protocol, cast

import msgspec
import zmq
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.platform.asyncio import BaseAsyncIOLoop
from zmq.utils.monitor import recv_monitor_message

from mcp_tornado import curve, telemetry, wire
from mcp_tornado.settings import LinkSettings
from mcp_tornado.shards import ShardMap

log = logging.getLogger(__name__)


class LinkListener(Protocol):
    """What the link reports the router said, by peer id (implemented by the worker's hub)."""

    def joined(
        self, peer_id: int, room: str, peers: int, initiator: bool, local_partner: int
    ) -> None: ...

    def peer_joined(self, peer_id: int, room: str, peers: int, local_partner: int) -> None: ...

    def peer_left(self, peer_id: int, room: str, peers: int) -> None: ...

    def deliver(self, peer_id: int, payload: bytes) -> None: ...

    def no_peer(self, peer_id: int) -> None: ...

    def undelivered(self, peer_id: int) -> None:
        """A message of this peer was not delivered (the router was away)."""

    def room_full(self, peer_id: int) -> None:
        """The peer's join (or re-registration) was refused: its room is full."""

    def refused(self, peer_id: int) -> None:
        """The router cannot take (or take back) the peer now; its client should retry (1013).

        Its worker holds all the peers the router allows it, or the router had
        dropped the worker and told the peer's partner it left.
        """

    def fenced(self, peer_id: int, seq: int) -> None: ...

    def registrations(self) -> list[wire.PeerRecord]:
        """Every live peer with its room, for a (restarted) router to rebuild its table."""
        ...

    def registered(self) -> None:
        """The router welcomed this worker (again)."""

    def left(self, peer_id: int) -> None:
        """The router has freed the peer's slot (the answer to its leave)."""

    def router_lost(self) -> None:
        """The router is gone (or forgot this worker): nothing in flight will be answered."""

    # --- resume (mcp_tornado.router.suspended) ---

    def resumable(self, peer_id: int, token: str, grace: float) -> None:
        """The peer may resume with ``token`` within ``grace`` s (comes just before ``joined``)."""

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
        """The peer's resume was accepted; what was held for it follows."""

    def resume_refused(self, peer_id: int) -> None: ...

    def peer_reconnecting(self, peer_id: int, room: str) -> None: ...

    def peer_resumed(self, peer_id: int, room: str, local_partner: int) -> None: ...

    def replaced(self, peer_id: int) -> None:
        """The peer's slot was resumed by a newer connection: close this one, without leaving."""


# pyzmq's flags as plain ints: its enums make ``events & POLLIN`` and ``SNDMORE | NOBLOCK``
# Python-level Flag operations, a few microseconds each, on every read and send.
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_HELLO_RETRY = 0.05  # seconds before trying again a Hello that could not be sent


class RouterLink:
    """The worker side of the ZeroMQ hop.  Create it in the running IOLoop, then :meth:`start`."""

    def __init__(
        self,
        config: LinkSettings,
        listener: LinkListener,
        name: str | None = None,
        gauges: telemetry.GaugeSource | None = None,
        max_peers: int = 0,
        shard: int = 0,
        carries_stats: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        # Router shards: this link goes to the ``shard``-th of ``config.endpoints``,
        # and its Hello carries the map they make, which the router checks.
        self.shard = shard
        self.endpoint = config.endpoints[shard]
        self.shard_map = ShardMap(len(config.endpoints)).fingerprint
        self.refusal = ""  # why the router refused us (a wrong map), until it welcomes us
        # With several shards, one link at a time sends the worker's Stats (deltas:
        # sent to several routers, each would count part of them).
        self._carries_stats = carries_stats
        self.max_peers = max_peers  # announced in Hello: the router caps us at it
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.epoch = uuid.uuid4().hex[:12]
        self.ready = False
        self.router_epoch = ""
        self._listener = listener
        self._gauges = gauges
        self._welcomes = 0
        self._outbox: list[wire.ToRouter] = []
        self._flush_scheduled = False
        self._last_heard = 0.0
        self._hello_retry_scheduled = False
        self._hello_due = 0.0  # no new Hello before this (monotonic): one is out
        self._welcomed_once = asyncio.Event()
        self._loop = IOLoop.current()
        # Callbacks of every loop turn go straight to asyncio: Tornado's add_callback
        # costs a get_running_loop() (a getpid() system call), a partial and a wrapper.
        self._asyncio_loop = cast(BaseAsyncIOLoop, self._loop).asyncio_loop
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.name.encode())
        sock.setsockopt(zmq.SNDHWM, config.hwm)
        sock.setsockopt(zmq.RCVHWM, config.hwm)
        # Queue nothing for a router that is not connected: such sends fail at
        # once and we answer the client, instead of replaying stale messages
        # into a router that restarts minutes later.
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.LINGER, 500)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        # CURVE on a tcp:// link (the settings checked the key files at start).
        curve.secure_dealer(
            sock, *curve.link_keys(config.curve_secret_key_file, config.server_key_file(shard))
        )
        self._sock = sock
        self._handshake_log = curve.Throttle()
        self._monitor: zmq.Socket[bytes] = sock.get_monitor_socket(
            zmq.EVENT_DISCONNECTED | curve.HANDSHAKE_FAILURES
        )
        self._heartbeat = PeriodicCallback(self._tick, config.heartbeat_interval * 1000)

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._sock.connect(self.endpoint)
        self._loop.add_handler(self._sock.FD, self._on_readable, IOLoop.READ)
        self._loop.add_handler(self._monitor.FD, self._on_monitor, IOLoop.READ)
        self._heartbeat.start()
        self._tick()

    def close(self) -> None:
        """Say goodbye to the router and close the socket (after flushing what is queued)."""
        self._heartbeat.stop()
        if self.ready:
            self._outbox.append(wire.Bye())
        self._flush()
        self._loop.remove_handler(self._sock.FD)
        self._loop.remove_handler(self._monitor.FD)
        self._sock.disable_monitor()
        self._monitor.close(linger=0)
        self._sock.close(linger=500)
        self.ready = False

    async def wait_ready(self) -> None:
        """Return once the router has welcomed this worker for the first time."""
        await self._welcomed_once.wait()

    @property
    def backlog(self) -> int:
        return len(self._outbox)

    # --- what handlers call --------------------------------------------------

    def join(self, peer_id: int, room: str, resumable: bool = False) -> None:
        """Ask the router for a slot in ``room`` (call only while :attr:`ready`).

        The answer comes later as ``joined`` or ``room_full``; messages relayed
        meanwhile reach the router after the join, in order.  ``resumable``: the
        client asked for a resume token.
        """
        self._queue(wire.Join(peer_id, room, resumable))

    def resume(self, peer_id: int, room: str, token: str) -> None:
        """Ask the router for the suspended slot ``token`` names (call only while :attr:`ready`).

        The answer comes later as ``resumed`` (then what was held) or ``resume_refused``.
        """
        self._queue(wire.Resume(peer_id, room, token))

    def relay(self, peer_id: int, payload: bytes) -> bool:
        """Forward a client's frame.  ``False``: not accepted, tell the client to retry."""
        if not self.ready or len(self._outbox) >= self.config.max_backlog:
            return False
        self._queue(wire.Relay(peer_id, payload))
        return True

    def fence(self, peer_id: int, seq: int) -> None:
        """Ask the router to answer once everything ``peer_id`` sent so far is handled."""
        if self.ready:
            self._queue(wire.Fence(peer_id, seq))

    def leave(self, peer_id: int, suspend: bool = False) -> bool:
        """Free ``peer_id``'s slot; ``False`` if no router will answer (``left``).

        ``suspend``: its socket ended without a clean goodbye, so a resumable
        peer keeps its slot for its resume grace (:class:`~mcp_tornado.wire.Lost`).
        """
        if self.ready:
            self._queue(wire.Lost(peer_id) if suspend else wire.Leave(peer_id))
        return self.ready

    # --- sending -------------------------------------------------------------

    def _queue(self, msg: wire.ToRouter) -> None:
        self._outbox.append(msg)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._asyncio_loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._outbox:
            return
        try:
            self._sock.send(wire.encode_batch(self._outbox), _NOBLOCK)
        except zmq.Again:
            # Router not connected, or its pipe is full: keep the batch, retry shortly.
            self._flush_scheduled = True
            self._loop.call_later(0.002, self._flush)
            return
        except zmq.ZMQError as exc:
            log.error(
                "send to router failed: %s",
                exc,
                extra={
                    "event": "router_send_failed",
                    "error": str(exc),
                    "messages": len(self._outbox),
                },
            )
            return
        self._outbox = []
        self._check_input()

    def _check_input(self) -> None:
        # ZeroMQ's FD is edge-triggered, and a send can consume the wake-up for
        # input that is already waiting: after every send, look for ourselves.
        if not self._sock.closed and cast(int, self._sock.getsockopt(_EVENTS)) & _POLLIN:
            self._asyncio_loop.call_soon(self._on_readable)

    def _send_control(self, msg: wire.ToRouter) -> bool:
        """Send a control message now, outside the batch; ``False``: no router to take it."""
        try:
            self._sock.send(wire.encode_batch([msg]), _NOBLOCK)
        except zmq.Again:
            return False
        finally:
            self._check_input()
        return True

    # --- receiving -----------------------------------------------------------

    def _on_readable(self, fd: object = None, events: int = 0) -> None:
        sock = self._sock
        if sock.closed:
            return
        recv = sock.recv
        for _ in range(1000):
            # Read until zmq.Again: one failed recv per call costs what one EVENTS
            # query does, where asking EVENTS first cost that for every batch.
            try:
                frame = recv(_NOBLOCK)
            except zmq.Again:
                return
            self._last_heard = time.monotonic()
            try:
                batch = wire.decode_to_worker(frame)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning(
                    "dropped a malformed batch from the router: %s",
                    exc,
                    extra={"event": "malformed_batch", "error": str(exc), "bytes": len(frame)},
                )
                continue
            for msg in batch:
                self._dispatch(msg)
        self._asyncio_loop.call_soon(self._on_readable)  # more waiting: let others run first

    def _on_monitor(self, fd: object = None, events: int = 0) -> None:
        # A dropped connection means the router died (or restarts): do not wait
        # for heartbeats to notice, refuse new work now and re-register when it's back.
        lost = False
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            lost = lost or event["event"] == zmq.EVENT_DISCONNECTED
            problem = curve.describe_handshake_failure(
                event["event"], event["value"], self.endpoint
            )
            # One line a minute: ZeroMQ retries the handshake every second.
            if problem is not None and self._handshake_log.ready(event["event"]):
                log.error("%s", problem, extra={"event": "handshake_failed", "reason": problem})
        if lost:
            if self.ready:
                log.warning(
                    "lost the connection to router shard %d (%s)",
                    self.shard,
                    self.endpoint,
                    extra={"event": "router_lost", "reason": "disconnected", "shard": self.shard},
                )
            self._hello_due = 0.0  # a Hello still out went with the connection
            self._lost_router()

    def _dispatch(self, msg: wire.ToWorker) -> None:
        listener = self._listener
        match msg:
            case wire.Deliver():
                listener.deliver(msg.peer, msg.payload)
            case wire.Joined():
                if msg.resume:  # first: the joined event carries the token
                    listener.resumable(msg.peer, msg.resume, msg.resume_grace)
                listener.joined(msg.peer, msg.room, msg.peers, msg.initiator, msg.local_partner)
            case wire.PeerJoined():
                listener.peer_joined(msg.peer, msg.room, msg.peers, msg.local_partner)
            case wire.Fenced():
                listener.fenced(msg.peer, msg.seq)
            case wire.Left():
                listener.left(msg.peer)
            case wire.PeerLeft():
                listener.peer_left(msg.peer, msg.room, msg.peers)
            case wire.NoPeer():
                listener.no_peer(msg.peer)
            case wire.RoomFull():
                if msg.over_cap:
                    listener.refused(msg.peer)
                else:
                    listener.room_full(msg.peer)
            case wire.Ping():
                if msg.sent:  # the echo of one of ours
                    telemetry.counters.router_rtt.observe(time.monotonic() - msg.sent)
                if msg.epoch != self.router_epoch:
                    if self.ready:
                        log.warning(
                            "router shard %d restarted; re-registering",
                            self.shard,
                            extra={
                                "event": "router_lost",
                                "reason": "restarted",
                                "shard": self.shard,
                            },
                        )
                    self._lost_router()
            case wire.Welcome():
                self._welcomed(msg)
            case wire.Reregister():
                for peer_id in msg.undelivered:
                    listener.undelivered(peer_id)
                self._lost_router()
            case wire.Bye():
                log.warning(
                    "router shard %d is shutting down",
                    self.shard,
                    extra={"event": "router_lost", "reason": "bye", "shard": self.shard},
                )
                self._lost_router(hello=False)
            case wire.Resumed():
                listener.resumed(
                    msg.peer,
                    msg.room,
                    msg.peers,
                    msg.initiator,
                    msg.resume,
                    msg.resume_grace,
                    msg.local_partner,
                )
            case wire.ResumeRefused():
                listener.resume_refused(msg.peer)
            case wire.PeerReconnecting():
                listener.peer_reconnecting(msg.peer, msg.room)
            case wire.PeerResumed():
                listener.peer_resumed(msg.peer, msg.room, msg.local_partner)
            case wire.Replaced():
                listener.replaced(msg.peer)
            case wire.WrongShardMap():
                self._refused_map(msg)

    def _welcomed(self, msg: wire.Welcome) -> None:
        for peer_id in msg.rejected:
            self._listener.room_full(peer_id)
        for peer_id in msg.refused:
            self._listener.refused(peer_id)
        if not self.ready:
            log.info(
                "worker %s: registered with router %s (shard %d)",
                self.name,
                msg.epoch,
                self.shard,
                extra={
                    "event": "registered",
                    "worker": self.name,
                    "router": msg.epoch,
                    "rejected": len(msg.rejected),
                    "shard": self.shard,
                },
            )
        self.ready = True
        self.refusal = ""
        self._welcomes += 1
        self.router_epoch = msg.epoch
        self._welcomed_once.set()
        self._listener.registered()  # fences sent to a router that went away are never answered

    def _refused_map(self, msg: wire.WrongShardMap) -> None:
        """The router at our shard's endpoint has another map: stay unregistered, say why."""
        refusal = (
            f"router shard {self.shard} ({self.endpoint}) refused this worker: it is shard "
            f"{msg.shard} of map {msg.expected}, this worker's map is {self.shard_map} "
            f"({len(self.config.endpoints)} --router endpoints); give every worker the same "
            "ordered --router list, and each router its --shard and --shards"
        )
        if refusal != self.refusal:  # (its Hello is retried once per liveness window)
            log.error(
                "%s",
                refusal,
                extra={
                    "event": "wrong_shard_map",
                    "shard": self.shard,
                    "theirs": msg.expected,
                    "ours": self.shard_map,
                },
            )
        self.refusal = refusal
        self._lost_router(hello=False)

    def _lost_router(self, hello: bool = True) -> None:
        was_ready, self.ready = self.ready, False
        self.router_epoch = ""
        outbox, self._outbox = self._outbox, []
        for msg in outbox:
            if type(msg) is wire.Relay:
                self._listener.undelivered(msg.peer)
            elif type(msg) is wire.Stats:
                telemetry.counters.unreport(msg)  # the next router gets them
        if was_ready:
            self._hello_due = 0.0  # a new episode: register again at once
            self._listener.router_lost()
        if hello:
            self._send_hello()

    def _send_hello(self) -> None:
        """Ask the router to (re)register us, unless a Hello it can still answer is out.

        A woken worker's stale batches each earn a ``Reregister``; answering each
        with a full Hello made storms of them, so one Hello goes per episode, and
        another only if no Welcome came within a heartbeat interval.
        """
        now = time.monotonic()
        if now < self._hello_due:
            return
        info = telemetry.worker_info(self._welcomes) if self._gauges is not None else None
        hello = wire.Hello(self._listener.registrations(), info, self.max_peers, self.shard_map)
        sent = self._send_control(hello)
        # Not sent: no router is connected yet (IMMEDIATE), so try again soon.  Sent:
        # a live router answers it, however busy we both are; ask again only after
        # the liveness window (a lost connection is reported sooner, by the monitor).
        cfg = self.config
        wait = cfg.heartbeat_interval * cfg.heartbeat_liveness if sent else _HELLO_RETRY
        self._hello_due = now + wait
        if not self._hello_retry_scheduled:
            self._hello_retry_scheduled = True
            self._loop.call_later(wait, self._retry_hello)

    def _retry_hello(self) -> None:
        self._hello_retry_scheduled = False
        if not self.ready and not self._sock.closed:
            self._send_hello()

    # --- heartbeats ----------------------------------------------------------

    def _tick(self) -> None:
        # Read what the router sent first: on a busy worker its heartbeat may be
        # waiting in the socket, which is no reason to declare it dead.
        self._on_readable()
        now = time.monotonic()
        cfg = self.config
        if self.ready and now - self._last_heard > cfg.heartbeat_interval * cfg.heartbeat_liveness:
            log.warning(
                "no heartbeat from router shard %d; marking it unavailable",
                self.shard,
                extra={"event": "router_lost", "reason": "heartbeat", "shard": self.shard},
            )
            self._lost_router(hello=False)
        if self.ready:
            if self._gauges is not None:
                if self._carries_stats is None or self._carries_stats():
                    self._queue(telemetry.counters.report(self._gauges()))
                self._queue(wire.Ping(self.epoch, time.monotonic()))
            else:
                self._queue(wire.Ping(self.epoch))
        else:
            self._send_hello()
        self._check_input()
        self._on_monitor()  # its FD is edge-triggered too: never rely on it alone
