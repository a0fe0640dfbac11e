"""Where a worker's connections arrive: signaling upgrades to the worker, the rest to Tornado.

Usage::

    listener = Listener(sockets, http_server, on_signal, handshake_timeout=10.0)
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
closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, Final

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream
from tornado.netutil import add_accept_handler

log = logging.getLogger(__name__)

_SIGNAL_PREFIXES: Final = (
    b"GET /ws/signal/?",
    b"GET /ws/signal/ ",
    b"GET /ws/signal?",
    b"GET /ws/signal ",
)
_PEEK: Final = max(len(p) for p in _SIGNAL_PREFIXES)
_RETRY: Final = 0.02  # seconds between peeks at a request line that arrives a byte at a time

SignalCallback = Callable[[socket.socket, Any, "float | None"], None]


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

    __slots__ = ("expiry", "reading", "retry")

    def __init__(self, expiry: asyncio.TimerHandle | None) -> None:
        self.expiry = expiry  # closes it at the handshake deadline
        self.reading = True  # watched for its first bytes
        self.retry: asyncio.TimerHandle | None = None  # the next look at a partial line


class Listener:
    """Accepts on ``sockets`` and sorts connections between ``on_signal`` and ``http_server``."""

    def __init__(
        self,
        sockets: list[socket.socket],
        http_server: HTTPServer,
        on_signal: SignalCallback,
        handshake_timeout: float,
    ) -> None:
        self._sockets = sockets
        self._http = http_server
        self._on_signal = on_signal
        self._timeout = handshake_timeout
        self._loop = asyncio.get_running_loop()
        self._stop_accepting: list[Callable[[], None]] = []
        self._undecided: dict[socket.socket, _Undecided] = {}

    def start(self) -> None:
        for sock in self._sockets:
            self._stop_accepting.append(add_accept_handler(sock, self._accepted))

    def stop(self) -> None:
        """Stop accepting and close the listening sockets; connections already sorted go on."""
        for stop in self._stop_accepting:
            stop()
        self._stop_accepting = []
        for sock in self._sockets:
            sock.close()
        for conn in list(self._undecided):
            self._give_up(conn)

    def _accepted(self, conn: socket.socket, address: Any) -> None:
        conn.setblocking(False)
        deadline = self._loop.time() + self._timeout if self._timeout else None
        if self._sort(conn, address, deadline):
            return
        expiry = None if deadline is None else self._loop.call_at(deadline, self._give_up, conn)
        self._undecided[conn] = _Undecided(expiry)
        self._loop.add_reader(conn.fileno(), self._readable, conn, address, deadline)

    def _readable(self, conn: socket.socket, address: Any, deadline: float | None) -> None:
        # Peeking leaves the bytes in the socket, so it would stay readable:
        # stop watching it, and poll if the request line is not all there yet.
        self._loop.remove_reader(conn.fileno())
        self._undecided[conn].reading = False
        self._poll(conn, address, deadline)

    def _poll(self, conn: socket.socket, address: Any, deadline: float | None) -> None:
        undecided = self._undecided.get(conn)
        if undecided is None:
            return
        if self._sort(conn, address, deadline):
            del self._undecided[conn]
            if undecided.expiry is not None:
                undecided.expiry.cancel()
        else:
            undecided.retry = self._loop.call_later(_RETRY, self._poll, conn, address, deadline)

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

    def _sort(self, conn: socket.socket, address: Any, deadline: float | None) -> bool:
        """Hand ``conn`` on if its request line says where; ``False``: nothing to go by yet."""
        try:
            start = conn.recv(_PEEK, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        except OSError:
            conn.close()
            return True
        if not start:  # closed before saying anything
            conn.close()
            return True
        verdict = is_signal_request(start)
        if verdict is None:
            return False
        try:
            if verdict:
                self._on_signal(conn, address, deadline)
            else:
                http = self._http
                stream = IOStream(
                    conn, max_buffer_size=http.max_buffer_size, read_chunk_size=http.read_chunk_size
                )
                http.handle_stream(stream, address)
        except Exception:
            log.exception("worker: could not take a new connection")
            conn.close()
        return True
