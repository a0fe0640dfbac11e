"""The plain HTTP side of a worker, served by Tornado: the browser client and the health probes.

Usage::

    app = make_app(static_dir, link)
    server = HTTPServer(app, ...)

The signaling WebSocket never reaches Tornado (the worker's
:class:`~mcp_tornado.listener.Listener` hands it to a
:class:`~mcp_tornado.connection.Connection`); everything else on the port does.
The probes answer JSON: ``/healthz`` (liveness: the worker runs) and
``/readyz`` (readiness: it is registered with a live router, any one of its
router shards).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from tornado.web import Application, HTTPError, RequestHandler, StaticFileHandler

from mcp_tornado.access_log import log_request
from mcp_tornado.router_link import RouterLink

# The browser client loads only its own script, stylesheet and a data: icon, and
# connects its WebSocket to the host that served it ('self' covers ws:/wss: on the
# same host, CSP Level 3); WebRTC itself is not governed by CSP.  No inline script
# or style (React's style props go through the CSSOM, which CSP allows).
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),  # frame-ancestors for browsers without CSP 2
)
IMMUTABLE: Final = "public, max-age=31536000, immutable"
# Vite's build output: assets/NAME-HASH.EXT, where HASH changes with the content.
_HASHED_ASSET: Final = re.compile(r"assets/[^/]+-[A-Za-z0-9_-]{8,}\.[A-Za-z0-9]+")
_TEXT_TYPES: Final = frozenset({"application/javascript", "application/json", "image/svg+xml"})


class _Handler(RequestHandler):
    """Every answer of the HTTP side: the security headers, and no ``Server`` version."""

    def set_default_headers(self) -> None:
        self.clear_header("Server")  # Tornado's "TornadoServer/6.x" tells attackers too much
        for name, value in SECURITY_HEADERS:
            self.set_header(name, value)


class _ProbeHandler(_Handler):
    """A health probe: a small JSON answer about this worker, never cached."""

    def initialize(self, links: Sequence[RouterLink]) -> None:
        self.links = links
        self.link = links[0]

    def answer(self, status: int, body: dict[str, object]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({**body, "worker": self.link.name, "pid": os.getpid()}) + "\n")


class HealthHandler(_ProbeHandler):
    """``GET /healthz``: liveness, 200 whenever this worker's loop answers.

    It never depends on the router: a liveness probe that failed during a
    router outage would have healthy workers restarted, dropping every client.
    """

    def get(self) -> None:
        self.answer(200, {"status": "ok"})


class ReadyHandler(_ProbeHandler):
    """``GET /readyz``: readiness, 200 while this worker is registered with a live router.

    503 otherwise (the router died, restarts, or said goodbye): joins would be
    refused, so a load balancer should send new clients to another worker.
    With router shards it is 200 while *any* shard takes this worker (the rooms
    of a shard that is down are refused with 1013 by every worker alike, so
    taking the worker out of rotation would not help them); ``shards`` lists
    each shard's health.
    """

    def get(self) -> None:
        shards = [
            {
                "shard": link.shard,
                "endpoint": link.endpoint,
                "ready": link.ready,
                "router": link.router_epoch,
                **({"refused": link.refusal} if link.refusal else {}),
            }
            for link in self.links
        ]
        up = [link for link in self.links if link.ready]
        if up:
            self.answer(200, {"status": "ready", "router": up[0].router_epoch, "shards": shards})
        else:
            body: dict[str, object] = {
                "status": "unavailable",
                "reason": "router unavailable",
                "shards": shards,
            }
            self.answer(503, body)


class _UpgradeOnFreshConnection(_Handler):
    """``/ws/signal/`` requests that reached Tornado: a later request on a kept-alive connection.

    The listener sorts connections by their first request, so an upgrade sent
    after, say, ``GET /readyz`` on the same connection lands here.  Browsers
    always open a WebSocket on a new connection; other clients are told to.
    """

    def get(self) -> None:
        self.set_status(400)
        self.finish("open the signaling WebSocket on a new connection\n")


class _NoFrontendHandler(_Handler):
    def get(self, path: str) -> None:
        self.set_status(404)
        self.finish("mcp-tornado: the browser client is not built (cd frontend && npm run build)\n")


class ClientFileHandler(_Handler, StaticFileHandler):
    """The built browser client: Tornado's static files, with safe headers and caching.

    ``index.html`` (and any HTML) is revalidated on every load so a new build is
    picked up at once; Vite's content-hashed ``assets/`` never change, so they
    are cached for a year.  Text is sent as UTF-8.  A path the file system
    cannot even represent (a NUL byte) is a bad request, not a server error.
    """

    def parse_url_path(self, url_path: str) -> str:
        if "\x00" in url_path:
            raise HTTPError(400, "NUL byte in the path")
        return super().parse_url_path(url_path)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        try:
            return super().validate_absolute_path(root, absolute_path)
        except ValueError as exc:  # os.path.realpath & co. on a path they refuse
            raise HTTPError(400, "unusable path: %s", exc) from None

    def get_content_type(self) -> str:
        content_type = super().get_content_type()
        if content_type.startswith("text/") or content_type in _TEXT_TYPES:
            return f"{content_type}; charset=utf-8"
        return content_type

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        return 0  # set_extra_headers says it

    def set_extra_headers(self, path: str) -> None:
        if _HASHED_ASSET.fullmatch(path.replace("\\", "/")):
            self.set_header("Cache-Control", IMMUTABLE)
        else:
            self.set_header("Cache-Control", "no-cache")


def make_app(static_dir: Path | None, links: RouterLink | Sequence[RouterLink]) -> Application:
    """The Tornado application a worker serves: everything but the signaling endpoint.

    ``links``: the worker's link to its router, or to each router shard in order.
    """
    links = [links] if isinstance(links, RouterLink) else list(links)
    routes: list[Any] = [
        (r"/healthz", HealthHandler, {"links": links}),
        (r"/readyz", ReadyHandler, {"links": links}),
        (r"/ws/signal/?", _UpgradeOnFreshConnection),
    ]
    if static_dir is not None and (static_dir / "index.html").is_file():
        routes.append(
            (
                r"/(.*)",
                ClientFileHandler,
                {"path": str(static_dir), "default_filename": "index.html"},
            )
        )
    else:
        routes.append((r"/(.*)", _NoFrontendHandler))
    return Application(routes, log_function=log_request)
