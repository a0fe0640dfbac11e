"""``--trusted-proxy``: whose ``X-Forwarded-For``/``Forwarded`` is believed, and what counts.

The rules (:mod:`mcp_tornado.proxies`) on their own, then against a real
worker: a forwarded client address is honoured only from a trusted peer, the
per-IP cap counts it (HTTP 429 before the upgrade), and the access log names it.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mcp_tornado.proxies import TrustedProxies, parse_networks
from mcp_tornado.settings import LimitSettings
from tests.rawws import RawWebSocket, read_head, upgrade_request
from tests.support import Cluster, running_cluster, wait_until

PROXY = "127.0.0.1"  # trusted below; 127.0.0.2 plays an untrusted client


# --- the rules --------------------------------------------------------------------


@pytest.fixture
def proxies() -> TrustedProxies:
    return TrustedProxies(("10.0.0.0/8", "2001:db8:1::/48"))


def test_an_untrusted_peer_is_its_own_address_whatever_it_says(proxies: TrustedProxies) -> None:
    assert proxies.client("198.51.100.4", "203.0.113.7") == "198.51.100.4"
    assert proxies.client("198.51.100.4", None, "for=203.0.113.7") == "198.51.100.4"
    assert TrustedProxies(()).client("10.0.0.1", "203.0.113.7") == "10.0.0.1"


def test_the_rightmost_untrusted_hop_is_the_client(proxies: TrustedProxies) -> None:
    assert proxies.client("10.0.0.1", "203.0.113.7") == "203.0.113.7"
    # The client wrote "1.2.3.4" itself; our proxies appended the rest.
    assert proxies.client("10.0.0.1", "1.2.3.4, 203.0.113.7, 10.0.0.9") == "203.0.113.7"
    assert proxies.client("10.0.0.1", " 203.0.113.7 ,10.0.0.2") == "203.0.113.7"
    assert proxies.client("10.0.0.1", "203.0.113.7:50123") == "203.0.113.7"  # with a port
    assert proxies.client("10.0.0.1", "[2001:db8:2::9]:443") == "2001:db8:2::9"
    # Only proxies of ours: the farthest one is all we know.
    assert proxies.client("10.0.0.1", "10.0.0.3, 10.0.0.2") == "10.0.0.3"
    # No header: the proxy itself.
    assert proxies.client("10.0.0.1") == "10.0.0.1"


def test_a_hop_that_is_not_an_address_stops_at_the_proxy_that_reported_it(
    proxies: TrustedProxies,
) -> None:
    assert proxies.client("10.0.0.1", "203.0.113.7, unknown") == "10.0.0.1"
    assert proxies.client("10.0.0.1", "203.0.113.7, unknown, 10.0.0.2") == "10.0.0.2"
    assert proxies.client("10.0.0.1", "<script>") == "10.0.0.1"


def test_forwarded_rfc_7239(proxies: TrustedProxies) -> None:
    assert proxies.client("10.0.0.1", None, "for=192.0.2.60;proto=https;by=10.0.0.1") == (
        "192.0.2.60"
    )
    assert proxies.client("10.0.0.1", None, 'for="[2001:db8:cafe::17]:4711"') == "2001:db8:cafe::17"
    assert proxies.client("10.0.0.1", None, "For=192.0.2.43:8080, for=198.51.100.17") == (
        "198.51.100.17"
    )
    assert proxies.client("10.0.0.1", None, "for=198.51.100.17, for=10.0.0.5") == ("198.51.100.17")
    assert proxies.client("10.0.0.1", None, "for=_hidden, for=10.0.0.5") == "10.0.0.5"
    assert proxies.client("10.0.0.1", None, "proto=https") == "10.0.0.1"
    # Forwarded wins over X-Forwarded-For when both are there.
    assert proxies.client("10.0.0.1", "203.0.113.9", "for=192.0.2.60") == "192.0.2.60"


def test_ipv6_and_mapped_addresses(proxies: TrustedProxies) -> None:
    assert proxies.trusts("2001:db8:1::5")
    assert proxies.trusts("::ffff:10.1.2.3")  # a dual-stack socket's view of 10.1.2.3
    assert proxies.client("2001:db8:1::5", "2001:db8:2::9") == "2001:db8:2::9"
    assert not proxies.trusts("not an address")


def test_a_bad_range_is_one_line_naming_the_flag() -> None:
    assert len(parse_networks(("10.0.0.0/8, 192.168.0.1",))) == 2
    with pytest.raises(ValueError, match=r"--trusted-proxy: '10\.0\.0\.0/33'"):
        LimitSettings(trusted_proxies=("10.0.0.0/33",))


# --- against a worker ---------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("proxy")
    args = ("--trusted-proxy", f"{PROXY}/32", "--max-connections-per-ip", "2")
    with running_cluster(tmp, 1, *args) as cluster:
        yield cluster


def upgrade(port: int, source: str, headers: dict[str, str]) -> tuple[RawWebSocket, bytes]:
    """An upgrade from ``source`` (a loopback address) with ``headers``, and the answer's head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.sendall(upgrade_request(port, f"/ws/signal/?room=px-{uuid.uuid4().hex[:8]}", headers))
    head, _, rest = read_head(sock).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    return RawWebSocket(sock, int(status_line[1]) if len(status_line) > 1 else 0, rest), head


def get(port: int, source: str, request: str) -> bytes:
    """The head of the answer to a plain HTTP ``request`` sent from ``source``."""
    address = ("127.0.0.1", port)
    with socket.create_connection(address, timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(request.encode())
        return read_head(sock)


def statuses(answers: list[tuple[RawWebSocket, bytes]]) -> list[int]:
    return [ws.status for ws, _ in answers]


def test_the_per_ip_cap_counts_the_forwarded_client(worker: Cluster) -> None:
    port = worker.ports[0]
    first = [upgrade(port, PROXY, {"X-Forwarded-For": "203.0.113.7"}) for _ in range(2)]
    try:
        assert statuses(first) == [101, 101]
        third, head = upgrade(port, PROXY, {"X-Forwarded-For": "203.0.113.7"})
        third.close()
        assert third.status == 429
        assert b"Retry-After: 5" in head
        # Other clients behind the same proxy are not held back by that one ...
        others = [upgrade(port, PROXY, {"Forwarded": "for=203.0.113.8"}) for _ in range(2)]
        others.append(upgrade(port, PROXY, {}))  # ... nor the proxy's own
        try:
            assert statuses(others) == [101, 101, 101]
        finally:
            for ws, _ in others:
                ws.close()
        wait_until(
            lambda: "429 GET /ws/signal/ (203.0.113.7)" in worker.logs(), 5, "the access log"
        )
    finally:
        for ws, _ in first:
            ws.close()

    def freed() -> bool:  # the places come back when the connections close
        ws, _ = upgrade(port, PROXY, {"X-Forwarded-For": "203.0.113.7"})
        ws.close()
        return ws.status == 101

    wait_until(freed, 5, "the forwarded client's places given back")


def test_a_spoofed_header_from_an_untrusted_peer_is_ignored(worker: Cluster) -> None:
    port = worker.ports[0]
    untrusted = "127.0.0.2"
    held = [upgrade(port, untrusted, {"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(2)]
    try:
        assert statuses(held) == [101, 101]
        # Counted by its own address: a third is refused, whatever it claims to be.
        third, _ = upgrade(port, untrusted, {"X-Forwarded-For": "198.51.100.3"})
        third.close()
        assert third.status == 429
    finally:
        for ws, _ in held:
            ws.close()
    # (once the places are back) a plain request with a made-up client is logged as itself
    spoofed = "GET /spoofed HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n"
    wait_until(lambda: get(port, untrusted, spoofed).startswith(b"HTTP/1.1 404"), 5, "a 404")
    wait_until(lambda: "404 GET /spoofed (127.0.0.2)" in worker.logs(), 5, "the access log")
    assert "192.0.2.1" not in worker.logs()


def test_plain_http_through_the_proxy_logs_the_client(worker: Cluster) -> None:
    port = worker.ports[0]
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(PROXY, 0)) as s:
        s.sendall(b"GET /via-proxy HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.44\r\n\r\n")
        assert read_head(s).startswith(b"HTTP/1.1 404")
        # A second request on the kept-alive connection, for another client.
        s.sendall(b"GET /via-proxy-2 HTTP/1.1\r\nHost: x\r\nForwarded: for=192.0.2.45\r\n\r\n")
        assert b"HTTP/1.1 404" in read_head(s)
    wait_until(lambda: "404 GET /via-proxy (192.0.2.44)" in worker.logs(), 5, "the first line")
    wait_until(lambda: "404 GET /via-proxy-2 (192.0.2.45)" in worker.logs(), 5, "the second")
