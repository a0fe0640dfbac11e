"""The ICE servers a joining peer is given: STUN URIs, and TURN URIs with time-limited credentials.

Off by default.  Configured with ``--stun-uri``, ``--turn-uri`` and a shared
secret (``--turn-secret-file`` or ``$MCP_TORNADO_TURN_SECRET``), every
``joined`` event carries an ``iceServers`` list that a browser passes straight
to ``new RTCPeerConnection({iceServers})``.

TURN credentials follow the TURN REST API scheme ("A REST API for access to
TURN services", draft-uberti-behave-turn-rest-00) that coturn's
``use-auth-secret`` checks with the same secret (``static-auth-secret``)::

    username   = "<expiry, Unix seconds>:<peer id>"
    credential = base64(HMAC-SHA1(secret, username))

The TURN server recomputes the credential from the username, and allocates
no relay with it once the expiry has passed (a relay allocated before keeps
being refreshed: coturn checks the expiry at Allocate); nothing is shared with
it but the secret.  The
peer id is random per join, so the two peers of a room (and peers on
different workers) get different usernames, and nothing is remembered.

Usage::

    servers = IceServers(IceSettings(turn_uris=("turn:turn.example.com?transport=udp",),
                                     stun_uris=("stun:stun.example.com",), turn_secret=secret))
    servers.for_peer()   # [IceServer(urls, username, credential), IceServer(stun urls)] or None
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from mcp_tornado import secret_files
from mcp_tornado.protocol import IceServer

if TYPE_CHECKING:
    from mcp_tornado.settings import IceSettings

SECRET_ENV: Final = "MCP_TORNADO_TURN_SECRET"
DEFAULT_TTL: Final = 6 * 3600.0  # seconds a TURN credential can allocate relays
PEER_ID_BYTES: Final = 8  # random bytes of a username's peer id (16 hex digits)

# RFC 7065 (turn:/turns:) and RFC 7064 (stun:/stuns:): scheme ":" host [":" port],
# TURN with an optional "?transport=udp|tcp".  host: a DNS name, IPv4, or [IPv6].
_HOST: Final = r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
_PORT: Final = r"(?::(?P<port>[0-9]{1,5}))?"
_TURN_URI: Final = re.compile(rf"turns?:{_HOST}{_PORT}(?:\?transport=(?:udp|tcp))?")
_STUN_URI: Final = re.compile(rf"stuns?:{_HOST}{_PORT}")
_TURN_FORM: Final = "turn:HOST[:PORT][?transport=udp|tcp] or turns:..."
_STUN_FORM: Final = "stun:HOST[:PORT] or stuns:HOST[:PORT]"


def split_uris(values: Iterable[str]) -> tuple[str, ...]:
    """Flatten repeated and comma-separated URI values (no URI holds a comma)."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


def _check(uris: Iterable[str], pattern: re.Pattern[str], flag: str, form: str) -> None:
    for uri in split_uris(uris):
        match = pattern.fullmatch(uri)
        port = match.group("port") if match is not None else None
        if match is None or (port is not None and not 0 < int(port) < 65536):
            raise ValueError(f"{flag}: {uri[:200]!r} is not a valid URI: expected {form}")


def check_turn_uris(uris: Iterable[str]) -> None:
    """Raise ``ValueError`` naming ``--turn-uri`` for the first URI that is not a TURN URI."""
    _check(uris, _TURN_URI, "--turn-uri", _TURN_FORM)


def check_stun_uris(uris: Iterable[str]) -> None:
    """Raise ``ValueError`` naming ``--stun-uri`` for the first URI that is not a STUN URI."""
    _check(uris, _STUN_URI, "--stun-uri", _STUN_FORM)


def check_secret(secret: bytes) -> None:
    secret_files.check(secret, "TURN")


def load_secret(path: Path | None = None) -> bytes | None:
    """The TURN secret: the file at ``path`` if given, else ``$MCP_TORNADO_TURN_SECRET``.

    ``None``: no secret, no TURN (see :func:`mcp_tornado.secret_files.load`).
    """
    return secret_files.load(path, SECRET_ENV, "TURN")


def turn_credentials(secret: bytes, peer_id: str, expires: int) -> tuple[str, str]:
    """The TURN REST API username and credential for ``peer_id``, valid until ``expires``."""
    username = f"{expires}:{peer_id}"
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


class IceServers:
    """The ``iceServers`` every joining peer gets; built once per worker from its settings."""

    __slots__ = ("_clock", "_secret", "_stun", "_ttl", "_turn_urls")

    def __init__(self, settings: IceSettings, clock: Callable[[], float] = time.time) -> None:
        # IceSettings checked the URIs, and that TURN URIs come with a secret.
        self._turn_urls = list(split_uris(settings.turn_uris))
        self._secret = settings.turn_secret
        self._ttl = settings.turn_ttl
        self._clock = clock
        stun = list(split_uris(settings.stun_uris))
        self._stun = IceServer(stun) if stun else None  # the same for every join

    def for_peer(self) -> list[IceServer] | None:
        """This join's list (a fresh TURN credential each time), or ``None`` when none is set."""
        servers: list[IceServer] = []
        if self._turn_urls and self._secret is not None:
            expires = int(self._clock() + self._ttl)
            username, credential = turn_credentials(
                self._secret, secrets.token_hex(PEER_ID_BYTES), expires
            )
            servers.append(IceServer(self._turn_urls, username, credential))
        if self._stun is not None:
            servers.append(self._stun)
        return servers or None
