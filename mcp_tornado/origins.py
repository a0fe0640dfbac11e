"""Which browser pages may open a WebSocket to us: the ``Origin`` allow-list.

Browsers let any page open a WebSocket to any server, so the ``Origin`` header
is the only thing standing between a malicious page and our rooms.  Checked at
the handshake; a refused origin gets HTTP 403.  Requests with no ``Origin``
header are not from a browser (bots, CLI tools) and are always allowed: they
could send any header they like anyway.

Rules, in order:

* the page's own server: ``Origin``'s host[:port] equals the ``Host`` header;
* with no allow-list configured: ``http(s)://localhost``, ``127.0.0.1`` and
  ``[::1]`` on any port (development);
* with an allow-list, only its entries (the defaults above are replaced), each
  one of: ``*`` (anything), ``https://example.com`` (that scheme, host and
  port), ``https://*.example.com`` (any subdomain, not the apex), ``example.com``
  or ``example.com:8443`` (any scheme), or ``null`` (sandboxed pages, ``file:``).

Usage::

    policy = OriginPolicy(["https://app.example.com"])
    policy.allows("https://app.example.com", host="signal.example.com")  # True
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, NamedTuple
from urllib.parse import urlsplit

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST: Final = re.compile(r"[a-z0-9._:-]+")  # browsers send IDN hosts as punycode


class _Origin(NamedTuple):
    scheme: str  # "" in a rule: any scheme
    host: str
    port: int | None  # None in a rule: any port (or the scheme's default)


def _parse(origin: str) -> _Origin | None:
    """Split an origin (or a rule) into its parts; ``None`` if it is not one."""
    text = origin.strip().lower()
    if "://" not in text:
        text = "//" + text  # a bare host[:port] rule
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if (
        not host
        or not _HOST.fullmatch(host)
        or parts.path not in ("", "/")
        or parts.query
        or parts.username is not None
    ):
        return None
    if port is None and parts.scheme:
        port = _DEFAULT_PORTS.get(parts.scheme)
    return _Origin(parts.scheme, host, port)


def split_origins(values: Iterable[str]) -> tuple[str, ...]:
    """Flatten repeated and comma-separated ``--allowed-origin`` values."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())


class OriginPolicy:
    """Decides whether a browser ``Origin`` may connect.  Empty ``allowed``: the defaults."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = split_origins(allowed)
        self.allow_all = "*" in self.allowed
        self.allow_null = "null" in self.allowed
        self._rules: list[tuple[_Origin, bool]] = []  # (rule, matches subdomains)
        for entry in self.allowed:
            if entry in ("*", "null"):
                continue
            wildcard = "://*." in entry or entry.startswith("*.")
            rule = _parse(entry.replace("*.", "", 1) if wildcard else entry)
            if rule is None:
                raise ValueError(f"not an origin: {entry!r} (e.g. https://app.example.com)")
            self._rules.append((rule, wildcard))

    def allows(self, origin: str, host: str) -> bool:
        """May a page from ``origin`` connect to us, reached as ``host`` (the Host header)?"""
        if self.allow_all:
            return True
        if origin.strip().lower() == "null":
            return self.allow_null
        parsed = _parse(origin)
        if parsed is None or not parsed.scheme:
            return False
        netloc = urlsplit(origin.strip().lower()).netloc
        if host and netloc == host.strip().lower():
            return True
        if not self._rules:
            return parsed.host in _LOOPBACK and parsed.scheme in ("http", "https")
        return any(_matches(rule, wildcard, parsed) for rule, wildcard in self._rules)


def _matches(rule: _Origin, wildcard: bool, origin: _Origin) -> bool:
    if rule.scheme and rule.scheme != origin.scheme:
        return False
    if rule.port is not None and rule.port != origin.port:
        return False
    if wildcard:
        return origin.host.endswith("." + rule.host)
    return origin.host == rule.host
