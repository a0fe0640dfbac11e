"""One WebSocket connection's I/O: bytes from the socket into the protocol core, bytes out.

Usage::

    connection = Connection(endpoint, deadline, slot)  # an asyncio.Protocol
    loop.connect_accepted_socket(lambda: connection, sock)

A :class:`Connection` reads the HTTP request head, asks its :class:`Endpoint`
whether to upgrade (the endpoint answers with a :class:`Handler` for the
connection, or an HTTP :class:`~mcp_tornado.handshake.Rejection`), sends the
``101`` when the handler says the connection is ready (:meth:`Connection.
complete_upgrade`: a signaling peer waits until the router has put it in its
room, so that an open socket always means a peer in its room), and feeds every
read to a
:class:`~mcp_tornado.websocket.ServerProtocol` and hands the events to its
handler.  It knows nothing of rooms, limits or routers: the signaling
:class:`~mcp_tornado.peer.Peer` is one handler, the Autobahn test echo
another.

Everything said to a client during one event-loop turn (typically a whole
batch from the router) leaves in a single write, from one callback at the end
of the turn (:class:`WriteScheduler`).

Not Tornado's ``WebSocketHandler``: its request machinery cost a worker about
300 us per connection, and its stream a Future per read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol, cast

from mcp_tornado import handshake, telemetry
from mcp_tornado.access_log import access_logged, log_access
from mcp_tornado.capacity import Slot
from mcp_tornado.websocket import (
    BinaryMessage,
    CloseReceived,
    Ping,
    Pong,
    ServerProtocol,
    State,
    TextMessage,
)

log = logging.getLogger(__name__)

CLOSE_WAIT = 5.0  # seconds a client has to answer our close frame (Tornado's figure)
REFUSED_CLOSE_WAIT = 1.0  # the same for a client refused right after its upgrade


class Handler(Protocol):
    """What sits behind an open WebSocket: told of each event, in order."""

    def opened(self, request: handshake.Upgrade) -> None:
        """The upgrade is accepted: call :meth:`Connection.complete_upgrade` when ready.

        Frames may be queued from now on; they leave after the ``101``.
        """

    def message_received(self, data: bytes, text: bool) -> None:
        """A whole message; ``text``: a text message, its UTF-8 already checked."""

    def ping_received(self, data: bytes) -> None:
        """A ping; answer with :meth:`Connection.pong` (or not, if the client is over its limit)."""

    def frames_received(self, count: int) -> None:
        """``count`` frames that reached no other method (fragments, pongs), once per read.

        For the rate limit: with messages and pings, every frame the client sends.
        """

    def close_received(self) -> None:
        """The client closed (or broke the protocol): nothing more will be read.

        Answer with :meth:`Connection.close` when ready (it echoes the client's
        close; after a protocol violation the close frame is already out).
        """

    def stalled(self) -> None:
        """More than ``max_backlog`` bytes wait for the client: it stopped reading."""

    def connection_lost(self) -> None:
        """The TCP connection is gone."""


class Endpoint(Protocol):
    """Decides about each upgrade request; shared by every connection of a listener."""

    writes: WriteScheduler
    max_message_size: int  # larger messages: close 1009
    max_fragments: int | None  # messages of more frames: close 1009; None: no limit
    max_backlog: int  # bytes waiting for a client before its handler is told; 0: no limit

    def accept(
        self, connection: Connection, request: handshake.Upgrade
    ) -> Handler | handshake.Rejection:
        """The handler for an upgrade to accept, or the HTTP error to refuse it with."""
        ...

    def released(self, connection: Connection) -> None:
        """An accepted connection is gone."""


class Connection(asyncio.Protocol):
    """A client's TCP connection: the opening handshake, then WebSocket frames both ways."""

    __slots__ = (
        "_endpoint",
        "_handler",
        "_http",
        "_timer",
        "_ws",
        "client_ip",
        "last_pong",
        "slot",
        "transport",
    )

    def __init__(
        self,
        endpoint: Endpoint,
        deadline: float | None,
        slot: Slot | None = None,
    ) -> None:
        self._endpoint = endpoint
        # The connection's place in the worker's capacity: given back (once) when it ends.
        self.slot = slot
        # The client's address when a trusted proxy forwarded it (set by the endpoint).
        self.client_ip: str | None = None
        self.transport: asyncio.Transport | None = None  # None once lost
        self._handler: Handler | None = None  # set once upgraded
        self._ws: ServerProtocol | None = None  # set once upgraded
        # The HTTP exchange in progress: the request head while it arrives in
        # pieces, then the 101 response until the handler completes the upgrade.
        self._http: bytearray | bytes | None = None
        # The request head's deadline, then the close handshake's.
        self._timer: asyncio.TimerHandle | None = None
        if deadline is not None:
            # (the endpoint's loop: asyncio.get_running_loop() costs a getpid() call)
            self._timer = endpoint.writes.loop.call_at(deadline, self.abort)
        self.last_pong = time.monotonic()

    # --- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        if ws is None:
            transport = self.transport
            if transport is not None and not transport.is_closing():  # not refused
                self._read_head(data)
            return
        handler = self._handler
        assert handler is not None
        for event in ws.receive_data(data):
            if isinstance(event, TextMessage):  # the hot path first
                handler.message_received(event.data, True)
            elif isinstance(event, BinaryMessage):
                handler.message_received(event.data, False)
            elif isinstance(event, Ping):
                handler.ping_received(event.data)
            elif isinstance(event, Pong):
                self.last_pong = time.monotonic()
            elif isinstance(event, CloseReceived):
                handler.close_received()  # it answers with close(): an echo of the client's code
            else:  # ConnectionFailed
                log.debug(
                    "connection failed: %d %s",
                    event.code,
                    event.reason,
                    extra={
                        "event": "connection_failed",
                        "code": event.code,
                        "reason": event.reason,
                        "client": self.remote_ip(),
                    },
                )
                telemetry.counters.closed(event.code)
                handler.close_received()
                self.complete_upgrade()  # (a client that sent frames before its 101)
                self._write()  # what earlier events queued, then the protocol's close frame
                self._finish()
        if ws.silent_frames:  # fragments and pongs: charged like the rest
            count, ws.silent_frames = ws.silent_frames, 0
            handler.frames_received(count)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.release()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        handler = self._handler
        if handler is not None and self._ws is not None:
            if not self._ws.close_sent:
                telemetry.counters.closed(telemetry.ABNORMAL_CLOSE)
            # Drop the handler: a peer and its connection point at each other, and
            # connections must be freed by reference counting, not by the collector.
            self._ws = None
            self._handler = None
            handler.connection_lost()
            self._endpoint.released(self)

    # --- the opening handshake ------------------------------------------------

    def _read_head(self, data: bytes) -> None:
        partial = self._http
        if partial is None and b"\r\n\r\n" in data:  # the usual case: all in one read
            head = data
        else:
            # Arriving in pieces: append, and search only the new bytes (and the
            # three before them), so a client dripping bytes costs linear time.
            if partial is None:
                partial = self._http = bytearray()
            seen = len(partial)
            partial += data
            if partial.find(b"\r\n\r\n", max(0, seen - 3)) < 0:
                if len(partial) > handshake.MAX_HEAD:
                    telemetry.counters.refused[telemetry.HTTP] += 1
                    self._reject(handshake.Rejection(431, "Request headers too large"))
                return
            head = bytes(partial)
            self._http = None
        end = head.index(b"\r\n\r\n") + 4
        self._upgrade(head[:end])
        if len(head) > end and self._ws is not None:  # frames sent right behind the request
            self.data_received(head[end:])

    def _upgrade(self, head: bytes) -> None:
        request = handshake.parse_upgrade(head)
        if isinstance(request, handshake.Rejection):
            telemetry.counters.refused[telemetry.HTTP] += 1
            self._reject(request)
            return
        answer = self._endpoint.accept(self, request)
        if isinstance(answer, handshake.Rejection):
            self._reject(answer)
            return
        self._http = handshake.accept_response(request.key)
        self._handler = answer
        endpoint = self._endpoint
        self._ws = ServerProtocol(endpoint.max_message_size, endpoint.max_fragments)
        answer.opened(request)

    @property
    def upgrading(self) -> bool:
        """Accepted, but the ``101`` waits for the handler's :meth:`complete_upgrade`."""
        return self._ws is not None and self._http is not None

    def complete_upgrade(self) -> None:
        """Send the ``101``, then whatever the handler queued meanwhile."""
        response, transport = self._http, self.transport
        if response is None or self._ws is None or transport is None:
            return
        self._http = None
        if self._timer is not None:  # the opening handshake's deadline
            self._timer.cancel()
            self._timer = None
        transport.write(response)
        if access_logged(101):  # (off by default: then no getpeername() either)
            log_access(101, "GET", self.remote_ip())
        self._write()

    def _reject(self, rejection: handshake.Rejection) -> None:
        log_access(rejection.status, "GET", self.remote_ip())
        transport = self.transport
        assert transport is not None
        transport.write(handshake.rejection_response(rejection))
        transport.close()

    def remote_ip(self) -> str:
        """The client's address: forwarded by a trusted proxy, else the TCP peer's."""
        if self.client_ip is not None:
            return self.client_ip
        return self.peer_ip()

    def peer_ip(self) -> str:
        """The TCP peer's address (a reverse proxy's, behind one)."""
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else "-"

    # --- what handlers and the worker call ------------------------------------

    def client_close_code(self) -> int | None:
        """The code of the client's Close frame (1005 if it had none); ``None``: none came."""
        ws = self._ws
        if ws is None or ws.close_reason is None:
            return None
        code = ws.close_code
        return 1005 if code is None else code

    def release(self) -> None:
        """Give this connection's place in the worker's capacity back (at once, for a refusal)."""
        slot, self.slot = self.slot, None
        if slot is not None:
            slot.release()

    def send_text(self, data: bytes) -> None:
        """Queue a text frame holding ``data`` (UTF-8 already) for the end of this loop turn."""
        ws = self._ws
        if ws is None:
            return
        if not ws.pending_bytes:
            self._endpoint.writes.mark(self)
        ws.send_text(data)
        cap = self._endpoint.max_backlog
        if cap and ws.pending_bytes > cap and self._handler is not None:
            # A flood within one turn: do not even build the write.
            ws.data_to_send()
            self._handler.stalled()

    def send_binary(self, data: bytes) -> None:
        """Queue a binary frame (the signaling protocol never sends one; the test echo does)."""
        ws = self._marked()
        if ws is not None:
            ws.send_binary(data)

    def pong(self, data: bytes) -> None:
        ws = self._marked()
        if ws is not None:
            ws.send_pong(data)

    def _marked(self) -> ServerProtocol | None:
        """The core to queue a frame on, this connection marked for the turn's write.

        (send_text does the same inline: it is the relay's hot path.)
        """
        ws = self._ws
        if ws is not None and not ws.pending_bytes:
            self._endpoint.writes.mark(self)
        return ws

    def ping(self) -> None:
        """Ping the client now (its pong updates :attr:`last_pong`)."""
        ws = self._ws
        if ws is not None and ws.state is State.OPEN and self.transport is not None:
            ws.send_ping()
            self._write()

    def write_queued(self) -> None:
        """Write what this turn queued (called by :class:`WriteScheduler`)."""
        self._write()

    def _write(self) -> None:
        ws, transport = self._ws, self.transport
        if ws is None or transport is None or self._http is not None:
            return  # (nothing goes out before the 101)
        data = ws.data_to_send()
        if not data:
            return
        transport.write(data)
        cap = self._endpoint.max_backlog
        if cap and transport.get_write_buffer_size() > cap and self._handler is not None:
            self._handler.stalled()

    def close(self, code: int | None = None, reason: str = "", wait: float = CLOSE_WAIT) -> None:
        """Start (or, after the client's close frame, finish) the closing handshake.

        What was queued before goes out before the close frame; with no
        ``code``, the client's own code is echoed.  The client has ``wait``
        seconds to answer before the connection is dropped.
        """
        ws = self._ws
        if ws is None or self.transport is None:
            return
        self.complete_upgrade()  # a refusal comes after the 101 (clients read it there)
        if not ws.close_sent:
            sent = code if code is not None else ws.close_code
            telemetry.counters.closed(sent if sent is not None else 1005)
        ws.send_close(code, reason)
        self._write()
        self._finish(wait)

    def _finish(self, wait: float = CLOSE_WAIT) -> None:
        ws, transport = self._ws, self.transport
        if ws is None or transport is None:
            return
        if ws.state is State.CLOSED:
            transport.close()  # after the close frame is written
        elif self._timer is None:  # give the client a moment to answer, then hang up
            self._timer = self._endpoint.writes.loop.call_later(wait, self.abort)

    def abort(self) -> None:
        """Drop the connection without a closing handshake (it cannot answer one)."""
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows


class WriteScheduler:
    """The connections with frames queued during this event-loop turn.

    Everything a worker says to a client in one turn leaves in a single
    write per client, from one callback at the end of the turn.
    """

    __slots__ = ("_dirty", "loop")

    def __init__(self) -> None:
        self._dirty: list[Connection] = []
        self.loop = asyncio.get_running_loop()  # the connections' loop (see Connection)

    def mark(self, connection: Connection) -> None:
        if not self._dirty:
            self.loop.call_soon(self._flush)
        self._dirty.append(connection)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            connection.write_queued()
