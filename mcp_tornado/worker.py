"""A worker process: Tornado serving WebSockets (and the browser client) in front of the router.

Usage::

    run_worker(WorkerConfig(host="127.0.0.1", port=8000, link=LinkConfig("ipc:///run/r.ipc")))

Several workers can share one port (``SO_REUSEPORT``); a worker starts
listening once the router has welcomed it.  Each holds its clients'
sockets and forwards their frames through its :class:`~mcp_tornado.router_link.RouterLink`.
On SIGTERM a worker stops accepting, closes every client with 1001 (going
away), lets queued messages drain to the router, and exits within
``shutdown_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler, StaticFileHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from mcp_tornado import protocol
from mcp_tornado.router_link import LinkConfig, RouterLink

log = logging.getLogger("mcp_tornado.worker")

DEFAULT_STATIC_DIR = Path(__file__).resolve().parent.parent / "frontend" / "dist"


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs, passed in explicitly."""

    link: LinkConfig
    host: str = "127.0.0.1"
    port: int = 8000
    static_dir: Path | None = DEFAULT_STATIC_DIR
    max_message_size: int = 64 * 1024
    ping_interval: float = 20.0  # WebSocket pings, to find clients that vanished
    ping_timeout: float = 20.0
    shutdown_timeout: float = 10.0


class SignalHandler(WebSocketHandler):
    """One client at ``/ws/signal/?room=NAME``: joins the room, relays frames, reports events."""

    link: RouterLink

    def initialize(self, link: RouterLink) -> None:
        self.link = link
        self.room = protocol.DEFAULT_ROOM
        self.paired = False
        self.peer_id: int | None = None

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        self.room = self.get_query_argument("room", protocol.DEFAULT_ROOM) or protocol.DEFAULT_ROOM
        self.peer_id = self.link.join(self)
        if self.peer_id is None:
            self.refuse(_ROUTER_DOWN_EVENT, protocol.CloseCode.TRY_AGAIN_LATER)

    def on_message(self, message: str | bytes) -> None:
        if self.peer_id is None:
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
            self.send_text(_ROUTER_DOWN_EVENT)

    def on_close(self) -> None:
        if self.peer_id is not None:
            self.link.leave(self.peer_id)
            self.peer_id = None

    # --- called by the router link ------------------------------------------

    def send_text(self, text: str) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        with contextlib.suppress(WebSocketClosedError):
            self.write_message(text).add_done_callback(_ignore_closed)

    def refuse(self, text: str, close_code: int) -> None:
        self.send_text(text)
        self.peer_id = None
        self.close(close_code, protocol.close_reason(close_code))


def _ignore_closed(future: asyncio.Future[Any]) -> None:
    # The client went away between our check and the write; on_close handles it.
    if not future.cancelled():
        exc = future.exception()
        if exc is not None and not isinstance(exc, WebSocketClosedError | StreamClosedError):
            log.error("worker: write failed: %r", exc)


_ROUTER_DOWN_EVENT = protocol.encode_event(
    protocol.Error(
        protocol.ErrorCode.ROUTER_UNAVAILABLE,
        "Signaling router unavailable; retry shortly",
    )
)
_BINARY_EVENT = protocol.encode_event(
    protocol.Error(protocol.ErrorCode.INVALID_MESSAGE, "Binary frames must hold UTF-8 JSON")
)


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
    routes: list[Any] = [
        (r"/ws/signal/?", SignalHandler, {"link": link}),
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
        websocket_ping_interval=config.ping_interval,
        websocket_ping_timeout=config.ping_timeout,
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
    server = HTTPServer(app, xheaders=False)
    server.add_sockets(bind_sockets(config.port, config.host, reuse_port=True))
    log.info("worker %s serving on %s:%d", link.name, config.host, config.port)
    await stopped

    log.info("worker %s shutting down", link.name)
    server.stop()
    handlers = [p for p in link.peers.values() if isinstance(p, SignalHandler)]
    for handler in handlers:
        handler.close(protocol.CloseCode.GOING_AWAY, "server shutting down")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.shutdown_timeout
    while (link.peers or link.backlog) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    link.close()


def run_worker(config: WorkerConfig) -> None:
    """Run a worker until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_worker(config, stop)

    asyncio.run(main())
