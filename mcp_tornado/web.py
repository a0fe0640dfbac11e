"""The plain HTTP side of a worker, served by Tornado: the browser client and ``/healthz``.

Usage::

    app = make_app(static_dir, link)
    server = HTTPServer(app, ...)

The signaling WebSocket never reaches Tornado (the worker's
:class:`~mcp_tornado.listener.Listener` hands it to a
:class:`~mcp_tornado.connection.Connection`); everything else on the port does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tornado.web import Application, RequestHandler, StaticFileHandler

from mcp_tornado.access_log import log_request
from mcp_tornado.router_link import RouterLink


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


def make_app(static_dir: Path | None, link: RouterLink) -> Application:
    """The Tornado application a worker serves: everything but the signaling endpoint."""
    routes: list[Any] = [
        (r"/healthz", HealthHandler, {"link": link}),
        (r"/ws/signal/?", _UpgradeOnFreshConnection),
    ]
    if static_dir is not None and (static_dir / "index.html").is_file():
        routes.append(
            (
                r"/(.*)",
                StaticFileHandler,
                {"path": str(static_dir), "default_filename": "index.html"},
            )
        )
    else:
        routes.append((r"/(.*)", _NoFrontendHandler))
    return Application(routes, log_function=log_request)
