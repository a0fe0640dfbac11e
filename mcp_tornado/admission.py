"""Admission: who may connect to a worker and join a room.

Everything a client sends is hostile until checked.  The worker applies the
limits (:class:`~mcp_tornado.settings.LimitSettings`) at four points:

* the connection: :class:`~mcp_tornado.capacity.Capacity` at accept
  (``--max-connections``, HTTP 503; ``--max-connections-per-ip``, HTTP 429: every
  connection counts), the listener's deadline and :func:`http_server_options`
  (``--handshake-timeout``), and :class:`~mcp_tornado.capacity.NoBodies`
  (request bodies refused unread), so idle or half-sent requests cannot pile up;
* the handshake: the origin allow-list (:mod:`mcp_tornado.origins`, HTTP 403);
* the socket opening: :meth:`Gatekeeper.admit` checks the room name
  (:mod:`mcp_tornado.room_names`) and, when a token secret is set, the room
  token (:mod:`mcp_tornado.tokens`);
* every frame: a :class:`~mcp_tornado.ratelimit.TokenBucket`
  (``--rate-limit``/``--rate-burst``) before the one decode, and the bytes
  waiting to be written to each client (``--max-pending-bytes``, for peers that
  stop reading).

Frames over ``--max-message-size`` never get this far: the frame reader refuses
them from the frame header, before reading the payload, and closes with 1009.
"""

from __future__ import annotations

import logging
from typing import Any, Final, NamedTuple

from mcp_tornado import protocol, tokens
from mcp_tornado.origins import OriginPolicy
from mcp_tornado.ratelimit import TokenBucket
from mcp_tornado.room_names import room_name_problem
from mcp_tornado.settings import LimitSettings

log = logging.getLogger(__name__)

MAX_BODY_SIZE: Final = 64 * 1024  # no endpoint takes a request body; Tornado's default is 100 MB


def http_server_options(limits: LimitSettings) -> dict[str, Any]:
    """Keyword arguments for Tornado's ``HTTPServer``: header deadline and body cap.

    A connection that has not sent its request headers within
    ``handshake_timeout`` seconds is closed (Tornado's default is an hour), and a
    request body over :data:`MAX_BODY_SIZE` is refused before it is read.
    Upgraded WebSockets are not affected (their liveness is the ping timeout).
    """
    return {
        "idle_connection_timeout": limits.handshake_timeout or None,
        "max_body_size": MAX_BODY_SIZE,
    }


class Admission(NamedTuple):
    """A client may join ``room`` (or, with ``resume``, ask for its suspended slot there)."""

    room: str
    resume: str = ""  # the resume token of ``?resume=``: the router checks it


def wants_resume(query: dict[str, list[bytes]]) -> bool:
    """Whether the client asked to be resumable (``resumable=1``) or resumes (``resume=``)."""
    return bool(query.get("resume")) or query.get("resumable", [b""])[-1] in (b"1", b"true")


class Refusal(NamedTuple):
    """Send ``event`` (an encoded error frame), then close with ``close_code``."""

    event: str
    close_code: int


def _refusal(code: str, message: str, close_code: int) -> Refusal:
    return Refusal(protocol.encode_event(protocol.Error(code, message)), close_code)


def _last_value(query: dict[str, list[bytes]], name: str) -> str | None:
    """The last ``name=`` value as text (Tornado's rule), ``None`` if absent or not UTF-8."""
    values = query.get(name)
    if not values:
        return ""
    try:
        return values[-1].decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


class Gatekeeper:
    """One per worker: the limits, the origin policy, and the connection count."""

    def __init__(self, limits: LimitSettings) -> None:
        self.limits = limits
        self.origins = OriginPolicy(limits.allowed_origins)
        self.connections = 0
        if limits.token_secret is not None:
            tokens.check_secret(limits.token_secret)

    def full(self) -> bool:
        cap = self.limits.max_connections
        return cap > 0 and self.connections >= cap

    def bucket(self, now: float) -> TokenBucket | None:
        limits = self.limits
        return TokenBucket(limits.rate, limits.burst, now) if limits.rate > 0 else None

    def admit(self, query: dict[str, list[bytes]], now: float | None = None) -> Admission | Refusal:
        """Check the ``room`` (and ``token``) query arguments of a new connection."""
        room = _last_value(query, "room")
        if room is None:
            return _refusal(
                protocol.ErrorCode.INVALID_ROOM,
                "Invalid room name: not UTF-8",
                protocol.CloseCode.INVALID_ROOM,
            )
        room = room or protocol.DEFAULT_ROOM
        problem = room_name_problem(room, self.limits.max_room_length)
        if problem is not None:
            return _refusal(
                protocol.ErrorCode.INVALID_ROOM,
                f"Invalid room name: {problem}",
                protocol.CloseCode.INVALID_ROOM,
            )
        resume = _last_value(query, "resume")
        if resume:
            # The resume token is the grant: single use, bound to this room, and handed
            # only to a client that was admitted (a room token may have expired since).
            return Admission(room, resume)
        secret = self.limits.token_secret
        if secret is None:
            return Admission(room)
        try:
            grant = tokens.verify(secret, _last_value(query, "token") or "", room, now)
        except tokens.TokenError as exc:
            return _refusal(exc.code, exc.message, protocol.CloseCode.INVALID_TOKEN)
        if grant.peer is not None:
            log.debug(
                "worker: %r joins %r with a token",
                grant.peer,
                room,
                extra={"event": "token_accepted", "room": room, "token_peer": grant.peer},
            )
        return Admission(room)
