"""A worker process: signaling WebSockets and Tornado's HTTP server on one port, before the router.

Usage::

    run_worker(WorkerConfig(host="127.0.0.1", port=8000, link=LinkConfig("ipc:///run/r.ipc")))

Several workers can share one port (``SO_REUSEPORT``); a worker starts
listening once the router has welcomed it.  Its
:class:`~mcp_tornado.listener.Listener` gives each upgrade to
``/ws/signal/`` a :class:`SignalConnection` and every other request (the
browser client, ``/healthz``) to Tornado.  Connections forward their frames
through the worker's :class:`~mcp_tornado.router_link.RouterLink`.
On SIGTERM a worker stops accepting, keeps relaying for a quarter second so
messages in flight arrive, closes every client with 1001 (going away), lets
queued messages drain to the router, and exits within ``shutdown_timeout``
seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import struct
import time
from typing import Any, cast

import uvloop
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler, StaticFileHandler

from mcp_tornado import access_log, frames, handshake, protocol, ratelimit
from mcp_tornado.admission import Gatekeeper, Refusal, http_server_options
from mcp_tornado.frames import FrameReader, text_frame_header
from mcp_tornado.listener import Listener
from mcp_tornado.ratelimit import TokenBucket
from mcp_tornado.router_link import RouterLink
from mcp_tornado.settings import WorkerSettings as WorkerConfig

log = logging.getLogger("mcp_tornado.worker")

_LISTEN_BACKLOG = 4096  # Tornado's 128 drops SYNs (1 s retries) in a connect storm
_DRAIN_PERIOD = 0.25  # seconds of relaying after SIGTERM before clients are closed


class _Shared:
    """What every connection of a worker uses, passed in explicitly."""

    __slots__ = ("gate", "link", "loop", "max_message_size", "writes")

    def __init__(self, link: RouterLink, gate: Gatekeeper, max_message_size: int) -> None:
        self.link = link
        self.gate = gate
        self.max_message_size = max_message_size
        self.writes = _Writes()
        self.loop = asyncio.get_running_loop()


class SignalConnection(asyncio.Protocol):
    """One client at ``/ws/signal/?room=NAME``: the handshake, then its frames.

    It joins the client's room through the router link, relays the client's
    frames byte for byte, and writes back what the router sends it.  The
    :class:`~mcp_tornado.listener.Listener` creates one per upgrade request;
    the handshake rules are in :mod:`mcp_tornado.handshake`, the framing in
    :mod:`mcp_tornado.frames`.

    Not Tornado's ``WebSocketHandler``: its request machinery cost a worker
    about 300 us per connection, and its stream a Future per read.  An
    asyncio protocol on the worker's (uvloop) event loop is called with each
    read's bytes, and everything said to a client in one loop turn leaves in
    one write.
    """

    __slots__ = (
        "_close_received",
        "_close_sent",
        "_counted",
        "_deadline",
        "_fence_seq",
        "_head",
        "_held",
        "_lost",
        "_out",
        "_queued",
        "_reader",
        "_timer",
        "bucket",
        "last_pong",
        "link",
        "paired",
        "partner",
        "peer_id",
        "room",
        "shared",
        "transport",
    )

    def __init__(self, shared: _Shared, deadline: float | None) -> None:
        self.shared = shared
        self.link = shared.link
        self.transport: asyncio.Transport | None = None
        self.room = protocol.DEFAULT_ROOM
        self.paired = False
        self.peer_id: int | None = None
        # The other peer of the room when it is a connection of this worker too:
        # messages then go to it directly once a fence confirmed that the ones
        # already routed through the router have arrived (see pair_locally).
        self.partner: SignalConnection | None = None
        self._held: list[bytes] | None = None  # messages held while a fence is out
        self._fence_seq = 0
        self.last_pong = time.monotonic()
        self.bucket: TokenBucket | None = None
        self._counted = False  # in the gate's connection count
        self._head: bytearray | None = None  # the request head while it arrives in pieces
        self._reader: FrameReader | None = None  # set once upgraded
        self._out: list[bytes] | None = None  # frames queued this loop turn
        self._queued = 0  # their payload bytes
        self._timer: asyncio.TimerHandle | None = None  # handshake, then close deadline
        self._deadline = deadline
        self._close_sent = False
        self._close_received = False
        self._lost = False

    # --- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self._deadline is not None:
            self._timer = self.shared.loop.call_at(self._deadline, self.abort)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is not None:
            verdict = reader.feed(data)
            if verdict:
                self._violation(verdict)
        elif not self._close_sent:
            self._read_head(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._out = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._on_close()

    # --- handshake ----------------------------------------------------------

    def _read_head(self, data: bytes) -> None:
        partial = self._head
        if partial is None and b"\r\n\r\n" in data:  # the usual case: all in one read
            head = data
        else:
            # Arriving in pieces: append, and search only the new bytes (and the
            # three before them), so a client dripping bytes costs linear time.
            if partial is None:
                partial = self._head = bytearray()
            seen = len(partial)
            partial += data
            if partial.find(b"\r\n\r\n", max(0, seen - 3)) < 0:
                if len(partial) > handshake.MAX_HEAD:
                    self._reject(handshake.Rejection(431, "Request headers too large"))
                return
            head = bytes(partial)
            self._head = None
        end = head.index(b"\r\n\r\n") + 4
        self._upgrade(head[:end])
        if len(head) > end and self._reader is not None:  # frames sent right behind the request
            self.data_received(head[end:])

    def _upgrade(self, head: bytes) -> None:
        request = handshake.parse_upgrade(head)
        if isinstance(request, handshake.Rejection):
            self._reject(request)
            return
        gate = self.shared.gate
        if gate.full():  # refused before the upgrade: cheaper than a WebSocket close
            self._reject(_SERVER_FULL)
            return
        if request.origin is not None and not gate.origins.allows(request.origin, request.host):
            self._reject(_CROSS_ORIGIN)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        assert self.transport is not None
        self.transport.write(handshake.accept_response(request.key))
        access_log.log_access(101, "GET", self._remote_ip())
        self._reader = FrameReader(self.shared.max_message_size, self._on_frame)
        self._open(request.query)

    def _reject(self, rejection: handshake.Rejection) -> None:
        access_log.log_access(rejection.status, "GET", self._remote_ip())
        self._close_sent = True
        assert self.transport is not None
        self.transport.write(handshake.rejection_response(rejection))
        self.transport.close()

    def _remote_ip(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else "-"

    def _open(self, query: dict[str, list[bytes]]) -> None:
        gate = self.shared.gate
        gate.connections += 1
        self._counted = True
        admission = gate.admit(query)
        if isinstance(admission, Refusal):
            self.refuse(admission.event, admission.close_code)
            return
        self.room = admission.room
        self.bucket = gate.bucket(time.monotonic())
        self.peer_id = self.link.join(self)
        if self.peer_id is None:
            self.refuse(protocol.ROUTER_UNAVAILABLE_EVENT, protocol.CloseCode.TRY_AGAIN_LATER)

    # --- frames from the client ---------------------------------------------

    def _on_frame(self, opcode: int, payload: bytes) -> bool:
        if opcode == frames.TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError:  # RFC 6455 8.1: fail the connection
                self.abort()
                return False
            self._on_message(text, payload)
        elif opcode == frames.BINARY:
            try:
                self._on_message(payload.decode(), payload)
            except UnicodeDecodeError:
                self.send_text(_BINARY_EVENT)
        elif opcode == frames.CLOSE:
            self._close_received = True
            # Free the room slot (and tell the router at once) before our close
            # echo goes out, so a client that reconnects as soon as its close
            # completes finds the room free.
            self._leave_room(at_once=True)
            code = _CLOSE_CODE(payload)[0] if len(payload) >= 2 else None
            self.close(code)  # echo the client's code (RFC 6455 5.5.1)
            return False
        elif opcode == frames.PING:
            self._queue(frames.control_frame(frames.PONG, payload), 0)
            self._count_frame()  # pings are frames too, and each costs a pong
        else:
            self.last_pong = time.monotonic()
        return not self._lost

    def _on_message(self, message: str, raw: bytes) -> None:
        # ``raw``: the same message as the client's bytes, which a local partner
        # gets as they are; the router hop carries the text.
        if self.peer_id is None:
            return
        if self._count_frame():
            return
        error = protocol.check_client_frame(message)
        if error is not None:
            self.send_text(protocol.encode_event(error))
        elif self.partner is None:
            self._route(message)
        elif self._held is None:  # the fence is behind us
            self.partner.send_payload(raw)
        elif len(self._held) < _MAX_HELD:
            self._held.append(raw)
        else:  # routing it would overtake the held ones
            self.send_text(protocol.UNDELIVERED_EVENT)

    def _route(self, message: str) -> None:
        if self.peer_id is None or not self.link.relay(self.peer_id, message):
            self.send_text(protocol.UNDELIVERED_EVENT)

    def _count_frame(self) -> bool:
        """Take a frame from the rate limit; ``True`` if it must be dropped."""
        if self.bucket is None or self.peer_id is None:
            return False
        verdict = self.bucket.take(time.monotonic())
        if verdict == ratelimit.DROP_AND_WARN:
            self.send_text(_RATE_LIMITED_EVENT)
        elif verdict == ratelimit.CLOSE:
            self._on_close()  # free the room slot now, not after the close handshake
            self.refuse(_RATE_LIMITED_EVENT, protocol.CloseCode.RATE_LIMITED)
        return verdict != ratelimit.ALLOW

    def _violation(self, close_code: int) -> None:
        if close_code == frames.MESSAGE_TOO_BIG and self.transport is not None:
            self._close_sent = True
            self.transport.write(frames.close_frame(close_code, "message too big"))
        self.abort()

    def _on_close(self) -> None:
        if self._counted:
            self._counted = False
            self.shared.gate.connections -= 1
        self._leave_room()

    def _leave_room(self, at_once: bool = False, tell_router: bool = True) -> None:
        """Give up the room slot: tell the router (``at_once``: now) and a local partner."""
        if self.peer_id is not None:
            if tell_router:
                self.link.leave(self.peer_id, at_once=at_once)
            self.peer_id = None
        partner, self.partner = self.partner, None
        if partner is not None:
            partner._partner_left()

    # --- a partner on this worker ------------------------------------------------

    def pair_locally(self, partner_id: int) -> None:
        """The router paired us with peer ``partner_id``, a connection of this worker too.

        Both fence (:class:`~mcp_tornado.wire.Fence`): messages sent until the
        router answers are held, then go to the partner directly, as does
        everything after.
        """
        partner = self.link.peers.get(partner_id)
        if not isinstance(partner, SignalConnection) or self.partner is not None:
            return  # it left already; or this is the second notice of the pair
        if self.peer_id is None or partner.peer_id is None or partner.partner is not None:
            return
        self.partner, partner.partner = partner, self
        for connection in (self, partner):
            connection._held = []
            connection.fence()

    def fence(self) -> None:
        """(Re)send this connection's fence, if one is out (also after the router came back)."""
        if self._held is not None and self.peer_id is not None:
            self._fence_seq += 1
            self.link.fence(self.peer_id, self._fence_seq)

    def fenced(self, seq: int) -> None:
        """The router has handled everything sent before fence ``seq``: go direct."""
        held, partner = self._held, self.partner
        if held is None or partner is None or seq != self._fence_seq:
            return  # an older fence, or the partner left meanwhile
        self._held = None
        for message in held:
            partner.send_payload(message)

    def _partner_left(self) -> None:
        self.partner = None
        held, self._held = self._held, None
        for message in held or ():  # through the router, which says the peer is gone
            self._route(message.decode())

    # --- called by the router link, the pinger and the worker ----------------

    def send_text(self, text: str) -> None:
        """Queue a text frame; frames queued in one loop turn go out in one write."""
        self.send_payload(text.encode())

    def send_payload(self, data: bytes) -> None:
        """Queue a text frame holding ``data``, UTF-8 already."""
        self._queue(text_frame_header(len(data)), 0)
        self._queue(data, len(data))

    def _queue(self, frame: bytes, size: int) -> None:
        out = self._out
        if out is None:
            if self._close_sent or self._lost:
                return
            out = self._out = []
            self._queued = 0
            self.shared.writes.mark(self)
        out.append(frame)
        self._queued += size
        cap = self.shared.gate.limits.max_pending_bytes
        if cap and self._queued > cap:  # a flood within one turn: do not even build the write
            self._out = None
            self._drop_slow_reader()

    def write_queued(self) -> None:
        """Write the frames queued this turn (called by :class:`_Writes`, and before a close)."""
        out, self._out = self._out, None
        transport = self.transport
        if not out or transport is None or self._lost:
            return
        transport.write(b"".join(out))
        cap = self.shared.gate.limits.max_pending_bytes
        if cap and transport.get_write_buffer_size() > cap:
            self._drop_slow_reader()

    def _drop_slow_reader(self) -> None:
        # It stopped reading: drop it rather than buffer without bound.
        log.info("worker: dropping a client that stopped reading (room %r)", self.room)
        self._on_close()
        self.close(protocol.CloseCode.TOO_SLOW, protocol.close_reason(protocol.CloseCode.TOO_SLOW))

    def ping(self) -> None:
        if not self._close_sent and not self._lost and self.transport is not None:
            self.transport.write(_PING)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Start (or, after the client's close frame, finish) the closing handshake."""
        self.write_queued()  # what was said before the close goes before the close frame
        transport = self.transport
        if self._lost or transport is None:
            return
        if not self._close_sent:
            self._close_sent = True
            transport.write(frames.close_frame(code, reason))
        if self._close_received:
            transport.close()  # after the close frame is written
        elif self._timer is None:  # give the client a moment to answer, then hang up
            self._timer = self.shared.loop.call_later(_CLOSE_WAIT, self.abort)

    def refuse(self, text: str, close_code: int) -> None:
        self.send_text(text)
        self._leave_room(tell_router=False)  # never joined, or the router refused it
        self.close(close_code, protocol.close_reason(close_code))

    def abort(self) -> None:
        """Drop the connection without a closing handshake (it cannot answer one)."""
        if self.transport is not None and not self._lost:
            self.transport.abort()  # connection_lost follows


class _Writes:
    """The connections with frames queued during this event-loop turn.

    Everything a worker says to a client in one turn (typically a whole batch
    from the router) leaves in a single write per client, from one callback
    at the end of the turn.
    """

    def __init__(self) -> None:
        self._dirty: list[SignalConnection] = []
        self._loop = asyncio.get_running_loop()

    def mark(self, connection: SignalConnection) -> None:
        if not self._dirty:
            self._loop.call_soon(self._flush)
        self._dirty.append(connection)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            connection.write_queued()


_MAX_HELD = 1000  # messages held for a fence; more are refused as undelivered
_CLOSE_WAIT = 5.0  # seconds a client has to answer our close frame (Tornado's figure)
_CLOSE_CODE = struct.Struct("!H").unpack_from
_PING = frames.control_frame(frames.PING)
_SERVER_FULL = handshake.Rejection(503, "server full, try again later", (("Retry-After", "5"),))
_CROSS_ORIGIN = handshake.Rejection(403, "Cross origin websockets not allowed")
_RATE_LIMITED_EVENT = protocol.encode_event(
    protocol.Error(protocol.ErrorCode.RATE_LIMITED, "Too many messages; slow down")
)
_BINARY_EVENT = protocol.encode_event(
    protocol.Error(protocol.ErrorCode.INVALID_MESSAGE, "Binary frames must hold UTF-8 JSON")
)


class _Pinger:
    """Finds clients that vanished without a close frame (their network went away).

    One timer for the whole worker, instead of Tornado's ping task per
    connection: every ``interval`` seconds each client is pinged, and one that
    has not answered any ping for ``interval + timeout`` seconds is dropped at
    once (no closing handshake with a peer that cannot answer), which frees
    its slot and tells its partner.
    """

    def __init__(self, link: RouterLink, interval: float, timeout: float) -> None:
        self.link = link
        self.interval = interval
        self.timeout = timeout
        self._timer = PeriodicCallback(self._sweep, interval * 1000)

    def start(self) -> None:
        if self.interval > 0:
            self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _sweep(self) -> None:
        deadline = time.monotonic() - self.interval - self.timeout
        for peer in list(self.link.peers.values()):
            if not isinstance(peer, SignalConnection):
                continue
            if peer.last_pong < deadline:
                log.info("worker: peer %s stopped answering pings; dropping it", peer.peer_id)
                peer.abort()
            else:
                peer.ping()


class HealthHandler(RequestHandler):
    """``GET /healthz``: 200 when this worker is registered with the router, else 503."""

    def initialize(self, link: RouterLink) -> None:
        self.link = link

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        if self.link.ready:
            self.finish("ok\n")
        else:
            self.set_status(503)
            self.finish("router unavailable\n")


class _UpgradeOnFreshConnection(RequestHandler):
    """``/ws/signal/`` requests that reached Tornado: a later request on a kept-alive connection.

    The listener sorts connections by their first request, so an upgrade sent
    after, say, ``GET /healthz`` on the same connection lands here.  Browsers
    always open a WebSocket on a new connection; other clients are told to.
    """

    def get(self) -> None:
        self.set_status(400)
        self.finish("open the signaling WebSocket on a new connection\n")


class _NoFrontendHandler(RequestHandler):
    def get(self, path: str) -> None:
        self.set_status(404)
        self.finish("mcp-tornado: the browser client is not built (cd frontend && npm run build)\n")


def make_app(config: WorkerConfig, link: RouterLink) -> Application:
    """The Tornado application a worker serves: everything but the signaling endpoint."""
    routes: list[Any] = [
        (r"/healthz", HealthHandler, {"link": link}),
        (r"/ws/signal/?", _UpgradeOnFreshConnection),
    ]
    if config.static_dir is not None and (config.static_dir / "index.html").is_file():
        routes.append(
            (
                r"/(.*)",
                StaticFileHandler,
                {"path": str(config.static_dir), "default_filename": "index.html"},
            )
        )
    else:
        routes.append((r"/(.*)", _NoFrontendHandler))
    return Application(routes, log_function=access_log.log_request)


async def serve_worker(config: WorkerConfig, stop: asyncio.Event) -> None:
    """Run a worker in the current event loop until ``stop`` is set, then shut down gracefully."""
    link = RouterLink(config.link)
    link.start()
    app = make_app(config, link)
    # Listen only once the router knows us, so that with SO_REUSEPORT the
    # kernel never hands a connection to a worker that would have to refuse it.
    log.info("worker %s waiting for the router at %s", link.name, config.link.endpoint)
    ready = asyncio.ensure_future(link.wait_ready())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        ready.cancel()
        link.close()
        return
    server = HTTPServer(app, xheaders=False, **http_server_options(config.limits))
    shared = _Shared(link, Gatekeeper(config.limits), config.max_message_size)
    loop = asyncio.get_running_loop()

    def on_signal(sock: socket.socket, address: Any, deadline: float | None) -> None:
        connection = SignalConnection(shared, deadline)
        opening = asyncio.ensure_future(loop.connect_accepted_socket(lambda: connection, sock))
        opening.add_done_callback(lambda done: _opened(done, sock))

    sockets = bind_sockets(config.port, config.host, reuse_port=True, backlog=_LISTEN_BACKLOG)
    listener = Listener(sockets, server, on_signal, config.limits.handshake_timeout)
    listener.start()
    log.info("worker %s serving on %s:%d", link.name, config.host, config.port)
    pinger = _Pinger(link, config.ping_interval, config.ping_timeout)
    pinger.start()
    await stopped
    pinger.stop()

    log.info("worker %s shutting down", link.name)
    listener.stop()
    # Keep relaying briefly so messages already on their way reach their peers.
    await asyncio.sleep(min(_DRAIN_PERIOD, config.shutdown_timeout / 2))
    connections = [p for p in link.peers.values() if isinstance(p, SignalConnection)]
    for connection in connections:
        connection.close(protocol.CloseCode.GOING_AWAY, "server shutting down")
    deadline = loop.time() + config.shutdown_timeout
    while (link.peers or link.backlog) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    link.close()


def _opened(opening: asyncio.Future[Any], sock: socket.socket) -> None:
    if opening.cancelled() or opening.exception() is not None:
        log.warning("worker: could not open a connection: %r", opening)
        sock.close()


def run_worker(config: WorkerConfig) -> None:
    """Run a worker until SIGTERM or SIGINT, on uvloop.

    Tornado runs on any asyncio loop; libuv's makes the per-read and per-write
    bookkeeping of thousands of sockets markedly cheaper than the selector loop.
    """

    async def main() -> None:
        _tune_gc()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_worker(config, stop)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def _tune_gc() -> None:
    # Connections are freed by reference counting: the cyclic collector found
    # under 1,000 objects over 12,000 connections, yet at Python's default
    # thresholds it took a tenth of a worker's time in a connect storm, mostly
    # full collections walking every live connection.  Collect far less often,
    # and never walk what start-up allocated.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
