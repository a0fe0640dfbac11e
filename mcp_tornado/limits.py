"""Per-worker limits and admission: what a client may ask for, and how much.

Everything a client sends is hostile until checked.  This module holds the
policy; the worker applies it at four points:

* the connection: :func:`http_server_options` (``--handshake-timeout``, a cap on
  request bodies), so idle or half-sent requests cannot pile up;
* the handshake: :meth:`Gatekeeper.full` (``--max-connections``, HTTP 503) and
  the origin allow-list (:mod:`mcp_tornado.origins`, HTTP 403);
* the socket opening: :meth:`Gatekeeper.admit` checks the room name and, when a
  token secret is set, the room token (:mod:`mcp_tornado.tokens`);
* every frame: a :class:`TokenBucket` (``--rate-limit``/``--rate-burst``)
  before the one decode, and the bytes waiting to be written to each client
  (``--max-pending-bytes``, for peers that stop reading).

Frames over ``--max-message-size`` never get this far: the frame reader refuses
them from the frame header, before reading the payload, and closes with 1009.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from tornado.log import access_log
from tornado.web import RequestHandler

from mcp_tornado import protocol, tokens
from mcp_tornado.origins import OriginPolicy

log = logging.getLogger("mcp_tornado.worker")

DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024
DEFAULT_RATE: Final = 50.0
DEFAULT_BURST: Final = 200
DEFAULT_MAX_ROOM_LENGTH: Final = 64
DEFAULT_MAX_CONNECTIONS: Final = 10_000
DEFAULT_MAX_PENDING_BYTES: Final = 1024 * 1024
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0
MAX_BODY_SIZE: Final = 64 * 1024  # no endpoint takes a request body; Tornado's default is 100 MB


@dataclass(frozen=True)
class Limits:
    """The hardening knobs of a worker (each a CLI flag of ``serve`` and ``worker``)."""

    rate: float = DEFAULT_RATE  # frames per second per connection; 0: unlimited
    burst: int = DEFAULT_BURST  # frames a connection may send at once
    max_room_length: int = DEFAULT_MAX_ROOM_LENGTH  # characters
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # per worker; 0: unlimited
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES  # queued for one client; 0: unlimited
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT  # seconds to send the HTTP headers
    allowed_origins: tuple[str, ...] = ()  # empty: same host and localhost
    token_secret: bytes | None = field(default=None, repr=False)  # None: tokens off

    def __post_init__(self) -> None:
        numbers = {
            "rate-limit": self.rate,
            "max-connections": self.max_connections,
            "max-pending-bytes": self.max_pending_bytes,
            "handshake-timeout": self.handshake_timeout,
        }
        for name, value in numbers.items():
            if not value >= 0:  # also refuses NaN
                raise ValueError(f"--{name} must be 0 (off) or positive, not {value}")
        if self.rate > 0 and self.burst < 1:
            raise ValueError(f"--rate-burst must be at least 1, not {self.burst}")
        if self.max_room_length < 1:
            raise ValueError(f"--max-room-length must be at least 1, not {self.max_room_length}")


def http_server_options(limits: Limits) -> dict[str, Any]:
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


# --- rate ---------------------------------------------------------------------

ALLOW: Final = 0  # take the frame
DROP_AND_WARN: Final = 1  # drop it and send error ``rate_limited`` (first excess frame)
DROP: Final = 2  # drop it silently (the client was already warned)
CLOSE: Final = 3  # the client kept going: ``rate_limited`` and close 4429


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; one token per frame.

    A frame that finds no token is dropped and the bucket goes into debt; the
    first such frame is answered with ``rate_limited``.  A client that sends
    ``burst`` frames beyond its allowance is closed.  Debt is repaid at
    ``rate``, so a client that slows down recovers.  A few float operations
    per frame; ``now`` comes from the caller's clock (seconds).
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> int:
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        self.tokens = tokens - 1.0
        if tokens >= 1.0:
            return ALLOW
        if self.tokens < 1.0 - self.burst:
            return CLOSE
        return DROP_AND_WARN if tokens >= 0.0 else DROP


# --- room names -----------------------------------------------------------------

# Letters, marks, numbers, punctuation and symbols of any script, and the plain
# space.  Refused: control and format characters (bidi overrides, zero-width
# joiners), surrogates, private-use and unassigned code points, and every other
# kind of space or line break.
_ROOM_CATEGORIES: Final = frozenset("LMNPS")


def room_name_problem(name: str, max_length: int = DEFAULT_MAX_ROOM_LENGTH) -> str | None:
    """``None`` if ``name`` is a valid room name, else what is wrong with it."""
    if not name:
        return "the room name is empty"
    if len(name) > max_length:
        return f"the room name is longer than {max_length} characters"
    if name != name.strip():
        return "the room name starts or ends with a space"
    for char in name:
        if char != " " and unicodedata.category(char)[0] not in _ROOM_CATEGORIES:
            return f"the room name contains a disallowed character (U+{ord(char):04X})"
    return None


# --- admission -------------------------------------------------------------------


class Admission(NamedTuple):
    """A client may join ``room``; ``peer`` is the name its token gave it, if any."""

    room: str
    peer: str | None


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

    def __init__(self, limits: Limits) -> None:
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
        secret = self.limits.token_secret
        if secret is None:
            return Admission(room, None)
        try:
            grant = tokens.verify(secret, _last_value(query, "token") or "", room, now)
        except tokens.TokenError as exc:
            return _refusal(exc.code, exc.message, protocol.CloseCode.INVALID_TOKEN)
        if grant.peer is not None:
            log.debug("worker: %r joins %r with a token", grant.peer, room)
        return Admission(room, grant.peer)


def log_request(handler: RequestHandler) -> None:
    """Tornado's access log line without the query string: room tokens travel there."""
    request = handler.request
    log_access(handler.get_status(), request.method or "-", request.remote_ip or "-", request.path)


def log_access(status: int, method: str, remote_ip: str, path: str = "/ws/signal/") -> None:
    """One access log line (logger ``tornado.access``), in Tornado's format, no query string."""
    level = logging.INFO if status < 400 else logging.WARNING
    if access_log.isEnabledFor(level):  # every handshake passes here: skip the formatting
        access_log.log(level, "%d %s %s (%s)", status, method, path, remote_ip)
