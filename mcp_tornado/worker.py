"""A worker process: Tornado serving WebSockets (and the browser client) in front of the router.

Usage::

    run_worker(WorkerConfig(host="127.0.0.1", port=8000, link=LinkConfig("ipc:///run/r.ipc")))

Several workers can share one port (``SO_REUSEPORT``); a worker starts
listening once the router has welcomed it.  Each holds its clients'
sockets and forwards their frames through its :class:`~mcp_tornado.router_link.RouterLink`.
On SIGTERM a worker stops accepting, keeps relaying for a quarter second so
messages in flight arrive, closes every client with 1001 (going away), lets
queued messages drain to the router, and exits within ``shutdown_timeout``
seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders
from tornado.ioloop import IOLoop, PeriodicCallback
from tornado.iostream import StreamClosedError
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler, StaticFileHandler
from tornado.websocket import (
    WebSocketClosedError,
    WebSocketHandler,
    WebSocketProtocol,
    _WebSocketParams,
)

from mcp_tornado import limits, protocol
from mcp_tornado.frames import BulkReadProtocol, text_frame_header
from mcp_tornado.limits import Gatekeeper, Limits, Refusal, TokenBucket
from mcp_tornado.router_link import LinkConfig, RouterLink

log = logging.getLogger("mcp_tornado.worker")

_LISTEN_BACKLOG = 4096  # Tornado's 128 drops SYNs (1 s retries) in a connect storm
_DRAIN_PERIOD = 0.25  # seconds of relaying after SIGTERM before clients are closed

DEFAULT_STATIC_DIR = Path(__file__).resolve().parent.parent / "frontend" / "dist"


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs, passed in explicitly."""

    link: LinkConfig
    host: str = "127.0.0.1"
    port: int = 8000
    static_dir: Path | None = DEFAULT_STATIC_DIR
    max_message_size: int = limits.DEFAULT_MAX_MESSAGE_SIZE  # Tornado closes bigger with 1009
    ping_interval: float = 20.0  # WebSocket pings, to find clients that vanished
    ping_timeout: float = 20.0
    shutdown_timeout: float = 10.0
    # Rate, room names, connections, slow readers, origins, tokens: see mcp_tornado.limits.
    limits: Limits = field(default_factory=Limits)


class SignalHandler(WebSocketHandler):
    """One client at ``/ws/signal/?room=NAME``: joins the room, relays frames, reports events."""

    link: RouterLink

    def initialize(self, link: RouterLink, gate: Gatekeeper, writes: _Writes) -> None:
        self.link = link
        self.gate = gate
        self.writes = writes
        self._out: list[bytes] | None = None  # frames queued this loop turn
        self._queued = 0  # their payload bytes
        self.room = protocol.DEFAULT_ROOM
        self.paired = False
        self.peer_id: int | None = None
        self.last_pong = time.monotonic()
        self.bucket: TokenBucket | None = None
        self.counted = False

    def prepare(self) -> None:
        if self.gate.full():  # refused before the upgrade: cheaper than a WebSocket close
            self.set_status(503)
            self.set_header("Retry-After", "5")
            self.finish("server full, try again later\n")

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        if self.request.headers.get("Sec-WebSocket-Version") != "13":
            return None
        params = _WebSocketParams(max_message_size=self.max_message_size)
        return BulkReadProtocol(self, False, params, on_close_frame=self._release_slot)

    def _release_slot(self) -> None:
        # The client is closing: free its room slot (and tell the router right
        # away) before our close echo goes out, so a client that reconnects as
        # soon as its close completes finds the room free.
        if self.peer_id is not None:
            self.link.leave(self.peer_id, at_once=True)
            self.peer_id = None

    def check_origin(self, origin: str) -> bool:
        return self.gate.origins.allows(origin, self.request.headers.get("Host", ""))

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        self.gate.connections += 1
        self.counted = True
        admission = self.gate.admit(self.request.query_arguments)
        if isinstance(admission, Refusal):
            self.refuse(admission.event, admission.close_code)
            return
        self.room = admission.room
        self._drop_handshake_state()
        self.bucket = self.gate.bucket(time.monotonic())
        self.peer_id = self.link.join(self)
        if self.peer_id is None:
            self.refuse(protocol.ROUTER_UNAVAILABLE_EVENT, protocol.CloseCode.TRY_AGAIN_LATER)

    def _drop_handshake_state(self) -> None:
        # Request and response headers serve only the handshake, which is over
        # (Tornado has disabled the handler's HTTP methods), yet they are about
        # 2.4 KB of every idle connection a worker holds by the ten thousand.
        self.request.headers = _NO_HEADERS
        self._headers = _NO_HEADERS

    def on_message(self, message: str | bytes) -> None:
        if self.peer_id is None:
            return
        if self.bucket is not None:
            verdict = self.bucket.take(time.monotonic())
            if verdict:
                self.over_rate(verdict)
                return
        if isinstance(message, bytes):
            try:
                message = message.decode()
            except UnicodeDecodeError:
                self.send_text(_BINARY_EVENT)
                return
        error = protocol.check_client_frame(message)
        if error is not None:
            self.send_text(protocol.encode_event(error))
        elif not self.link.relay(self.peer_id, message):
            self.send_text(protocol.UNDELIVERED_EVENT)

    def on_pong(self, data: bytes) -> None:
        self.last_pong = time.monotonic()

    def on_close(self) -> None:
        if self.counted:
            self.counted = False
            self.gate.connections -= 1
        if self.peer_id is not None:
            self.link.leave(self.peer_id)
            self.peer_id = None

    def over_rate(self, verdict: int) -> None:
        if verdict == limits.DROP_AND_WARN:
            self.send_text(_RATE_LIMITED_EVENT)
        elif verdict == limits.CLOSE:
            self.on_close()  # free the room slot now, not after the close handshake
            self.refuse(_RATE_LIMITED_EVENT, protocol.CloseCode.RATE_LIMITED)

    def on_ping(self, data: bytes) -> None:
        # Pings are frames too, and each one makes Tornado write a pong: they count
        # against the rate limit.
        if self.bucket is not None and self.peer_id is not None:
            verdict = self.bucket.take(time.monotonic())
            if verdict:
                self.over_rate(verdict)

    # --- called by the router link ------------------------------------------

    def send_text(self, text: str) -> None:
        """Queue a text frame; frames queued in one loop turn go out in one write."""
        out = self._out
        if out is None:
            if self.ws_connection is None or self.ws_connection.is_closing():
                return
            out = self._out = []
            self._queued = 0
            self.writes.mark(self)
        data = text.encode()
        out.append(text_frame_header(len(data)))
        out.append(data)
        self._queued += len(data)
        cap = self.gate.limits.max_pending_bytes
        if cap and self._queued > cap:  # a flood within one turn: do not even build the write
            self._out = None
            self._drop_slow_reader()

    def write_queued(self) -> None:
        """Write the frames queued this turn (called by :class:`_Writes`, and before a close)."""
        out, self._out = self._out, None
        connection = self.ws_connection
        if not out or connection is None or connection.stream is None:
            return
        # Not write_message: it costs a Task and a send() per frame, most of a
        # busy worker's time.  When nothing is waiting in the stream's buffer we
        # send() ourselves (skipping the stream's Future); whatever the socket
        # does not take goes through the stream, which keeps order from then on.
        stream = connection.stream
        data = memoryview(b"".join(out))
        if not stream.writing() and not stream.closed():
            try:
                sent = stream.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                stream.close()  # reset by the peer: on_close follows
                return
            if sent == len(data):
                return
            data = data[sent:]
        try:
            stream.write(data)
        except StreamClosedError:
            return
        cap = self.gate.limits.max_pending_bytes
        if cap and limits.pending_bytes(connection) > cap:
            self._drop_slow_reader()

    def _drop_slow_reader(self) -> None:
        # It stopped reading: drop it rather than buffer without bound.
        log.info("worker: dropping a client that stopped reading (room %r)", self.room)
        self.on_close()
        self.close(protocol.CloseCode.TOO_SLOW, protocol.close_reason(protocol.CloseCode.TOO_SLOW))

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.write_queued()  # what was said before the close goes before the close frame
        super().close(code, reason)

    def refuse(self, text: str, close_code: int) -> None:
        self.send_text(text)
        self.peer_id = None
        self.close(close_code, protocol.close_reason(close_code))


class _Writes:
    """The clients with frames queued during this event-loop turn.

    Everything a worker says to a client in one turn (typically a whole batch
    from the router) leaves in a single ``send()`` per client, from one
    callback at the end of the turn.
    """

    def __init__(self) -> None:
        self._dirty: list[SignalHandler] = []
        self._loop = IOLoop.current()

    def mark(self, handler: SignalHandler) -> None:
        if not self._dirty:
            self._loop.add_callback(self._flush)
        self._dirty.append(handler)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for handler in dirty:
            handler.write_queued()


_NO_HEADERS = HTTPHeaders()  # shared, never written: see SignalHandler._drop_handshake_state

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
            if not isinstance(peer, SignalHandler) or peer.ws_connection is None:
                continue
            if peer.last_pong < deadline:
                log.info("worker: peer %s stopped answering pings; dropping it", peer.peer_id)
                stream = peer.ws_connection.stream
                if stream is not None:
                    stream.close()
            else:
                with contextlib.suppress(WebSocketClosedError):
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


class _NoFrontendHandler(RequestHandler):
    def get(self, path: str) -> None:
        self.set_status(404)
        self.finish("mcp-tornado: the browser client is not built (cd frontend && npm run build)\n")


def make_app(config: WorkerConfig, link: RouterLink) -> Application:
    """The Tornado application a worker serves."""
    gate = Gatekeeper(config.limits)
    routes: list[Any] = [
        (r"/ws/signal/?", SignalHandler, {"link": link, "gate": gate, "writes": _Writes()}),
        (r"/healthz", HealthHandler, {"link": link}),
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
    return Application(
        routes,
        websocket_max_message_size=config.max_message_size,
        log_function=limits.log_request,
    )


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
    server = HTTPServer(app, xheaders=False, **limits.http_server_options(config.limits))
    listeners = bind_sockets(config.port, config.host, reuse_port=True, backlog=_LISTEN_BACKLOG)
    server.add_sockets(listeners)
    log.info("worker %s serving on %s:%d", link.name, config.host, config.port)
    pinger = _Pinger(link, config.ping_interval, config.ping_timeout)
    pinger.start()
    await stopped
    pinger.stop()

    log.info("worker %s shutting down", link.name)
    server.stop()
    # Keep relaying briefly so messages already on their way reach their peers.
    await asyncio.sleep(min(_DRAIN_PERIOD, config.shutdown_timeout / 2))
    handlers = [p for p in link.peers.values() if isinstance(p, SignalHandler)]
    for handler in handlers:
        handler.close(protocol.CloseCode.GOING_AWAY, "server shutting down")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.shutdown_timeout
    while (link.peers or link.backlog) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    link.close()


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
