"""Which browser pages may open a WebSocket to us: the ``Origin`` allow-list.

Browsers let any page open a WebSocket to any server, so the ``Origin`` header
is the only thing standing between a malicious page and our rooms.  Checked at
the handshake; a refused origin gets HTTP 403.  Requests with no ``Origin``
header are not from a browser (bots, CLI tools) and are always allowed: they
could send any header they like anyway.

Rules, in order:

* the page's own server: ``Origin``'s host[:port] equals the ``Host`` header
  (which :class:`HostPolicy` has checked first: DNS rebinding);
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

import ipaddress
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


# --- the Host header: which names this server answers to ------------------------------

_IP_HOST: Final = re.compile(r"\[[0-9a-f:.]+\]|[0-9.]+")  # bracketed IPv6 or dotted IPv4
_WILDCARD_BINDS: Final = frozenset({"", "0.0.0.0", "::", "[::]"})


def _split_host(text: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (a Host header or an ``--allowed-host`` entry) -> (host, port)."""
    text = text.strip().lower()
    if not text:
        return None
    if text.startswith("["):
        host, bracket, rest = text.partition("]")
        host += bracket
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:  # a bare IPv6 address (an --allowed-host entry, not a Host)
        host, port_text = f"[{text}]", None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
            return None
        port: int | None = int(port_text)
    else:
        port = None
    if not host or not _HOST.fullmatch(host.strip("[]")) or ".." in host:
        return None
    return host, port


def _is_ip(host: str) -> bool:
    if not _IP_HOST.fullmatch(host):
        return False
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class HostPolicy:
    """Decides whether an upgrade's ``Host`` header names this server (DNS rebinding).

    A page on a rebinding domain (``evil.com`` resolving to our address) is the
    server's "own page" to the Origin rule, since its ``Origin`` and ``Host``
    both say ``evil.com``; its ``Host`` is what gives it away.  Allowed, on
    any port unless an entry gives one:

    * IP addresses and ``localhost``: no attacker controls their DNS;
    * the listen address (``--host``) when it is a name;
    * the hosts of the ``--allowed-origin`` entries (the page's server is often
      the signaling server too; ``https://*.example.com`` allows its subdomains);
    * every ``--allowed-host`` entry: ``signal.example.com``,
      ``signal.example.com:8443`` (that port only), ``*.example.com`` (its
      subdomains, not the apex), or ``*`` (any host: the check is off).
    """

    def __init__(
        self,
        allowed: Iterable[str] = (),
        listen_host: str = "",
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.allowed = split_origins(allowed)
        self.allow_all = "*" in self.allowed
        self._exact: dict[str, set[int | None]] = {"localhost": {None}}
        self._suffixes: list[tuple[str, int | None]] = []
        for entry in self.allowed:
            if entry != "*":
                self._add(entry, entry)
        listen = listen_host.strip().lower()
        if listen not in _WILDCARD_BINDS and _split_host(listen) is not None:
            self._add(listen, listen)
        for origin in split_origins(allowed_origins):
            if origin in ("*", "null"):
                continue
            text = origin.lower()
            wildcard = "://*." in text or text.startswith("*.")
            parsed = _parse(text.replace("*.", "", 1) if wildcard else text)
            if parsed is not None:
                self._add(("*." if wildcard else "") + parsed.host, origin)

    def _add(self, entry: str, shown: str) -> None:
        wildcard = entry.startswith("*.")
        parsed = _split_host(entry[2:] if wildcard else entry)
        if parsed is None:
            raise ValueError(f"not a host: {shown!r} (e.g. signal.example.com or host:8443)")
        host, port = parsed
        if wildcard:
            self._suffixes.append(("." + host, port))
        else:
            self._exact.setdefault(host, set()).add(port)

    def allows(self, host_header: str) -> bool:
        """May an upgrade that says ``Host: host_header`` connect?"""
        if self.allow_all:
            return True
        parsed = _split_host(host_header)
        if parsed is None:
            return False
        host, port = parsed
        if _is_ip(host):
            return True
        ports = self._exact.get(host)
        if ports is not None and (None in ports or port in ports):
            return True
        return any(
            host.endswith(suffix) and (want is None or want == port)
            for suffix, want in self._suffixes
        )
