"""Which reverse proxies to believe about a client's address (``--trusted-proxy CIDR``).

Usage::

    proxies = TrustedProxies(("10.0.0.0/8", "::1/128"))
    proxies.trusts("10.1.2.3")                                    # True
    proxies.client("10.1.2.3", x_forwarded_for="203.0.113.7")     # "203.0.113.7"

Headers that name a client address are written by whoever sends them, so they
are believed only from a TCP peer in a trusted range, and then only as far as
the chain of trusted proxies goes: the hops are read from the right (the one
nearest to us) and the first address that is not a trusted proxy is the
client.  Anything a client wrote to the left of that is ignored.  ``Forwarded``
(RFC 7239, its ``for=`` parameters) is used when present, else
``X-Forwarded-For``; a port after a hop (``192.0.2.60:4711``,
``[2001:db8::1]:4711``) is dropped.  A hop that is not an IP address (``unknown``, an
obfuscated ``_name``, garbage) ends the walk at the nearest trusted proxy that
reported it.
"""

from __future__ import annotations

import ipaddress
from typing import Final

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_HOPS: Final = 32  # hops read from the right; a longer chain is a client padding it


def parse_networks(cidrs: tuple[str, ...]) -> tuple[_Network, ...]:
    """The networks of ``--trusted-proxy`` values (comma lists allowed); ``ValueError`` if bad."""
    networks: list[_Network] = []
    for value in cidrs:
        for text in value.split(","):
            text = text.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(
                    f"--trusted-proxy: {text!r} is not an address or CIDR range "
                    "(e.g. 10.0.0.0/8, 127.0.0.1, ::1/128)"
                ) from None
    return tuple(networks)


def _address(text: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _bare(hop: str) -> str:
    """A hop without its port: ``[2001:db8::1]:4711`` and ``192.0.2.60:4711`` (some proxies
    write ports into X-Forwarded-For too) become addresses."""
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        return hop[1 : hop.find("]")] if "]" in hop else ""
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


def _forwarded_for(header: str) -> list[str]:
    """The ``for=`` values of a ``Forwarded`` header, left to right."""
    hops: list[str] = []
    for element in header.split(","):
        value = ""  # an element without for= is a hop we know nothing about
        for pair in element.split(";"):
            name, _, raw = pair.partition("=")
            if name.strip().lower() == "for":
                value = raw
        hops.append(value)
    return hops


class TrustedProxies:
    """The ``--trusted-proxy`` ranges, and the client address they vouch for."""

    __slots__ = ("_networks",)

    def __init__(self, cidrs: tuple[str, ...]) -> None:
        self._networks = parse_networks(cidrs)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, peer: str) -> bool:
        """Whether ``peer`` (an address as text) is in a trusted range."""
        if not self._networks:
            return False
        address = _address(peer)
        return address is not None and self._trusted(address)

    def _trusted(self, address: _Address) -> bool:
        return any(address in network for network in self._networks)

    def client(
        self, peer: str, x_forwarded_for: str | None = None, forwarded: str | None = None
    ) -> str:
        """The client's address: ``peer`` itself unless it is a trusted proxy that says who."""
        if not self.trusts(peer):
            return peer
        if forwarded:
            hops = _forwarded_for(forwarded)
        elif x_forwarded_for:
            hops = x_forwarded_for.split(",")
        else:
            return peer
        nearest = peer
        for hop in reversed(hops[-MAX_HOPS:]):
            address = _address(_bare(hop))
            if address is None:
                return nearest
            if not self._trusted(address):
                return str(address)
            nearest = str(address)
        return nearest  # every hop was a proxy of ours: the farthest one is all we know
