"""Where a worker's connections arrive: signaling upgrades to the worker, the rest to Tornado.

Usage::

    listener = Listener(sockets, http_server, make_connection, handshake_timeout=10.0,
                        capacity=capacity, certificate=None, proxies=None)
    listener.start()
    ...
    listener.stop()  # stop accepting, close the listening sockets

Each listening socket gets one accept handler.  The first bytes of a new
connection are *peeked* (``MSG_PEEK``), not read: a request line for the
signaling endpoint (``GET /ws/signal/...``) goes to the protocol that
``make_connection(deadline, slot)`` returns (an asyncio protocol that does the
WebSocket handshake itself, run on the socket); anything else
(the browser client's files, ``/healthz``, garbage) goes to Tornado's
``HTTPServer`` untouched, exactly as if Tornado had accepted it.  A
connection that has not said which within ``handshake_timeout`` seconds is
closed, and so is one handed to Tornado whose request head has not arrived by
then (Tornado answers a request that announces a body with 413, unread: see
:class:`~mcp_tornado.capacity.NoBodies`).

Every connection counts against the worker's :class:`~mcp_tornado.capacity.
Capacity` from accept to close, whatever it turns out to be; one over a cap is
answered at once (HTTP 503, or 429 for too many from one address) and closed,
before anything is read.  A connection from a ``--trusted-proxy`` counts in
the total only: its client address is known once its request has arrived
(:meth:`~mcp_tornado.capacity.Slot.claim`).  A connection whose request line is still short is
not polled: ``SO_RCVLOWAT`` keeps it quiet until the bytes that decide have
arrived (with a backing-off poll where the kernel does not honour it).  When
the process is out of file descriptors, accepting pauses briefly, with one log
line per episode.

With a :class:`~mcp_tornado.tls.Certificate` every connection is TLS: the
socket goes straight to asyncio's TLS transport (uvloop's, in C), with the
remaining handshake time as its handshake timeout, and the first *decrypted*
bytes are sorted the same way (:class:`_TLSSorter`).  A signaling connection
keeps that transport (its protocol is swapped for the connection's); one for
Tornado, which reads from a file descriptor, gets one end of a local
``socketpair`` while a :class:`_Splice` copies bytes between the TLS transport
and the other end.  That costs two descriptors and a copy, on the plain HTTP
side only (the page, its assets, ``/healthz``), never on the signaling path.
Over a cap, a TLS connection is closed without an answer (sending one would
cost the handshake the cap is there to save); a client that fails its
handshake (plain HTTP, garbage, a stall past the deadline) is closed, logged
at debug level only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable
from functools import partial
from typing import Any, Final, cast

from tornado.httpserver import HTTPServer

from mcp_tornado.capacity import Capacity, CountedStream, Slot
from mcp_tornado.proxies import TrustedProxies
from mcp_tornado.tls import Certificate

__all__ = ["Listener", "Slot", "is_signal_request"]

log = logging.getLogger(__name__)

_SIGNAL_PREFIXES: Final = (
    b"GET /ws/signal/?",
    b"GET /ws/signal/ ",
    b"GET /ws/signal?",
    b"GET /ws/signal ",
)
_PEEK: Final = max(len(p) for p in _SIGNAL_PREFIXES)
_RETRY: Final = 0.02  # seconds before the first re-peek at a short request line (then doubled)
_RETRY_MAX: Final = 1.0
_ACCEPTS_PER_WAKEUP: Final = 64  # then let the loop serve others
_STARVED_PAUSE: Final = 0.5  # seconds without accepting once out of file descriptors
_STARVED: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Seconds a TLS client has to answer our close_notify (asyncio's default is 30).
_TLS_SHUTDOWN_TIMEOUT: Final = 5.0


# Makes the protocol of a signaling connection: (deadline, slot) -> Connection.
SignalFactory = Callable[["float | None", Slot], asyncio.Protocol]


def is_signal_request(start: bytes) -> bool | None:
    """Whether a request starting with ``start`` is for the signaling endpoint; ``None``: too short.

    >>> is_signal_request(b"GET /ws/signal/?room=a HTTP/1.1"), is_signal_request(b"GET /ws/s")
    (True, None)
    """
    if start.startswith(_SIGNAL_PREFIXES):
        return True
    if len(start) < _PEEK and any(prefix.startswith(start) for prefix in _SIGNAL_PREFIXES):
        return None
    return False


class _Undecided:
    """A connection whose request line has not arrived yet."""

    __slots__ = ("delay", "expiry", "reading", "retry", "slot")

    def __init__(self, expiry: asyncio.TimerHandle | None, slot: Slot) -> None:
        self.expiry = expiry  # closes it at the handshake deadline
        self.reading = True  # watched for its first bytes
        self.retry: asyncio.TimerHandle | None = None  # the next look at a partial line
        self.delay = _RETRY  # until that look; doubles each time
        self.slot = slot


def _ip(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


def _refuse(conn: socket.socket, response: bytes) -> None:
    """Answer a connection over a cap without reading its request, and close it."""
    try:
        conn.send(response)
        # Read what already arrived (a little), so the close is a FIN, not a reset
        # that could overtake the answer.
        for _ in range(4):
            if not conn.recv(65536):
                break
    except OSError:
        pass
    conn.close()


class Listener:
    """Accepts on ``sockets`` and sorts connections between signaling and ``http_server``."""

    def __init__(
        self,
        sockets: list[socket.socket],
        http_server: HTTPServer,
        make_connection: SignalFactory,
        handshake_timeout: float,
        capacity: Capacity | None = None,
        certificate: Certificate | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self._sockets = sockets
        self._http = http_server
        self._make_connection = make_connection
        self._certificate = certificate
        self._proxies = proxies
        self._timeout = handshake_timeout
        self.capacity = capacity or Capacity(0, 0)
        self._loop = asyncio.get_running_loop()
        self._accepting = False
        self._starved = False  # out of file descriptors; logged once per episode
        self._resume: asyncio.TimerHandle | None = None
        self._undecided: dict[socket.socket, _Undecided] = {}

    def start(self) -> None:
        for sock in self._sockets:
            sock.setblocking(False)
        self._watch_sockets()

    def stop(self) -> None:
        """Stop accepting and close the listening sockets; connections already sorted go on."""
        self._unwatch_sockets()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        for conn in list(self._undecided):
            self._give_up(conn)

    # --- accepting --------------------------------------------------------------

    def _watch_sockets(self) -> None:
        if not self._accepting:
            self._accepting = True
            for sock in self._sockets:
                self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _unwatch_sockets(self) -> None:
        if self._accepting:
            self._accepting = False
            for sock in self._sockets:
                self._loop.remove_reader(sock.fileno())

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._starve(exc)
                return
            if self._starved:
                self._starved = False
                log.warning("worker: accepting again", extra={"event": "accepting_again"})
            self._accepted(conn, address)

    def _starve(self, exc: OSError) -> None:
        """Out of descriptors (or memory): pause accepting instead of spinning on the error."""
        if not self._starved:
            self._starved = True
            reason = "out of file descriptors" if exc.errno in _STARVED else "accept failed"
            log.warning(
                "worker: %s (%s); pausing accepts for %gs at a time until it passes "
                "(%d connections open)",
                reason,
                exc.strerror or exc,
                _STARVED_PAUSE,
                self.capacity.total,
                extra={
                    "event": "accepts_paused",
                    "reason": reason,
                    "error": str(exc.strerror or exc),
                    "connections": self.capacity.total,
                },
            )
        self._unwatch_sockets()
        if self._resume is None:
            self._resume = self._loop.call_later(_STARVED_PAUSE, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        if self._sockets:
            self._watch_sockets()

    def _accepted(self, conn: socket.socket, address: Any) -> None:
        conn.setblocking(False)
        ip = _ip(address)
        # A trusted proxy's connections count per address once their request names the client.
        counted = None if self._proxies and self._proxies.trusts(ip) else ip
        refusal = self.capacity.take(counted)
        if refusal is not None:
            if log.isEnabledFor(logging.DEBUG):  # a storm of refusals passes here
                status_line = refusal.split(b"\r\n")[0].decode(errors="replace")
                log.debug(
                    "worker: refused a connection from %s: %s",
                    ip,
                    status_line,
                    extra={
                        "event": "connection_refused",
                        "client": ip,
                        "status": int(status_line.split()[1]),
                    },
                )
            if self._certificate is None:
                _refuse(conn, refusal)
            else:  # (no handshake spent on a connection we refuse)
                conn.close()
            return
        slot = Slot(self.capacity, counted)
        deadline = self._loop.time() + self._timeout if self._timeout else None
        if self._certificate is not None:
            self._start_tls(conn, address, deadline, slot)
            return
        if self._sort(conn, address, deadline, slot, lowat=False):
            return
        # Not readable until the bytes that decide have arrived (or the client
        # hung up): no polling a request line that arrives a byte at a time.
        with contextlib.suppress(OSError):  # if unsupported, the poll backs off instead
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, _PEEK)
        expiry = None if deadline is None else self._loop.call_at(deadline, self._give_up, conn)
        self._undecided[conn] = _Undecided(expiry, slot)
        self._loop.add_reader(conn.fileno(), self._readable, conn, address, deadline)

    # --- the undecided --------------------------------------------------------------

    def _readable(self, conn: socket.socket, address: Any, deadline: float | None) -> None:
        # Peeking leaves the bytes in the socket, so it would stay readable:
        # stop watching it, and poll (backing off) if the line is still short.
        self._loop.remove_reader(conn.fileno())
        self._undecided[conn].reading = False
        self._poll(conn, address, deadline)

    def _poll(self, conn: socket.socket, address: Any, deadline: float | None) -> None:
        undecided = self._undecided.get(conn)
        if undecided is None:
            return
        undecided.retry = None
        if self._sort(conn, address, deadline, undecided.slot, lowat=True):
            del self._undecided[conn]
            if undecided.expiry is not None:
                undecided.expiry.cancel()
        else:
            delay = undecided.delay
            undecided.delay = min(delay * 2, _RETRY_MAX)
            undecided.retry = self._loop.call_later(delay, self._poll, conn, address, deadline)

    def _give_up(self, conn: socket.socket) -> None:
        undecided = self._undecided.pop(conn, None)
        if undecided is None:
            return
        if undecided.reading:
            self._loop.remove_reader(conn.fileno())
        for timer in (undecided.expiry, undecided.retry):
            if timer is not None:
                timer.cancel()
        conn.close()
        undecided.slot.release()

    def _sort(
        self, conn: socket.socket, address: Any, deadline: float | None, slot: Slot, lowat: bool
    ) -> bool:
        """Hand ``conn`` on if its request line says where; ``False``: nothing to go by yet.

        ``lowat``: its ``SO_RCVLOWAT`` was raised, and must come down before handing it on
        (most connections are sorted at accept, before it is raised: no system call).
        """
        try:
            start = conn.recv(_PEEK, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            conn.close()
            slot.release()
            return True
        if not start:  # closed before saying anything
            conn.close()
            slot.release()
            return True
        verdict = is_signal_request(start)
        if verdict is None:
            return False
        try:
            if lowat:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            if verdict:
                self._to_signal(conn, deadline, slot)
            else:
                self._to_tornado(conn, address, deadline, slot)
        except Exception:
            log.exception(
                "worker: could not take a new connection", extra={"event": "accept_failed"}
            )
            conn.close()
            slot.release()
        return True

    def _to_signal(self, conn: socket.socket, deadline: float | None, slot: Slot) -> None:
        connection = self._make_connection(deadline, slot)
        opening = self._loop.connect_accepted_socket(lambda: connection, conn)
        # (not asyncio.ensure_future: it looks the loop up, a getpid() call per connection)
        self._loop.create_task(opening).add_done_callback(partial(_opened, conn, slot))

    def _to_tornado(
        self,
        conn: socket.socket,
        address: Any,
        deadline: float | None,
        slot: Slot,
        secure: bool = False,
    ) -> None:
        http = self._http
        expiry: asyncio.TimerHandle | None = None

        def closed() -> None:
            if expiry is not None:
                expiry.cancel()
            slot.release()

        stream = CountedStream(
            conn,
            max_buffer_size=http.max_buffer_size,
            read_chunk_size=http.read_chunk_size,
            on_close=closed,
            peer=_ip(address),
            secure=secure,
        )
        if deadline is not None:
            # Tornado's own header timeout starts now, not at accept; and a request
            # must have arrived whole by the deadline, whatever its shape.
            expiry = self._loop.call_at(deadline, _expire, stream)
        http.handle_stream(stream, address)

    # --- TLS ----------------------------------------------------------------------

    def _start_tls(
        self, conn: socket.socket, address: Any, deadline: float | None, slot: Slot
    ) -> None:
        assert self._certificate is not None
        timeout = None if deadline is None else max(deadline - self._loop.time(), 0.001)
        sorter = _TLSSorter(self, address, deadline, slot)
        opening = self._loop.connect_accepted_socket(
            lambda: sorter,
            conn,
            ssl=self._certificate.context,  # read per connection: SIGHUP may replace it
            ssl_handshake_timeout=timeout,
            ssl_shutdown_timeout=_TLS_SHUTDOWN_TIMEOUT,
        )
        self._loop.create_task(opening).add_done_callback(partial(_opened, conn, slot))

    def _sorted_tls(
        self,
        transport: asyncio.Transport,
        head: bytes,
        signal: bool,
        address: Any,
        deadline: float | None,
        slot: Slot,
    ) -> None:
        """Hand a TLS connection on, with the decrypted bytes read so far."""
        if signal:
            connection = self._make_connection(deadline, slot)
            transport.set_protocol(connection)
            connection.connection_made(transport)
            connection.data_received(head)
            return
        ours, tornados = socket.socketpair()
        tls_end, pipe_end = _Splice(), _Splice()
        tls_end.other, pipe_end.other = pipe_end, tls_end
        transport.set_protocol(tls_end)
        tls_end.connection_made(transport)
        pipe_end.send(head)
        tornados.setblocking(False)
        self._to_tornado(tornados, address, deadline, slot, secure=True)
        opening = self._loop.connect_accepted_socket(lambda: pipe_end, ours)
        asyncio.ensure_future(opening).add_done_callback(partial(_spliced, ours, tls_end))


class _TLSSorter(asyncio.Protocol):
    """A TLS connection until its first decrypted bytes say where it goes."""

    __slots__ = ("_address", "_deadline", "_expiry", "_head", "_listener", "_slot", "_transport")

    def __init__(self, listener: Listener, address: Any, deadline: float | None, slot: Slot):
        self._listener = listener
        self._address = address
        self._deadline = deadline
        self._slot = slot
        self._head = b""
        self._transport: asyncio.Transport | None = None
        self._expiry: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if self._deadline is not None:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_at(self._deadline, self._transport.abort)

    def data_received(self, data: bytes) -> None:
        head = self._head + data
        verdict = is_signal_request(head[:_PEEK])
        if verdict is None:
            self._head = head
            return
        transport, self._transport = self._transport, None
        if self._expiry is not None:
            self._expiry.cancel()
        assert transport is not None
        try:
            self._listener._sorted_tls(
                transport, head, verdict, self._address, self._deadline, self._slot
            )
        except Exception:
            log.exception(
                "worker: could not take a new TLS connection", extra={"event": "accept_failed"}
            )
            transport.abort()
            self._slot.release()

    def eof_received(self) -> bool:
        return False  # closed before saying where to: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:  # not handed on
            self._transport = None
            if self._expiry is not None:
                self._expiry.cancel()
            self._slot.release()


class _Splice(asyncio.Protocol):
    """One end of a two-way pipe between two transports: the TLS client and Tornado's socket.

    What one end reads, the other writes; when one end stops reading (its
    peer is slow), the other stops reading too; when one ends, so does the other.
    """

    __slots__ = ("_ended", "_pending", "other", "transport")

    def __init__(self) -> None:
        self.other: _Splice | None = None
        self.transport: asyncio.Transport | None = None
        self._pending: list[bytes] = []  # written before the transport was there
        self._ended = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        for data in self._pending:
            self.transport.write(data)
        self._pending = []
        if self._ended:
            self.transport.close()

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            self._pending.append(data)
        elif not transport.is_closing():
            transport.write(data)

    def end(self) -> None:
        """Close this end once what it has to write is out."""
        if not self._ended:
            self._ended = True
            if self.transport is not None:
                self.transport.close()

    def data_received(self, data: bytes) -> None:
        assert self.other is not None
        self.other.send(data)

    def eof_received(self) -> bool:
        assert self.other is not None
        self.other.end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        if self.other is not None:
            self.other.end()
            self.other = None

    def pause_writing(self) -> None:
        other = self.other.transport if self.other is not None else None
        if other is not None and not other.is_closing():
            other.pause_reading()

    def resume_writing(self) -> None:
        other = self.other.transport if self.other is not None else None
        if other is not None and not other.is_closing():
            other.resume_reading()


def _opened(sock: socket.socket, slot: Slot, opening: asyncio.Future[Any]) -> None:
    """A connection's transport is ready, or could not be made (a TLS handshake that failed)."""
    if opening.cancelled() or opening.exception() is not None:
        exc = None if opening.cancelled() else opening.exception()
        # A failed TLS handshake (an OSError) is the client's doing: plain HTTP, garbage,
        # a stall past the deadline, a reset; no more than a debug line.
        level = logging.DEBUG if isinstance(exc, OSError) else logging.WARNING
        log.log(
            level,
            "worker: could not open a connection: %r",
            exc,
            extra={"event": "open_failed", "reason": repr(exc)},
        )
        sock.close()  # (a no-op once the transport owned it)
        slot.release()


def _spliced(sock: socket.socket, tls_end: _Splice, opening: asyncio.Future[Any]) -> None:
    if opening.cancelled() or opening.exception() is not None:
        log.warning(
            "worker: could not pipe a TLS connection to Tornado: %r",
            opening,
            extra={"event": "open_failed", "reason": "tls pipe"},
        )
        sock.close()
        tls_end.end()


def _expire(stream: CountedStream) -> None:
    if not stream.arrived and not stream.closed():
        stream.close()
