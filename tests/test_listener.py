"""Sorting new connections: signaling upgrades to the worker, the rest to Tornado."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from mcp_tornado.listener import is_signal_request
from tests.rawws import TEXT, RawWebSocket, encode_frame, read_head, upgrade_request
from tests.support import Cluster, running_cluster


@pytest.mark.parametrize(
    ("start", "verdict"),
    [
        (b"GET /ws/signal/?room=a HTTP/1.1", True),
        (b"GET /ws/signal/ HTTP/1.1", True),
        (b"GET /ws/signal?room=a HTTP/1.1", True),
        (b"GET /ws/signal HTTP/1.1", True),
        (b"G", None),
        (b"GET /ws/signal", None),
        (b"GET /ws/signal/", None),
        (b"GET / HTTP/1.1", False),
        (b"GET /healthz HTTP/1.1", False),
        (b"GET /ws/signalx HTTP/1.1", False),
        (b"POST /ws/signal/ HTTP/1.1", False),
        (b"\x16\x03\x01\x02\x00", False),  # a TLS hello
    ],
)
def test_is_signal_request(start: bytes, verdict: bool | None) -> None:
    assert is_signal_request(start) is verdict


def handshake_bytes(port: int, room: str) -> bytes:
    return upgrade_request(port, f"/ws/signal/?room={room}")


def test_a_request_line_sent_a_byte_at_a_time_still_upgrades(cluster: Cluster) -> None:
    port = cluster.ports[0]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        request = handshake_bytes(port, f"drip-{uuid.uuid4().hex[:8]}")
        for i in range(20):  # through the part that tells the endpoint apart
            sock.sendall(request[i : i + 1])
            time.sleep(0.01)
        sock.sendall(request[20:])
        assert read_head(sock).startswith(b"HTTP/1.1 101 ")


def test_frames_sent_right_behind_the_request_are_read(cluster: Cluster) -> None:
    port = cluster.ports[0]
    room = f"eager-{uuid.uuid4().hex[:8]}"
    partner = RawWebSocket.connect(cluster.ports[1], f"?room={room}")
    partner.recv_type("joined")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(handshake_bytes(port, room) + encode_frame(TEXT, b'{"type":"offer","n":1}'))
        assert read_head(sock).startswith(b"HTTP/1.1 101 ")
        assert partner.recv_type("offer") == {"type": "offer", "n": 1}
    partner.close()


def test_other_requests_reach_tornado(cluster: Cluster) -> None:
    port = cluster.ports[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as response:
        assert response.status == 200 and json.loads(response.read())["status"] == "ok"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /ws/signalling HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_head(sock).split(b" ")[1] == b"404"


def test_an_upgrade_after_another_request_on_the_same_connection_is_told_to_reconnect(
    cluster: Cluster,
) -> None:
    port = cluster.ports[0]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_head(sock).startswith(b"HTTP/1.1 200 ")  # and its small body
        sock.sendall(handshake_bytes(port, "late"))
        reply = read_head(sock)
        with contextlib.suppress(TimeoutError):
            while b"new connection" not in reply:
                reply += sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 400 ") and b"new connection" in reply


def test_plain_get_of_the_endpoint_is_a_400(cluster: Cluster) -> None:
    with socket.create_connection(("127.0.0.1", cluster.ports[0]), timeout=5) as sock:
        sock.sendall(b"GET /ws/signal/?room=a HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = read_head(sock)
        assert reply.startswith(b"HTTP/1.1 400 ") and b"Upgrade" in reply
        assert sock.recv(4096) in (b"", b'Can "Upgrade" only to "WebSocket".\n')


def test_silent_and_half_started_connections_are_closed_at_the_deadline(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 1, "--handshake-timeout", "1") as cluster:
        port = cluster.ports[0]
        for first in (b"", b"GET /ws/si"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(first)
                started = time.monotonic()
                # Closed by the server (a reset when it never read the partial line).
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(1024) == b""
                assert 0.5 < time.monotonic() - started < 4
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200


def test_a_head_dripped_in_pieces_upgrades_and_an_endless_one_is_refused(cluster: Cluster) -> None:
    port = cluster.ports[0]
    request = handshake_bytes(port, f"pieces-{uuid.uuid4().hex[:8]}")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(request), 7):  # the blank line itself split across pieces
            sock.sendall(request[i : i + 7])
            time.sleep(0.002)
        assert read_head(sock).startswith(b"HTTP/1.1 101 ")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /ws/signal/ HTTP/1.1\r\n")
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for _ in range(70):
                sock.sendall(b"X-Filler: " + b"y" * 1000 + b"\r\n")
        try:  # refused, not waited on (a hang would end in TimeoutError)
            reply = read_head(sock)
        except ConnectionResetError:  # the refusal raced our last sends
            reply = b"HTTP/1.1 431 (reset)"
        assert reply.startswith(b"HTTP/1.1 431 ")
