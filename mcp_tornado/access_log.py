"""The workers' access log: Tornado's format, without query strings (room tokens travel there).

Each line is the event ``access`` with the fields ``status``, ``method``,
``path`` and ``client`` (the client's address); requests that succeed are
logged at INFO, refusals and errors at WARNING (the level Tornado's access log
runs at, see :func:`mcp_tornado.logs.configure`).
"""

from __future__ import annotations

import logging

from tornado.log import access_log
from tornado.web import RequestHandler


def log_request(handler: RequestHandler) -> None:
    """Tornado's access log line without the query string: room tokens travel there."""
    request = handler.request
    log_access(handler.get_status(), request.method or "-", request.remote_ip or "-", request.path)


def access_logged(status: int) -> bool:
    """Whether a line for ``status`` would be logged (by default only refusals and errors are).

    For callers whose fields cost something to get: a client's address is a
    ``getpeername()`` system call, on every upgrade.
    """
    return access_log.isEnabledFor(logging.INFO if status < 400 else logging.WARNING)


def log_access(status: int, method: str, remote_ip: str, path: str = "/ws/signal/") -> None:
    """One access log line (logger ``tornado.access``), in Tornado's format, no query string."""
    level = logging.INFO if status < 400 else logging.WARNING
    if access_log.isEnabledFor(level):  # every handshake passes here: skip the formatting
        fields = {
            "event": "access",
            "status": status,
            "method": method,
            "path": path,
            "client": remote_ip,
        }
        access_log.log(level, "%d %s %s (%s)", status, method, path, remote_ip, extra=fields)
