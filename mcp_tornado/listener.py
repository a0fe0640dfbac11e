"""Where a worker's connections arrive: signaling upgrades to the worker, the rest to Tornado.

Usage::

    listener = Listener(sockets, http_server, on_signal, handshake_timeout=10.0, capacity=capacity)
    listener.start()
    ...
    listener.stop()  # stop accepting, close the listening sockets

Each listening socket gets one accept handler.  The first bytes of a new
connection are *peeked* (``MSG_PEEK``), not read: a request line for the
signaling endpoint (``GET /ws/signal/...``) goes to ``on_signal(sock,
address, deadline)``, which does the WebSocket handshake itself; anything else
(the browser client's files, ``/healthz``, garbage) goes to Tornado's
``HTTPServer`` untouched, exactly as if Tornado had accepted it.  A
connection that has not said which within ``handshake_timeout`` seconds is
closed, and so is one handed to Tornado whose request head has not arrived by
then (Tornado answers a request that announces a body with 413, unread: see
:class:`~mcp_tornado.capacity.NoBodies`).

Every connection counts against the worker's :class:`~mcp_tornado.capacity.
Capacity` from accept to close, whatever it turns out to be; one over a cap is
answered at once (HTTP 503, or 429 for too many from one address) and closed,
before anything is read.  A connection whose request line is still short is
not polled: ``SO_RCVLOWAT`` keeps it quiet until the bytes that decide have
arrived (with a backing-off poll where the kernel does not honour it).  When
the process is out of file descriptors, accepting pauses briefly, with one log
line per episode.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any, Final

from tornado.httpserver import HTTPServer

from mcp_tornado.capacity import Capacity, CountedStream

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


class Slot:
    """A connection's place in the worker's :class:`Capacity`: given back once, however it ends."""

    __slots__ = ("_capacity", "ip")

    def __init__(self, capacity: Capacity | None, ip: str) -> None:
        self._capacity = capacity
        self.ip = ip

    def release(self) -> None:
        capacity, self._capacity = self._capacity, None
        if capacity is not None:
            capacity.give_back(self.ip)


SignalCallback = Callable[[socket.socket, Any, "float | None", Slot], None]


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
    """Accepts on ``sockets`` and sorts connections between ``on_signal`` and ``http_server``."""

    def __init__(
        self,
        sockets: list[socket.socket],
        http_server: HTTPServer,
        on_signal: SignalCallback,
        handshake_timeout: float,
        capacity: Capacity | None = None,
    ) -> None:
        self._sockets = sockets
        self._http = http_server
        self._on_signal = on_signal
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
        refusal = self.capacity.take(ip)
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
            _refuse(conn, refusal)
            return
        slot = Slot(self.capacity, ip)
        deadline = self._loop.time() + self._timeout if self._timeout else None
        if self._sort(conn, address, deadline, slot):
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
        if self._sort(conn, address, deadline, undecided.slot):
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

    def _sort(self, conn: socket.socket, address: Any, deadline: float | None, slot: Slot) -> bool:
        """Hand ``conn`` on if its request line says where; ``False``: nothing to go by yet."""
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
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            if verdict:
                self._on_signal(conn, address, deadline, slot)
            else:
                self._to_tornado(conn, address, deadline, slot)
        except Exception:
            log.exception(
                "worker: could not take a new connection", extra={"event": "accept_failed"}
            )
            conn.close()
            slot.release()
        return True

    def _to_tornado(
        self, conn: socket.socket, address: Any, deadline: float | None, slot: Slot
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
        )
        if deadline is not None:
            # Tornado's own header timeout starts now, not at accept; and a request
            # must have arrived whole by the deadline, whatever its shape.
            expiry = self._loop.call_at(deadline, _expire, stream)
        http.handle_stream(stream, address)


def _expire(stream: CountedStream) -> None:
    if not stream.arrived and not stream.closed():
        stream.close()
