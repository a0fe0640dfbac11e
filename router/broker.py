"""The router's loop: a ZeroMQ ROUTER socket that every worker's DEALER connects to.

Read it top to bottom in :meth:`Router.run`: poll, read every batch that is
waiting, apply each message to the :class:`~mcp_tornado.router.rooms.RoomTable`, send each
worker one batch of replies, then do the heartbeat bookkeeping.  It is a plain
blocking loop on purpose: on this kind of machine it moves nearly twice the
round trips of an asyncio loop.

Reliability rules the loop enforces:

* ``ROUTER_MANDATORY`` is set, so a full pipe to a worker raises instead of
  silently dropping.  The batch is kept and the loop stops reading new input
  until it goes out (back-pressure reaches the workers through their own
  high-water marks).  A worker that stays unwritable past its liveness window
  is treated as dead.
* Heartbeats both ways (:class:`~mcp_tornado.wire.Ping`): a worker not heard
  from for ``heartbeat_interval * heartbeat_liveness`` seconds (hung) is
  dropped and the partners of its peers are told.  A worker that *died* is
  found sooner: a socket monitor reports the dropped connection, the router
  pings every worker at once, and the one ZeroMQ can no longer route to
  (``EHOSTUNREACH``) is dropped within milliseconds.
* After a start (or restart) the router spends up to ``resync_grace`` seconds
  accepting :class:`~mcp_tornado.wire.Hello` re-registrations before it admits
  new joins, so peers that survived a router crash win their rooms back before
  newcomers take them.  Joins that arrive meanwhile are held, in order, not
  refused.  Resync conflicts (three peers claiming one room) are settled first
  come, first served; the losers are listed in ``Welcome.rejected``.
* Malformed batches are logged and dropped: no worker input can crash it.
* Resume (:mod:`mcp_tornado.router.suspended`): a resumable peer whose socket
  dropped, or whose worker died or was dropped, is suspended, not freed: its
  slot moves to the pseudo-worker :data:`~mcp_tornado.router.suspended.SUSPENDED`,
  whose outbox is held instead of sent (:meth:`Router._flush`), and the partner
  is told ``PeerReconnecting``.  A :class:`~mcp_tornado.wire.Resume` from any
  worker moves the slot back to a real peer, with what was held.  All of this
  happens on connect, close and suspension; relaying is untouched.

Metrics (:mod:`mcp_tornado.router.telemetry`): workers' :class:`~mcp_tornado.wire.Stats`
are folded into :attr:`Router.telemetry`, which each heartbeat publishes for
``/metrics`` with the totals of :attr:`Router.resumes`; a worker's Ping that
carries a send time is echoed at once (its round trip); a
:class:`~mcp_tornado.wire.Query` from a socket that is not a worker
(``mcp-tornado status``) is answered with :class:`~mcp_tornado.wire.Status`
without registering it.

* Router shards (:mod:`mcp_tornado.shards`): a router started with ``--shard I
  --shards N`` owns the rooms of its slots only.  A worker whose ``Hello``
  carries another map is answered :class:`~mcp_tornado.wire.WrongShardMap` and
  not registered; a join (or a re-registered peer) of a room outside its slots
  is refused like a join over the cap (1013).

* On tcp:// the socket is a CurveZMQ server that accepts only the workers whose
  keys are in ``--curve-allowed-dir`` (:mod:`mcp_tornado.curve`), and one
  worker holds at most ``--max-peers-per-worker`` peers (fewer if it announced
  a smaller ``--max-connections``).  A worker it dropped (hung, partitioned)
  that comes back after the grace has its paired peers refused
  (``Welcome.refused``): their partners were told they left.  Its resumable
  peers were suspended instead (their partners were told they are
  reconnecting): while their resume grace lasts it takes them back.

* A *late* re-registration: a worker's first ``Hello`` to this router after
  the resync grace (a slow reconnect backoff, a partition that healed late, a
  worker that hung across a router restart).  Every peer is told, nobody is
  resurrected, a room never holds three:

  - a peer it lists as **paired** in an empty room takes its slot and waits
    ``resync_grace`` seconds (from that Hello) for its partner, whose worker may
    be late too: a paired peer of another late Hello meanwhile becomes its
    partner again, and neither is told anything.  When the wait ends alone it
    is told ``PeerLeft`` (its client gets ``leave`` + ``peer-left``); a
    newcomer that joins its room meanwhile ends the wait at once (``PeerLeft``,
    then ``PeerJoined``: the newcomer makes the offer);
  - a peer it lists as **paired** in a room held by anyone else (a partner
    already told its partner left, or a peer that never was its partner) is
    refused (``Welcome.refused``, the worker closes it with 1013): it cannot
    quietly become someone's partner; its client reconnects and joins afresh;
  - a peer it lists **alone** takes its slot only in an empty room; in a room
    held by someone it is refused the same way (both clients would think they
    are alone, and nobody would make the offer).

  A worker the router dropped is judged the same way, except that all its
  paired peers are refused (their partners were told at the drop).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
import uuid
from types import FrameType
from typing import TypeAlias

import msgspec
import zmq
from zmq.utils.monitor import recv_monitor_message

from mcp_tornado import curve, logs, wire
from mcp_tornado.router.rooms import Departure, PeerKey, RoomTable
from mcp_tornado.router.suspended import SUSPENDED, ResumeBook
from mcp_tornado.router.telemetry import RouterTelemetry
from mcp_tornado.settings import RouterSettings
from mcp_tornado.shards import ShardMap

log = logging.getLogger(__name__)

# pyzmq's flags as plain ints: its enums make ``SNDMORE | NOBLOCK`` and the like
# Python-level Flag operations, a few microseconds each, on every read and send.
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE_NOBLOCK = int(zmq.SNDMORE) | int(zmq.NOBLOCK)
_MAX_BATCH = 512  # messages in one batch to a worker; more go in further batches
_BIG_PAYLOAD = 8 * 1024  # a payload this large is sent at once instead of batched
_FORGET_DROPPED = 3600.0  # seconds a dropped worker's name is remembered (see _hello)
_PROBE_INTERVAL = 0.02  # seconds between extra pings after a worker's connection dropped


_Parkable: TypeAlias = wire.Join | wire.Relay | wire.Leave | wire.Fence | wire.Lost | wire.Resume


def _name(worker: bytes) -> str:
    """A worker's routing id (its name, ``host-pid-id``) for a log line."""
    return worker.decode(errors="replace")


class _Worker:
    __slots__ = ("last_seen", "max_peers", "refused", "registered", "stalled_since")

    def __init__(self, now: float, max_peers: int) -> None:
        self.last_seen = now
        self.stalled_since = 0.0
        self.max_peers = max_peers  # peers it may hold (see Router._hello)
        self.registered = False  # its first Hello was handled
        # Peers refused in a Welcome: its Hellos sent before it heard that (queued
        # behind a partition) still list them, and must not bring them back.
        self.refused: set[int] = set()


class Router:
    """Owns the room table and answers every worker.

    Usage::

        Router(RouterSettings(bind="ipc:///run/mcp/router.ipc")).run()  # until SIGTERM

    ``run`` installs SIGTERM/SIGINT handlers when called in the main thread;
    :meth:`stop` ends the loop from elsewhere.
    """

    def __init__(self, config: RouterSettings) -> None:
        self.config = config
        self.epoch = uuid.uuid4().hex[:12]
        self.rooms = RoomTable()
        # The rooms this router owns (mcp_tornado.shards); workers must hold the same map.
        self.shards = ShardMap(config.shards, config.shard)
        self.telemetry = RouterTelemetry()
        self.resumes = ResumeBook(
            config.resume_grace, config.resume_hold_messages, config.resume_hold_bytes
        )
        self._workers: dict[bytes, _Worker] = {}
        self._outbox: dict[bytes, list[wire.ToWorker]] = {}
        self._pending: dict[bytes, list[bytes]] = {}  # batches a full pipe refused, in order
        self._claimed_paired: set[PeerKey] = set()
        # Paired peers of a late Hello waiting alone for their partner, with when the
        # wait ends (in order: the wait is the same for all).  See _hello.
        self._late_claims: dict[PeerKey, float] = {}
        self._unreachable: set[bytes] = set()
        # Workers this router dropped (hung, partitioned), with when: see _hello.
        self._dropped: dict[bytes, float] = {}
        # Messages set aside, in order, with what their peers send next: joins
        # while the resync grace lasts, and a join that found its room full,
        # until everything then waiting has been read (see _join).
        self._parked: list[tuple[bytes, _Parkable, bool]] = []  # (worker, msg, refused once)
        self._parked_peers: set[PeerKey] = set()
        self._grace_until = 0.0
        self._in_grace = True
        self._stopping = False
        self._ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._sock: zmq.Socket[bytes] | None = None
        self._security: curve.RouterSecurity | None = None
        self._log_throttle = curve.Throttle()
        self.bound_endpoint = ""

    # --- lifecycle -----------------------------------------------------------

    def stop(self) -> None:
        self._stopping = True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info(
            "router: signal %d, shutting down",
            signum,
            extra={"event": "stopping", "signal": signum},
        )
        self.stop()

    def bind(self) -> zmq.Socket[bytes]:
        """Create and bind the ROUTER socket (done by :meth:`run` if not called first)."""
        if self._sock is None:
            if self.config.curve_secret_key_file is not None:
                # A context of its own: ZeroMQ takes one ZAP handler per context, and
                # a process may hold several routers (tests do).
                self._ctx = zmq.Context()
            sock: zmq.Socket[bytes] = self._ctx.socket(zmq.ROUTER)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.setsockopt(zmq.SNDHWM, self.config.hwm)
            sock.setsockopt(zmq.RCVHWM, self.config.hwm)
            sock.setsockopt(zmq.LINGER, 1000)
            cfg = self.config
            try:  # CURVE server when keys are set (mcp_tornado/curve.py); ValueError: bad keys
                self._security = curve.secure_router(
                    sock, cfg.curve_secret_key_file, cfg.curve_allowed_dir
                )
                sock.bind(cfg.bind)
            except BaseException:
                self._close_security()
                sock.close(linger=0)
                raise
            self.bound_endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            self._sock = sock
        return self._sock

    def run(self) -> None:
        sock = self.bind()
        try:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        except ValueError:  # not the main thread: the caller stops us with stop()
            pass
        cfg = self.config
        now = time.monotonic()
        self._grace_until = now + cfg.resync_grace
        next_beat = now
        probes = 0
        log.info(
            "router %s listening on %s (%s; %s; %s)",
            self.epoch,
            self.bound_endpoint,
            curve.describe_router_link(cfg.bind, cfg.curve_allowed_dir, cfg.insecure),
            curve.support_line(),
            self.shards.describe(),
            extra={
                "event": "listening",
                "router": self.epoch,
                "endpoint": self.bound_endpoint,
                "shard": self.shards.index,
                "shard_map": self.shards.fingerprint,
            },
        )
        if cfg.insecure and curve.needs_curve(cfg.bind):
            log.warning(
                "router: --insecure: the link on %s is PLAIN TEXT and UNAUTHENTICATED; anything "
                "that reaches it can act as a worker and read every relayed message",
                self.bound_endpoint,
                extra={"event": "insecure_link", "endpoint": self.bound_endpoint},
            )
        monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | curve.HANDSHAKE_FAILURES)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        while not self._stopping:
            now = time.monotonic()
            if self._pending:
                self._retry_pending(sock, now)
                if not self._pending:
                    # We read nothing while held up, so the silence proves nothing:
                    # give every worker a fresh liveness window.
                    for state in self._workers.values():
                        state.last_seen = max(state.last_seen, now)
            if self._pending:
                time.sleep(0.001)  # back-pressure: read nothing new until these go out
            else:
                timeout_ms = max(0, int((next_beat - now) * 1000))
                if self._in_grace:
                    timeout_ms = min(timeout_ms, max(0, int((self._grace_until - now) * 1000)))
                if self._late_claims:
                    first_due = next(iter(self._late_claims.values()))
                    timeout_ms = min(timeout_ms, max(0, int((first_due - now) * 1000) + 1))
                expiry = self.resumes.next_deadline()
                if expiry is not None:
                    timeout_ms = min(timeout_ms, max(0, int((expiry - now) * 1000) + 1))
                ready = dict(poller.poll(timeout_ms))
                if sock in ready:
                    self._read_all(sock)
                if monitor in ready and self._drain_monitor(monitor):
                    # Ping everyone now, and twice more shortly: ZeroMQ may take
                    # a moment to forget the dead worker's routing id.
                    next_beat = now
                    probes = 3
            now = time.monotonic()
            if self._in_grace and self._grace_over(now):
                self._end_grace()
            if self._parked and not self._in_grace:
                self._release_parked(now)
            if self._late_claims:
                self._end_late_waits(now)
            self._expire_suspended(now)
            self._flush(sock, now)
            if now >= next_beat:
                self._heartbeat(now)
                self._flush(sock, now)
                probes -= 1
                next_beat = now + (_PROBE_INTERVAL if probes > 0 else cfg.heartbeat_interval)
            if self._unreachable:
                self._drop_unreachable()
                self._flush(sock, now)
        sock.disable_monitor()
        monitor.close(linger=0)
        self._shutdown(sock)

    def _shutdown(self, sock: zmq.Socket[bytes]) -> None:
        for worker in self._workers:
            self._outbox.setdefault(worker, []).append(wire.Bye())
        self._flush(sock, time.monotonic())
        sock.close(linger=1000)
        self._close_security()
        if self._ctx is not zmq.Context.instance():
            self._ctx.term()
        log.info("router %s stopped", self.epoch, extra={"event": "stopped", "router": self.epoch})

    def _close_security(self) -> None:
        if self._security is not None:
            self._security.stop()
            self._security = None

    # --- input ---------------------------------------------------------------

    def _read_all(self, sock: zmq.Socket[bytes]) -> None:
        # Bounded so one busy worker cannot starve heartbeats and flushes.  Read
        # until zmq.Again: one failed recv per turn costs what one EVENTS query
        # does (a few us, the same as recv_multipart's RCVMORE queries), and
        # asking EVENTS before every message cost that per message.
        now = time.monotonic()
        recv = sock.recv
        for _ in range(10_000):
            try:
                worker = recv(_NOBLOCK)
            except zmq.Again:
                return
            # A worker sends one frame: [its id, the batch].  The body comes as a
            # Frame, whose ``more`` flag is free where RCVMORE is a socket query.
            body = recv(_NOBLOCK, copy=False)
            if body.more:
                self._drop_extra_frames(sock)
                continue
            self.handle(worker, body.bytes, now)

    def _drop_extra_frames(self, sock: zmq.Socket[bytes]) -> None:
        """Read and drop the rest of a message of more than [id, batch] (no worker sends one)."""
        count = 2 + len(sock.recv_multipart(_NOBLOCK))
        log.warning(
            "router: dropped a message of %d frames",
            count,
            extra={"event": "malformed_message", "frames": count},
        )

    def handle(self, worker: bytes, frame: bytes, now: float) -> None:
        """Apply one batch from ``worker``."""
        try:
            batch = wire.decode_to_router(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning(
                "router: dropped a malformed batch from %s: %s",
                _name(worker),
                exc,
                extra={
                    "event": "malformed_batch",
                    "worker": _name(worker),
                    "error": str(exc),
                    "bytes": len(frame),
                },
            )
            return
        self.telemetry.batch_sizes.observe(len(batch))
        state = self._workers.get(worker)
        if state is None:
            if worker == SUSPENDED:  # not a worker's name (ZeroMQ reserves a leading NUL)
                log.warning(
                    "router: dropped a batch from the reserved id %r",
                    worker,
                    extra={"event": "reserved_id_batch", "worker": _name(worker)},
                )
                return
            if batch and all(type(m) is wire.Query for m in batch):  # not a worker: status
                self._send(worker, self._status(now))
                return
            if not any(type(m) is wire.Hello for m in batch):
                undelivered = sorted({m.peer for m in batch if type(m) is wire.Relay})
                self._send(worker, wire.Reregister(undelivered))
                return
            state = self._workers[worker] = _Worker(now, self.config.max_peers_per_worker)
        state.last_seen = now
        for msg in batch:
            try:
                self._dispatch(worker, msg, now)
            except Exception:  # a bug must cost one message, never the router
                # The message, not its payload: a Relay carries a client's SDP.
                log.exception(
                    "router: failed on %s from %s",
                    logs.describe(msg),
                    _name(worker),
                    extra={
                        "event": "dispatch_failed",
                        "worker": _name(worker),
                        "message_type": type(msg).__name__,
                        "peer": getattr(msg, "peer", None),
                    },
                )

    def _dispatch(self, worker: bytes, msg: wire.ToRouter, now: float) -> None:
        match msg:
            case wire.Relay():
                key = (worker, msg.peer)
                partner = self.rooms.partner(key)
                if partner is not None:
                    self._send(partner[0], wire.Deliver(partner[1], msg.payload))
                    if len(msg.payload) > _BIG_PAYLOAD and self._sock is not None:
                        box = self._outbox.pop(partner[0])  # big frames travel alone
                        self._flush_worker(self._sock, partner[0], box, time.monotonic())
                elif key in self._parked_peers:
                    self._park(worker, msg)
                elif self.rooms.room_of(key) is not None:
                    self._send(worker, wire.NoPeer(msg.peer))
                # else: the peer holds no slot (refused, already gone): nobody to tell.
            case wire.Join():
                if self._in_grace:
                    self._park(worker, msg)
                else:
                    self._join(worker, msg)
            case wire.Leave():
                key = (worker, msg.peer)
                if key in self._parked_peers:
                    self._park(worker, msg)
                else:
                    self._free(key)
                    self._send(worker, wire.Left(msg.peer))
            case wire.Lost():
                key = (worker, msg.peer)
                if key in self._parked_peers:
                    self._park(worker, msg)
                else:
                    self._lost(key, now)
                    self._send(worker, wire.Left(msg.peer))
            case wire.Resume():
                if self._in_grace or (worker, msg.peer) in self._parked_peers:
                    self._park(worker, msg)
                else:
                    self._resume(worker, msg)
            case wire.Fence():
                if (worker, msg.peer) in self._parked_peers:
                    self._park(worker, msg)  # after the peer's parked messages, as sent
                else:
                    self._send(worker, wire.Fenced(msg.peer, msg.seq))
            case wire.Hello():
                self._hello(worker, msg)
            case wire.Bye():
                log.info(
                    "router: worker %s said bye",
                    _name(worker),
                    extra={"event": "worker_dropped", "worker": _name(worker), "reason": "bye"},
                )
                self._drop_worker(worker)
            case wire.Stats():
                self.telemetry.fold(worker, msg)
            case wire.Ping():  # last_seen is already updated
                if msg.sent:
                    self._send(worker, wire.Ping(self.epoch, msg.sent))  # its round trip
            case wire.Query():
                self._send(worker, self._status(now))

    def _join(self, worker: bytes, msg: wire.Join, refused_once: bool = False) -> None:
        if self._over_cap(worker, msg.peer) or not self._owns(worker, msg.room):
            self._send(worker, wire.RoomFull(msg.peer, msg.room, over_cap=True))
            return
        result = self.rooms.join((worker, msg.peer), msg.room)
        if not result.accepted:
            if not refused_once:
                # The room may be full only because a leave is still waiting in
                # another worker's pipe (a client that rejoined the moment its
                # close completed): look again once everything waiting is read.
                self._park(worker, msg, refused_once=True)
                return
            self._send(worker, wire.RoomFull(msg.peer, msg.room))
            return
        partner = result.partner
        key = (worker, msg.peer)
        local = partner[1] if partner is not None and partner[0] == worker else 0
        joined = wire.Joined(msg.peer, msg.room, result.peers, partner is not None, local)
        resumes = self.resumes
        if msg.resumable and resumes.enabled:
            joined.resume = resumes.issue(key, msg.room, partner is not None)
            joined.resume_grace = resumes.grace
        self._send(worker, joined)
        if partner is not None:
            self._end_late_wait(partner, partner, msg.room)  # its old partner is gone for good
            arrived = wire.PeerJoined(partner[1], msg.room, result.peers, msg.peer if local else 0)
            self._send(partner[0], arrived)  # (held, if the partner is suspended)
            if len(resumes):
                resumes.set_initiator(partner, False)  # the newcomer makes the offer
            if partner[0] == SUSPENDED:
                self._send(worker, wire.PeerReconnecting(msg.peer, msg.room))

    def _depart(self, departure: Departure | None) -> None:
        if departure is None:
            return
        _, room, partner = departure
        if partner is not None:
            self._claimed_paired.discard(partner)
            self._send(partner[0], wire.PeerLeft(partner[1], room, 1))
            if len(self.resumes):
                self.resumes.set_initiator(partner, False)

    def _free(self, key: PeerKey) -> None:
        """Free ``key``'s slot for good (a leave, a clean close, a lapsed suspension)."""
        if len(self.resumes):
            self.resumes.forget(key)
        self._late_claims.pop(key, None)
        self._depart(self.rooms.leave(key))

    # --- resume (mcp_tornado.router.suspended) ---------------------------------------

    def _lost(self, key: PeerKey, now: float) -> None:
        """``key``'s socket ended without a clean goodbye: suspend it if resumable, else free."""
        away = self.resumes.suspend(key, now) if len(self.resumes) else None
        if away is None:
            self._free(key)
            return
        room = self.rooms.rebind(key, away)
        self._claimed_paired.discard(key)
        self._end_late_wait(key, away, room)  # (held for its resume)
        partner = self.rooms.partner(away)
        if partner is not None and partner[0] != SUSPENDED:
            self._send(partner[0], wire.PeerReconnecting(partner[1], room))

    def _resume(self, worker: bytes, msg: wire.Resume) -> None:
        resumes = self.resumes
        entry = resumes.claim(msg.token, msg.room)
        new = (worker, msg.peer)
        if entry is None or self.rooms.room_of(new) is not None:
            resumes.refused += 1
            self._send(worker, wire.ResumeRefused(msg.peer))
            return
        old = entry.key
        if old[0] != worker and self._over_cap(worker, msg.peer):
            # Like a join over the cap (the worker closes it with 1013): the token
            # stays good, and the client resumes again, maybe through another worker.
            self._send(worker, wire.RoomFull(msg.peer, msg.room, over_cap=True))
            return
        if old[0] == SUSPENDED:
            self._hold_outbox()  # what was said to it this turn is held first
        else:
            # Its old socket still looks alive (a phone that switched networks leaves
            # a half-dead one behind): the token holder wins, the old one is closed.
            self._send(old[0], wire.Replaced(old[1]))
        room = self.rooms.rebind(old, new)
        token, held = resumes.rebind(entry, new)
        partner = self.rooms.partner(new)
        local = partner[1] if partner is not None and partner[0] == worker else 0
        self._send(
            worker,
            wire.Resumed(
                msg.peer,
                room,
                self.rooms.size(room),
                entry.initiator,
                token,
                resumes.grace,
                local,
            ),
        )
        for message in held:  # in order, once: they left the book with the rebind
            message.peer = msg.peer  # type: ignore[union-attr]
            self._send(worker, message)
        if partner is None:
            return
        if partner[0] == SUSPENDED:
            self._send(worker, wire.PeerReconnecting(msg.peer, room))
        elif old[0] == SUSPENDED:
            self._send(partner[0], wire.PeerResumed(partner[1], room, msg.peer if local else 0))
        # (a live socket replaced: its partner never heard it was away; a local pair
        # is made from the new peer's side, by Resumed.local_partner)

    def _hold_outbox(self) -> None:
        """Hold what was said to suspended peers (the pseudo-worker's outbox), in order."""
        box = self._outbox.pop(SUSPENDED, None)
        if box is not None:
            self._hold(box)

    def _hold(self, batch: list[wire.ToWorker]) -> None:
        resumes = self.resumes
        for msg in batch:
            over = resumes.hold(msg)
            if over is not None:
                room = self.rooms.room_of(over)
                log.info(
                    "router: a suspended peer's held messages are over the bound; freeing it",
                    extra={"event": "resume_overflowed", "room": room},
                )
                resumes.overflowed += 1
                self._free(over)

    def _expire_suspended(self, now: float) -> None:
        if self.resumes.suspended_count:
            self._hold_outbox()
            for key in self.resumes.due(now):
                self.resumes.expired += 1
                self._free(key)

    def _owns(self, worker: bytes, room: str) -> bool:
        """Whether ``room`` is in this shard's slots (a worker that sends others is broken)."""
        if self.shards.owns(room):
            return True
        if self._log_throttle.ready(("foreign", worker)):
            log.warning(
                "router: worker %s sent a room of another shard; refusing it",
                _name(worker),
                extra={"event": "foreign_room", "worker": _name(worker), "room": room},
            )
        return False

    def _wrong_map(self, worker: bytes, msg: wire.Hello) -> bool:
        """Refuse a worker whose map of shards is not ours (``True``: it was refused)."""
        ours = self.shards
        if msg.shard_map == ours.fingerprint or (not msg.shard_map and ours.count == 1):
            return False
        self._workers.pop(worker, None)  # not registered: its next Hello is looked at afresh
        self._send(worker, wire.WrongShardMap(ours.fingerprint, ours.index))
        if self._log_throttle.ready(("map", worker)):
            log.error(
                "router: refused worker %s: its map of router shards is %s, ours is %s "
                "(%s); give every worker the same ordered --router list, and each router "
                "its --shard and --shards",
                _name(worker),
                msg.shard_map or "(none: one router)",
                ours.fingerprint,
                ours.describe(),
                extra={
                    "event": "wrong_shard_map",
                    "worker": _name(worker),
                    "theirs": msg.shard_map,
                    "ours": ours.fingerprint,
                },
            )
        return True

    def _hello(self, worker: bytes, msg: wire.Hello) -> None:
        """(Re-)register ``worker`` with exactly the peers it lists."""
        if self._wrong_map(worker, msg):
            return
        listed = {record.peer: record for record in msg.peers}
        for peer in self.rooms.peers_of_worker(worker):
            record = listed.get(peer)
            if record is None or self.rooms.room_of((worker, peer)) != record.room:
                self._free((worker, peer))  # (its resume token dies with it)
        state = self._workers.get(worker)
        first = False
        if state is not None:  # what it announced, never more than the router allows
            allowed = self.config.max_peers_per_worker
            state.max_peers = min(msg.max_peers, allowed) if msg.max_peers > 0 else allowed
            first, state.registered = not state.registered, True
        # A worker this router dropped (partitioned, hung) and that is back: the
        # partners of its paired peers were told they left, so those peers cannot
        # quietly be their partners again.  They are refused (the worker closes
        # them with 1013) and their clients reconnect afresh.  (After a router
        # restart nobody was told anything before the resync grace ended.)
        orphaned = first and self._dropped.pop(worker, None) is not None
        # Its first Hello after the grace: the rooms may have moved on without it
        # (see the module docstring and _late_fits).
        late = first and not self._in_grace
        wait_until = time.monotonic() + self.config.resync_grace
        rejected: list[int] = []
        refused: list[int] = []
        gone = state.refused if state is not None else set()
        for record in msg.peers:
            key = (worker, record.peer)
            if (
                record.peer in gone
                or self._over_cap(worker, record.peer)
                or not self._owns(worker, record.room)
            ):
                refused.append(record.peer)
            elif record.resume and self._take_back(key, record):
                continue  # a peer of its that we suspended: its slot, with what was held
            elif not (joined := self.rooms.join(key, record.room)).accepted:
                rejected.append(record.peer)
            elif (orphaned and record.paired) or (
                late and not self._late_fits(record, joined.partner)
            ):
                self.rooms.leave(key)  # nobody was told it joined: nobody to tell it left
                refused.append(record.peer)
            else:
                if record.paired and self._in_grace:
                    self._claimed_paired.add(key)
                elif late and record.paired and joined.partner is None:
                    self._late_claims[key] = wait_until
                if record.resume and self.resumes.enabled:
                    self.resumes.restore(key, record.room, record.resume)
        gone.update(refused)
        self._send(worker, wire.Welcome(self.epoch, rejected, refused))
        self.telemetry.hello(worker, msg.info, len(rejected))
        log.info(
            "router: worker %s registered with %d peers (%d rejected, %d refused)%s",
            _name(worker),
            len(msg.peers),
            len(rejected),
            len(refused),
            " after the resync grace" if late else "",
            extra={
                "event": "worker_registered",
                "worker": _name(worker),
                "peers": len(msg.peers),
                "rejected": len(rejected),
                "refused": len(refused),
                "late": late,
            },
        )

    def _late_fits(self, record: wire.PeerRecord, partner: PeerKey | None) -> bool:
        """Whether a peer of a late Hello may keep the slot it was just given (module docstring).

        ``partner`` is whoever already held its room.  A peer that was alone fits
        only an empty room; a paired one fits an empty room (it waits for its
        partner) or the room of a paired peer of a late Hello waiting there, which
        was told nothing (they are a pair again, and it stops waiting).
        """
        if partner is None:
            return True
        return record.paired and self._late_claims.pop(partner, None) is not None

    def _end_late_wait(self, key: PeerKey, told: PeerKey, room: str) -> None:
        """If ``key`` waits for its partner after a late Hello, stop: its partner is not
        coming back, so ``told`` (its slot now: itself, or its suspended stand-in) is told."""
        if self._late_claims.pop(key, None) is not None:
            self._send(told[0], wire.PeerLeft(told[1], room, 1))

    def _end_late_waits(self, now: float) -> None:
        """Tell the paired peers of late Hellos whose partner did not come back in time."""
        claims = self._late_claims
        while claims:
            key, due = next(iter(claims.items()))
            if due > now:
                return
            del claims[key]
            room = self.rooms.room_of(key)
            if room is not None and self.rooms.partner(key) is None:
                self._send(key[0], wire.PeerLeft(key[1], room, 1))

    def _over_cap(self, worker: bytes, peer: int) -> bool:
        """Whether a new slot for ``peer`` would take ``worker`` past its cap of peers.

        Caps what one worker identity can take (a compromised or buggy host
        cannot squat every room); a worker never holds more peers than its
        connections, so one within its announced ``--max-connections`` never
        meets it.
        """
        state = self._workers.get(worker)
        if state is None or self.rooms.room_of((worker, peer)) is not None:
            return False
        if self.rooms.count_of_worker(worker) < state.max_peers:
            return False
        if self._log_throttle.ready(("cap", worker)):
            cap = state.max_peers
            log.warning(
                "router: worker %s holds its cap of %d peers; refusing more",
                _name(worker),
                cap,
                extra={"event": "worker_over_cap", "worker": _name(worker), "cap": cap},
            )
        return True

    def _take_back(self, key: PeerKey, record: wire.PeerRecord) -> bool:
        """A dropped worker re-registers a peer we suspended: give it its slot back."""
        entry = self.resumes.claim(record.resume, record.room)
        if entry is None or not entry.suspended or self.rooms.room_of(key) is not None:
            return False
        self._hold_outbox()
        room = self.rooms.rebind(entry.key, key)
        _, held = self.resumes.rebind(entry, key, fresh_token=False)
        for message in held:
            message.peer = key[1]  # type: ignore[union-attr]
            self._send(key[0], message)
        partner = self.rooms.partner(key)
        if partner is not None and partner[0] != SUSPENDED:
            local = key[1] if partner[0] == key[0] else 0
            self._send(partner[0], wire.PeerResumed(partner[1], room, local))
        return True

    def _drop_worker(self, worker: bytes) -> None:
        self.telemetry.drop(worker)
        if worker in self._workers:
            self._dropped[worker] = time.monotonic()
        self._workers.pop(worker, None)
        self._outbox.pop(worker, None)
        self._pending.pop(worker, None)
        suspended: list[PeerKey] = []
        if len(self.resumes):  # its resumable peers keep their slots for their resume
            now = time.monotonic()
            for peer in self.rooms.peers_of_worker(worker):
                away = self.resumes.suspend((worker, peer), now)
                if away is not None:
                    its_room = self.rooms.rebind((worker, peer), away)
                    suspended.append(away)
                    self._end_late_wait((worker, peer), away, its_room)  # (as in _lost)
        for departure in self.rooms.drop_worker(worker):
            self._depart(departure)
        for away in suspended:
            partner = self.rooms.partner(away)
            room = self.rooms.room_of(away)
            if partner is not None and room is not None and partner[0] != SUSPENDED:
                self._send(partner[0], wire.PeerReconnecting(partner[1], room))
        if self._late_claims:  # its peers that were waiting are gone
            self._late_claims = {k: due for k, due in self._late_claims.items() if k[0] != worker}
        if self._parked_peers:
            self._parked = [entry for entry in self._parked if entry[0] != worker]
            self._parked_peers = {key for key in self._parked_peers if key[0] != worker}

    def _park(self, worker: bytes, msg: _Parkable, refused_once: bool = False) -> None:
        self._parked.append((worker, msg, refused_once))
        self._parked_peers.add((worker, msg.peer))

    def _release_parked(self, now: float) -> None:
        parked, self._parked = self._parked, []
        self._parked_peers.clear()
        for worker, msg, refused_once in parked:
            if worker not in self._workers:
                continue
            if type(msg) is wire.Join:
                self._join(worker, msg, refused_once)
            else:
                self._dispatch(worker, msg, now)

    # --- resync grace ------------------------------------------------------------

    def _grace_over(self, now: float) -> bool:
        if now >= self._grace_until:
            return True
        expected = self.config.expected_workers
        return expected > 0 and len(self._workers) >= expected

    def _end_grace(self) -> None:
        self._in_grace = False
        # Peers that were paired before the router restarted and whose partner
        # never came back are alone now: tell them, as if the partner had left.
        for key in self._claimed_paired:
            room = self.rooms.room_of(key)
            if room is not None and self.rooms.partner(key) is None:
                self._send(key[0], wire.PeerLeft(key[1], room, 1))
        self._claimed_paired.clear()
        self._release_parked(time.monotonic())

    # --- output --------------------------------------------------------------

    def _send(self, worker: bytes, msg: wire.ToWorker) -> None:
        box = self._outbox.get(worker)
        if box is None:
            self._outbox[worker] = [msg]
        else:
            box.append(msg)
            if len(box) >= _MAX_BATCH and self._sock is not None:
                # Bounds a batch, and the memory a worker needs to decode it.
                self._flush_worker(self._sock, worker, self._outbox.pop(worker), time.monotonic())

    def _flush(self, sock: zmq.Socket[bytes], now: float) -> None:
        if not self._outbox:
            return
        if SUSPENDED in self._outbox:
            self._hold_outbox()  # first: a peer freed over its bound tells its partner now
        outbox, self._outbox = self._outbox, {}
        for worker, batch in outbox.items():
            self._flush_worker(sock, worker, batch, now)

    def _flush_worker(
        self, sock: zmq.Socket[bytes], worker: bytes, batch: list[wire.ToWorker], now: float
    ) -> None:
        if worker == SUSPENDED:  # (a full batch, or a big payload, sent early)
            self._hold(batch)
            return
        frame = wire.encode_batch(batch)
        waiting = self._pending.get(worker)
        if waiting is not None:  # keep order behind what a full pipe already refused
            waiting.append(frame)
        elif worker in self._unreachable:
            return
        elif not self._send_frame(sock, worker, frame):
            self._pending[worker] = [frame]
            self._mark_stalled(worker, now)

    def _retry_pending(self, sock: zmq.Socket[bytes], now: float) -> None:
        limit = self.config.heartbeat_interval * self.config.heartbeat_liveness
        for worker in list(self._pending):
            frames = self._pending[worker]
            while frames and self._send_frame(sock, worker, frames[0]):
                frames.pop(0)
            if not frames:
                del self._pending[worker]
                state = self._workers.get(worker)
                if state is not None:
                    state.stalled_since = 0.0
                continue
            state = self._workers.get(worker)
            if state is None or now - state.stalled_since > limit:
                log.warning(
                    "router: worker %s stopped reading for %.1fs; dropping it",
                    _name(worker),
                    limit,
                    extra={"event": "worker_dropped", "worker": _name(worker), "reason": "stalled"},
                )
                self._drop_worker(worker)

    def _mark_stalled(self, worker: bytes, now: float) -> None:
        state = self._workers.get(worker)
        if state is not None and not state.stalled_since:
            state.stalled_since = now

    def _send_frame(self, sock: zmq.Socket[bytes], worker: bytes, frame: bytes) -> bool:
        """Send one batch; ``False`` if the worker's pipe is full (try again later)."""
        try:
            # Two sends, not send_multipart: its per-call checks cost more than these.
            # ROUTER_MANDATORY refuses (Again, EHOSTUNREACH) at the first part.
            sock.send(worker, _SNDMORE_NOBLOCK)
            sock.send(frame, _NOBLOCK)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self._unreachable.add(worker)  # its connection is gone: it died
        return True

    def _drain_monitor(self, monitor: zmq.Socket[bytes]) -> bool:
        """Log failed handshakes; ``True`` if a connection dropped."""
        dropped = False
        with contextlib.suppress(zmq.Again):
            while True:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
                kind = event["event"]
                if kind == zmq.EVENT_DISCONNECTED:
                    dropped = True
                    continue
                line = curve.describe_router_failure(kind, event["value"])
                if line is not None and self._log_throttle.ready(kind):
                    log.warning("%s", line, extra={"event": "handshake_failed", "reason": line})
        return dropped

    def _drop_unreachable(self) -> None:
        unreachable, self._unreachable = self._unreachable, set()
        for worker in unreachable:
            if worker in self._workers:
                log.warning(
                    "router: lost the connection to worker %s; dropping its peers",
                    _name(worker),
                    extra={
                        "event": "worker_dropped",
                        "worker": _name(worker),
                        "reason": "disconnected",
                    },
                )
                self._drop_worker(worker)

    # --- heartbeats ----------------------------------------------------------

    def _status(self, now: float) -> wire.Status:
        last_seen = {worker: state.last_seen for worker, state in self._workers.items()}
        status = self.telemetry.status(self.epoch, self.rooms, last_seen, now)
        status.shard_map = self.shards.describe()
        return status

    def _heartbeat(self, now: float) -> None:
        self.telemetry.publish(now, self.rooms, self.resumes)
        if self._dropped:  # a worker gone this long is not coming back: forget it
            forgotten = now - _FORGET_DROPPED
            self._dropped = {w: t for w, t in self._dropped.items() if t > forgotten}
        deadline = now - self.config.heartbeat_interval * self.config.heartbeat_liveness
        # Under back-pressure we stopped reading, so silence proves nothing.
        expire = not self._pending
        for worker, state in list(self._workers.items()):
            if expire and state.last_seen < deadline:
                log.warning(
                    "router: worker %s missed its heartbeats; dropping its peers",
                    _name(worker),
                    extra={
                        "event": "worker_dropped",
                        "worker": _name(worker),
                        "reason": "heartbeat",
                    },
                )
                self._drop_worker(worker)
            else:
                self._send(worker, wire.Ping(self.epoch))
