"""The WebSocket opening handshake (RFC 6455 4.2) of the signaling endpoint, as pure functions.

:func:`parse_upgrade` reads a request head (the bytes up to and including the
blank line) and returns either an :class:`Upgrade` or the :class:`Rejection`
to answer with; :func:`accept_response` and :func:`rejection_response` build
the bytes of the answer.  Nothing here does I/O, so each rule is tested on
its own; :mod:`mcp_tornado.worker` applies them to a connection.

The rules are Tornado's ``WebSocketHandler``'s: ``GET`` over HTTP/1.1 with
``Upgrade: websocket``, ``Connection: upgrade``, a ``Host``, a
``Sec-WebSocket-Key`` and ``Sec-WebSocket-Version: 13``; the ``Origin`` (or
the older ``Sec-WebSocket-Origin``) is returned for the caller's policy.  No
subprotocol and no extension is ever selected.  Stricter than Tornado, as RFC
6455 4.2.1 asks: the key must be the base64 of 16 bytes, and a request that
repeats ``Host``, ``Upgrade``, ``Sec-WebSocket-Key`` or
``Sec-WebSocket-Version`` is refused (other repeated headers are joined with a
comma, as HTTP allows).  Stricter than Tornado as well, since nothing here
needs leniency: the version is exactly ``HTTP/1.1``; the head is printable
ASCII (tabs allowed in values) with CRLF line ends: no NUL, no other control
byte, no byte over 0x7F (RFC 9110 5.5: NUL, CR and LF in a value must be
refused or replaced, other control bytes are invalid, bytes over 0x7F are
obsolete, and no header we read needs one); and a head over :data:`MAX_HEAD`
bytes gets 431 however it arrived.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final, NamedTuple

from tornado.escape import parse_qs_bytes

SIGNAL_PATHS: Final = frozenset({"/ws/signal", "/ws/signal/"})
MAX_HEAD: Final = 64 * 1024  # Tornado's default max_header_size
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Anything but printable ASCII, tab, CR and LF (CR and LF must pair up: checked per line).
_BAD_BYTE: Final = re.compile(rb"[^\t\r\n\x20-\x7e]")
# Headers that carry one value: a second one is not a list but an ambiguity (which
# key would the accept value answer?), so it is refused rather than joined.
_SINGLE: Final = frozenset({"host", "upgrade", "sec-websocket-key", "sec-websocket-version"})


class Upgrade(NamedTuple):
    """A valid upgrade request to the signaling endpoint."""

    key: str
    query: dict[str, list[bytes]]  # as Tornado's ``request.query_arguments``
    host: str
    origin: str | None
    # What a reverse proxy said about the client (believed only from a trusted one).
    forwarded_for: str | None = None  # X-Forwarded-For
    forwarded: str | None = None  # Forwarded (RFC 7239)


class Rejection(NamedTuple):
    """An HTTP error to answer instead of upgrading."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()


_REASONS: Final = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    421: "Misdirected Request",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def parse_upgrade(head: bytes) -> Upgrade | Rejection:
    """Check a request head for the signaling endpoint; header names are case-insensitive."""
    if len(head) > MAX_HEAD:
        return Rejection(431, "Request headers too large")
    if _BAD_BYTE.search(head) is not None:
        return Rejection(400, "Control or non-ASCII byte in the request head")
    lines = head.decode("ascii").split("\r\n")
    request_line = lines[0].split(" ")
    if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
        return Rejection(400, "Malformed request line")
    method, target, version = request_line
    path, _, query = target.partition("?")
    if path not in SIGNAL_PATHS:
        return Rejection(404, "Not found")
    if method != "GET" or version != "HTTP/1.1":
        return Rejection(400, "A WebSocket upgrade is a GET over HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or "\r" in line or "\n" in line:
            return Rejection(400, "Malformed header line")
        name = name.lower()
        value = value.strip()
        if name not in headers:
            headers[name] = value
        elif name in _SINGLE:
            return Rejection(400, f"Duplicate {name} header")
        else:
            headers[name] = f"{headers[name]},{value}"
    if headers.get("upgrade", "").lower() != "websocket":
        return Rejection(400, 'Can "Upgrade" only to "WebSocket".')
    if "upgrade" not in (
        token.strip().lower() for token in headers.get("connection", "").split(",")
    ):
        return Rejection(400, '"Connection" must be "Upgrade".')
    if headers.get("sec-websocket-version") != "13":
        return Rejection(426, "Only WebSocket version 13", (("Sec-WebSocket-Version", "13"),))
    key = headers.get("sec-websocket-key", "")
    host = headers.get("host", "")
    if not key or not host:
        return Rejection(400, "Missing/Invalid WebSocket headers")
    if not _valid_key(key):
        return Rejection(400, "Sec-WebSocket-Key must be the base64 of 16 bytes")
    origin = headers.get("origin", headers.get("sec-websocket-origin"))
    query_arguments = parse_qs_bytes(query, keep_blank_values=True)
    return Upgrade(
        key,
        query_arguments,
        host,
        origin,
        headers.get("x-forwarded-for"),
        headers.get("forwarded"),
    )


def _valid_key(key: str) -> bool:
    """RFC 6455 4.2.1: "a base64-encoded value that, when decoded, is 16 bytes in length"."""
    if len(key) != 24:  # 16 bytes are always 24 base64 characters, "==" included
        return False
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:  # binascii.Error (not base64) is one, and so is a non-ASCII key
        return False


def accept_response(key: str) -> bytes:
    """The ``101 Switching Protocols`` answer to an upgrade with ``key``."""
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def rejection_response(rejection: Rejection) -> bytes:
    """A complete HTTP error response; the connection is closed after it."""
    body = (rejection.message + "\n").encode()
    lines = [
        f"HTTP/1.1 {rejection.status} {_REASONS.get(rejection.status, 'Error')}",
        "Content-Type: text/plain; charset=UTF-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in rejection.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
