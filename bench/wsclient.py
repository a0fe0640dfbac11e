"""The load client's WebSocket layer, on picows (see bench/README.md for why).

A :class:`Peer` is one simulated browser tab: one WebSocket in one room. Frames are
handed to an owner object (a pair of peers in a scenario) as raw bytes, with no
asyncio task per peer: the callbacks run straight from the protocol, which is
what lets one client process drive thousands of sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import ssl
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

TEXT = WSMsgType.TEXT
T = TypeVar("T")
_JOINED = b'{"type":"joined"'  # how mcp-tornado's joined event starts


class Tally:
    """What every peer of this client process sent and was told, for a server's own counts
    to be checked against (``--metrics-url``): text frames sent, ``joined`` events got."""

    __slots__ = ("joined", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.joined = 0

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "joined": self.joined}


#: This process's tally (each client process sends its own to the main process).
TALLY = Tally()


#: How ``wss://`` servers are verified, for this process and the client processes it
#: starts: a CA bundle's path, :data:`INSECURE`, or unset (the system's CAs).
TLS_ENV = "MCP_BENCH_TLS_CA"
INSECURE = "insecure"


def set_tls_trust(ca: str | None = None, insecure: bool = False) -> None:
    """Trust ``ca`` (a PEM file) for ``wss://`` targets, or verify nothing (``insecure``).

    Set in the environment, so the client processes (started later) inherit it.
    """
    if insecure:
        os.environ[TLS_ENV] = INSECURE
    elif ca:
        if not os.path.isfile(ca):
            raise SystemExit(f"bench: --ca {ca}: no such file")
        os.environ[TLS_ENV] = os.path.abspath(ca)
    else:
        return
    tls_context.cache_clear()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one client context of this process (made once: loading CAs is not cheap)."""
    trust = os.environ.get(TLS_ENV, "")
    if trust == INSECURE:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=trust or None)


class PeerOwner(Protocol):
    """Receives everything a peer sees."""

    def on_message(self, peer: Peer, data: bytes) -> None: ...

    def on_closed(self, peer: Peer) -> None: ...


class Peer(WSListener):
    """One WebSocket connection of the load client."""

    __slots__ = (
        "_disconnected",
        "close_code",
        "closed",
        "owner",
        "pongs",
        "role",
        "transport",
    )

    def __init__(self, owner: PeerOwner | None, role: int) -> None:
        super().__init__()
        self.owner = owner
        self.role = role
        self.transport: WSTransport | None = None
        self.close_code: int | None = None
        self.closed = False
        self.pongs = 0

    # picows callbacks -------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == TEXT or msg_type == WSMsgType.BINARY:
            data = frame.get_payload_as_bytes()
            if data.startswith(_JOINED):
                TALLY.joined += 1
            if self.owner is not None:
                self.owner.on_message(self, data)
        elif msg_type == WSMsgType.PONG:
            self.pongs += 1
        elif msg_type == WSMsgType.CLOSE:
            code: Any = frame.get_close_code()  # a plain int at run time (any code)
            self.close_code = int(code)
            # Complete the closing handshake ourselves (picows leaves it to us).
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if self.owner is not None:
            self.owner.on_closed(self)

    # helpers ----------------------------------------------------------------------
    def send(self, data: bytes) -> bool:
        """Send a text frame; False when the socket is already gone."""
        transport = self.transport
        if transport is None or self.closed:
            return False
        transport.send(TEXT, data)
        TALLY.sent += 1
        return True

    def ping(self) -> bool:
        transport = self.transport
        if transport is None or self.closed:
            return False
        transport.send_ping()
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Clean close: send CLOSE, wait (bounded) for the server to finish it."""
        transport = self.transport
        if transport is None or self.closed:
            return
        with contextlib.suppress(Exception):
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
        try:
            await asyncio.wait_for(transport.wait_disconnected(), timeout)
        except TimeoutError:
            transport.disconnect(graceful=False)

    def abort(self) -> None:
        transport = self.transport
        if transport is not None and not self.closed:
            transport.disconnect(graceful=False)


def room_url(base_url: str, room: str) -> str:
    """``base_url`` with ``room=ROOM`` added to its query string."""
    sep = "&" if urlsplit(base_url).query else "?"
    return f"{base_url}{sep}room={quote(room, safe='')}"


def error_kind(exc: BaseException) -> str:
    """Short, stable name for a connect failure (used as an error-count key)."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "connect_timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect_refused"
    if isinstance(exc, ConnectionResetError):
        return "connect_reset"
    status = getattr(getattr(exc, "response", None), "status", None)
    if status is not None:
        return f"http_{int(status)}"
    detail = str(exc).strip().splitlines()[0][:60] if str(exc).strip() else ""
    return f"connect_{type(exc).__name__}" + (f":{detail}" if detail else "")


async def connect_peer(
    url: str,
    owner: PeerOwner | None,
    role: int,
    timeout: float = 10.0,
) -> Peer:
    """Open one WebSocket; raises on failure (see :func:`error_kind`)."""

    def factory() -> Peer:
        return Peer(owner, role)

    _, listener = await ws_connect(
        factory,
        url,
        ssl_context=tls_context() if url.startswith("wss:") else None,
        websocket_handshake_timeout=timeout,
        read_buffer_init_size=4096,
        max_redirects=0,
    )
    assert isinstance(listener, Peer)
    return listener


def raise_nofile_limit(wanted: int = 1_048_576) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit as far as allowed; returns the new (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (much cheaper per socket), else the default loop."""
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine factory on a fresh (uv)loop and close it."""
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(factory())
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
