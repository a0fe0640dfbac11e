"""Signed room tokens: an expiring, HMAC-SHA256-signed grant to join one room.

Opt-in: a worker configured with a secret requires ``?room=NAME&token=T`` and
refuses anything else with ``invalid_token``/``token_expired`` and close 4401.

A token is ``v1.<claims>.<signature>``: ``claims`` is base64url (unpadded) of a
small JSON object ``{"r": room, "e": expiry_unix_seconds, "p": peer}`` (``p``
optional) and ``signature`` is base64url of
``HMAC-SHA256(secret, "mcp-tornado room token v1." + claims)``.  The signature
is checked (constant time) before the claims are even parsed.

Usage::

    token = mint(secret, "lobby", ttl=3600)
    grant = verify(secret, token, "lobby")   # -> Grant, or raises TokenError
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from pathlib import Path
from typing import Final, NamedTuple

import msgspec

from mcp_tornado import secret_files
from mcp_tornado.protocol import ErrorCode

SECRET_ENV: Final = "MCP_TORNADO_TOKEN_SECRET"
MAX_TOKEN_CHARS: Final = 1024  # longer query values are refused before any work
_VERSION: Final = "v1"
_DOMAIN: Final = b"mcp-tornado room token v1."


class _Claims(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    r: str  # room
    e: int  # expiry, Unix seconds
    p: str | None = None  # peer name (informational: logged on join)


_claims_encoder = msgspec.json.Encoder()
_claims_decoder = msgspec.json.Decoder(_Claims)


class Grant(NamedTuple):
    """What a valid token allows: joining ``room`` until ``expires`` (Unix seconds)."""

    room: str
    expires: int
    peer: str | None


class TokenError(Exception):
    """A token was refused; ``code`` is ``invalid_token`` or ``token_expired``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, claims: str) -> str:
    return _b64(hmac.new(secret, _DOMAIN + claims.encode("ascii"), hashlib.sha256).digest())


def mint(
    secret: bytes, room: str, ttl: float, peer: str | None = None, now: float | None = None
) -> str:
    """A token granting ``room`` (and naming ``peer``) for ``ttl`` seconds from ``now``."""
    check_secret(secret)
    issued = time.time() if now is None else now
    claims = _b64(_claims_encoder.encode(_Claims(room, int(issued + ttl), peer)))
    return f"{_VERSION}.{claims}.{_sign(secret, claims)}"


def verify(secret: bytes, token: str, room: str, now: float | None = None) -> Grant:
    """Check ``token`` grants ``room`` now; raise :class:`TokenError` if not."""
    if not token:
        raise TokenError(ErrorCode.INVALID_TOKEN, "This room needs a token (?token=...)")
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise TokenError(ErrorCode.INVALID_TOKEN, "Malformed room token")
    version, _, rest = token.partition(".")
    claims, _, signature = rest.partition(".")
    if version != _VERSION or not claims or not signature:
        raise TokenError(ErrorCode.INVALID_TOKEN, "Malformed room token")
    if not hmac.compare_digest(_sign(secret, claims).encode(), signature.encode()):
        raise TokenError(ErrorCode.INVALID_TOKEN, "Bad room token signature")
    try:
        grant = _claims_decoder.decode(_unb64(claims))
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        # Signed by us yet unreadable: only possible with a leaked secret or a bug.
        raise TokenError(ErrorCode.INVALID_TOKEN, "Malformed room token") from None
    if not hmac.compare_digest(grant.r.encode(), room.encode()):
        raise TokenError(ErrorCode.INVALID_TOKEN, "The token is for another room")
    if (time.time() if now is None else now) >= grant.e:
        raise TokenError(ErrorCode.TOKEN_EXPIRED, "The room token has expired")
    return Grant(grant.r, grant.e, grant.p)


def check_secret(secret: bytes) -> None:
    secret_files.check(secret, "token")


def load_secret(path: Path | None = None) -> bytes | None:
    """The configured secret: the file at ``path`` if given, else ``$MCP_TORNADO_TOKEN_SECRET``.

    ``None`` means tokens are off (see :func:`mcp_tornado.secret_files.load`).
    """
    return secret_files.load(path, SECRET_ENV, "token")
