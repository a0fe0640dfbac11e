"""What every connection of a worker costs, counted from accept to close, and the fds to pay for it.

Usage::

    capacity = Capacity(max_connections=10_000, max_per_ip=256)
    refusal = capacity.take(ip)      # at accept, before anything is read
    ...
    capacity.give_back(ip)           # exactly once, when that connection ends

    slot = Slot(capacity, None)      # a connection from a trusted proxy: counted in total ...
    slot.claim(client_ip)            # ... and per address once its request names the client
    slot.release()                   # gives back whatever it holds, once

    check_fd_limit(10_000)           # at start: raise the soft RLIMIT_NOFILE, or fail

Every connection counts, whatever it turns out to be: one still deciding
between the signaling endpoint and Tornado, a WebSocket handshake, an open
WebSocket, a request to Tornado (``/healthz``, the browser client).  So
``--max-connections`` bounds a worker's file descriptors, and
``--max-connections-per-ip`` keeps one address from holding all of them.
A connection from a ``--trusted-proxy`` is counted per address only once its
request says whose it is (:meth:`Slot.claim`, for WebSocket upgrades).

:class:`NoBodies` wraps the Tornado application: no endpoint takes a request
body, so one that announces a body is answered 413 before a byte of it is read,
and the connection closed.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Awaitable
from typing import Final

from tornado import httputil
from tornado.iostream import IOStream, StreamClosedError

from mcp_tornado.proxies import TrustedProxies
from mcp_tornado.telemetry import CAPACITY, PER_IP, counters

log = logging.getLogger(__name__)

# Descriptors a worker needs besides its clients: listening sockets, the router
# link (ZeroMQ's sockets, its reaper and I/O threads' eventfds), the event
# loop, logs, a static file being sent.
FD_RESERVE: Final = 128

SERVER_FULL: Final = "server full, try again later"
TOO_MANY_FROM_IP: Final = "too many connections from your address"


def _response(status: int, reason: str, text: str, extra: str = "") -> bytes:
    body = (text + "\n").encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n"
    ).encode() + body


FULL_RESPONSE: Final = _response(503, "Service Unavailable", SERVER_FULL, "Retry-After: 5\r\n")
IP_RESPONSE: Final = _response(429, "Too Many Requests", TOO_MANY_FROM_IP, "Retry-After: 5\r\n")
BODY_RESPONSE: Final = _response(413, "Content Too Large", "no endpoint here takes a request body")


class Capacity:
    """The connections of one worker: in total and per client address."""

    __slots__ = ("by_ip", "max_connections", "max_per_ip", "total")

    def __init__(self, max_connections: int, max_per_ip: int) -> None:
        self.max_connections = max_connections  # 0: no cap
        self.max_per_ip = max_per_ip  # 0: no cap
        self.total = 0
        self.by_ip: dict[str, int] = {}

    def take(self, ip: str | None) -> bytes | None:
        """Count a new connection from ``ip``; or the HTTP response refusing it (not counted).

        ``ip`` ``None``: counted in the total only (a proxy's connection, see :class:`Slot`).
        """
        if self.max_connections and self.total >= self.max_connections:
            counters.refused[CAPACITY] += 1
            return FULL_RESPONSE
        if ip is not None and not self.take_ip(ip):
            counters.refused[PER_IP] += 1
            return IP_RESPONSE
        self.total += 1
        return None

    def take_ip(self, ip: str) -> bool:
        """Count one more connection from ``ip``; ``False`` (not counted) when it is at the cap."""
        held = self.by_ip.get(ip, 0)
        if self.max_per_ip and held >= self.max_per_ip:
            return False
        self.by_ip[ip] = held + 1
        return True

    def give_back(self, ip: str | None) -> None:
        """A connection counted by :meth:`take` is gone (call once per connection)."""
        self.total -= 1
        if ip is None:
            return
        held = self.by_ip.get(ip, 0) - 1
        if held > 0:
            self.by_ip[ip] = held
        else:
            self.by_ip.pop(ip, None)


class Slot:
    """A connection's place in a :class:`Capacity`: given back once, however it ends.

    ``ip`` is the address it counts against, ``None`` while it counts in the
    total only (a connection from a trusted proxy, until :meth:`claim`).
    """

    __slots__ = ("_capacity", "ip")

    def __init__(self, capacity: Capacity | None, ip: str | None) -> None:
        self._capacity = capacity
        self.ip = ip

    def claim(self, ip: str) -> bool:
        """Count this connection against ``ip`` too; ``False`` when ``ip`` is at its cap.

        A slot that already counts against an address keeps it (and says yes).
        """
        capacity = self._capacity
        if capacity is None or self.ip is not None:
            return True
        if not capacity.take_ip(ip):
            return False
        self.ip = ip
        return True

    def release(self) -> None:
        capacity, self._capacity = self._capacity, None
        if capacity is not None:
            capacity.give_back(self.ip)


def check_fd_limit(max_connections: int) -> str | None:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard one; the reason to refuse to start, if any.

    Each connection is one descriptor; :data:`FD_RESERVE` more are kept for the
    worker itself.  With no connection cap, nothing is checked.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # pragma: no cover - refused by the system
            log.warning(
                "could not raise the open-file limit from %d to %d: %s",
                soft,
                hard,
                exc,
                extra={"event": "fd_limit_kept", "soft": soft, "hard": hard},
            )
    if max_connections and soft != resource.RLIM_INFINITY:
        needed = max_connections + FD_RESERVE
        if needed > soft:
            return (
                f"--max-connections {max_connections} needs {needed} file descriptors "
                f"but the open-file limit is {soft} (raise it with `ulimit -n`/LimitNOFILE=, "
                f"or lower --max-connections to at most {max(soft - FD_RESERVE, 0)})"
            )
    return None


class CountedStream(IOStream):
    """A Tornado connection that gives its place back when it closes, and has a deadline.

    ``arrived`` is set once a request head has been read (bodies are refused),
    so the listener's deadline closes only requests still arriving.  ``peer``
    is the client's TCP address and ``secure`` whether it came over TLS (then
    the stream is the far end of a local pipe, see :mod:`mcp_tornado.listener`).
    """

    def __init__(
        self,
        *args: object,
        on_close: object = None,
        peer: str = "-",
        secure: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.on_close = on_close
        self.arrived = False
        self.peer = peer
        self.secure = secure

    def close(self, exc_info: object = False) -> None:
        first = not self.closed()
        super().close(exc_info)  # type: ignore[arg-type]
        on_close, self.on_close = self.on_close, None
        if first and callable(on_close):
            on_close()


class _RefuseBodies(httputil.HTTPMessageDelegate):
    """Passes a request on to the application unless it announces a body.

    It also tells the request who its client is (the TCP peer, or the address a
    trusted proxy forwarded) and whether it came over TLS.
    """

    __slots__ = ("_conn", "_delegate", "_proxies")

    def __init__(
        self,
        delegate: httputil.HTTPMessageDelegate,
        conn: httputil.HTTPConnection,
        proxies: TrustedProxies | None,
    ):
        self._delegate = delegate
        self._conn = conn
        self._proxies = proxies

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        stream = getattr(self._conn, "stream", None)
        if isinstance(stream, CountedStream):
            stream.arrived = True
            context = getattr(self._conn, "context", None)
            if context is not None:  # read by HTTPServerRequest, made after this call
                proxies, peer = self._proxies, stream.peer
                context.remote_ip = (
                    proxies.client(peer, headers.get("X-Forwarded-For"), headers.get("Forwarded"))
                    if proxies
                    else peer
                )
                if stream.secure:
                    context.protocol = "https"
        length = headers.get("Content-Length")
        if "Transfer-Encoding" in headers or (length is not None and length.strip() != "0"):
            # Take the stream from Tornado (it would read the body first), answer, hang up.
            detach = getattr(self._conn, "detach", None)
            if detach is not None:
                raw = detach()
                try:
                    raw.write(BODY_RESPONSE).add_done_callback(lambda _: raw.close())
                except StreamClosedError:
                    raw.close()
                return None
        return self._delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self._delegate.data_received(chunk)

    def finish(self) -> None:
        self._delegate.finish()

    def on_connection_close(self) -> None:
        self._delegate.on_connection_close()


class NoBodies(httputil.HTTPServerConnectionDelegate):
    """The Tornado application, behind a refusal of every request body (HTTP 413, unread).

    With ``proxies``, a request from one of them is logged (and seen by the
    application) with the client address the proxy forwarded.
    """

    def __init__(
        self, app: httputil.HTTPServerConnectionDelegate, proxies: TrustedProxies | None = None
    ) -> None:
        self.app = app
        self.proxies = proxies

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        delegate = self.app.start_request(server_conn, request_conn)
        return _RefuseBodies(delegate, request_conn, self.proxies)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)
