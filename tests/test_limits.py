"""Every limit at, just under and just over its boundary, against real workers.

The unit tests of each part are in test_ratelimit.py, test_room_names.py and test_admission.py.
"""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mcp_tornado import protocol
from tests.rawws import (
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    RawWebSocket,
    encode_frame,
    upgrade_request,
)
from tests.support import Cluster, running_cluster, wait_until

BURST = 5


@pytest.fixture(scope="module")
def slow_rate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One worker; a rate so slow that refills never blur the burst boundary in a test."""
    tmp: Path = tmp_path_factory.mktemp("limits")
    with running_cluster(tmp, 1, "--rate-limit", "0.001", "--rate-burst", str(BURST)) as cluster:
        yield cluster


def room() -> str:
    return f"lim-{uuid.uuid4().hex[:8]}"


def joined(ws: RawWebSocket) -> dict[str, object]:
    message = ws.recv_json()
    assert message["type"] == "joined", message
    return message


def test_frame_of_exactly_the_max_size_is_accepted(slow_rate: Cluster) -> None:
    with RawWebSocket.connect(slow_rate.ports[0], f"?room={room()}") as ws:
        joined(ws)
        head = '{"type":"offer","sdp":"'
        frame = head + "x" * (64 * 1024 - len(head) - 2) + '"}'
        assert len(frame.encode()) == 64 * 1024
        ws.send_text(frame)
        assert ws.recv_json()["code"] == "no_peer"  # checked and relayed (nobody there)


def test_frame_one_byte_over_the_max_size_is_closed_with_1009(slow_rate: Cluster) -> None:
    with RawWebSocket.connect(slow_rate.ports[0], f"?room={room()}") as ws:
        joined(ws)
        ws.send_text("x" * (64 * 1024 + 1))
        assert ws.wait_closed() == protocol.CloseCode.MESSAGE_TOO_BIG


def test_rate_limit_at_and_over_the_burst(slow_rate: Cluster) -> None:
    with RawWebSocket.connect(slow_rate.ports[0], f"?room={room()}") as ws:
        joined(ws)
        for _ in range(BURST):  # at the boundary: all relayed
            ws.send_json({"type": "candidate", "candidate": "c"})
            assert ws.recv_json()["code"] == "no_peer"
        ws.send_json({"type": "candidate"})  # one over: dropped, warned once
        error = ws.recv_json()
        assert error["type"] == "error" and error["code"] == "rate_limited"
        for _ in range(BURST - 2):  # still dropped, silently; just under the close
            ws.send_json({"type": "candidate"})
        with pytest.raises(TimeoutError):
            ws.recv_frame(timeout=0.3)
        ws.send_json({"type": "candidate"})  # BURST frames over the allowance: closed
        assert ws.recv_json()["code"] == "rate_limited"
        assert ws.wait_closed() == protocol.CloseCode.RATE_LIMITED


def test_pings_count_against_the_rate_limit(slow_rate: Cluster) -> None:
    with RawWebSocket.connect(slow_rate.ports[0], f"?room={room()}") as ws:
        joined(ws)
        for _ in range(2 * BURST - 1):
            ws.send_raw(encode_frame(PING, b"p"))
        assert ws.recv_json()["code"] == "rate_limited"
        ws.send_raw(encode_frame(PING, b"p"))
        assert ws.wait_closed() == protocol.CloseCode.RATE_LIMITED


def test_pongs_count_against_the_rate_limit(slow_rate: Cluster) -> None:
    # Unsolicited pongs: 466 MB of them in 5 s went unpunished (issue 12, item 2).
    with RawWebSocket.connect(slow_rate.ports[0], f"?room={room()}") as ws:
        joined(ws)
        for _ in range(2 * BURST - 1):
            ws.send_raw(encode_frame(PONG, b"p"))
        assert ws.recv_json()["code"] == "rate_limited"
        ws.send_raw(encode_frame(PONG, b"p"))
        assert ws.wait_closed() == protocol.CloseCode.RATE_LIMITED


def test_every_fragment_counts_against_the_rate_limit(slow_rate: Cluster) -> None:
    # 8.46 M empty continuation frames in 5 s went unpunished (issue 12, item 2).
    with RawWebSocket.connect(slow_rate.ports[0], f"?room={room()}") as ws:
        joined(ws)
        # A message in BURST frames: exactly the allowance, relayed.
        ws.send_raw(encode_frame(TEXT, b'{"type":"leave"', fin=False))
        for _ in range(BURST - 2):
            ws.send_raw(encode_frame(CONTINUATION, b" ", fin=False))
        ws.send_raw(encode_frame(CONTINUATION, b"}"))
        assert ws.recv_json()["code"] == "no_peer"
        # Then fragments of a message never finished: warned, then closed.
        ws.send_raw(encode_frame(TEXT, b"{", fin=False))
        assert ws.recv_json()["code"] == "rate_limited"
        for _ in range(BURST - 1):
            ws.send_raw(encode_frame(CONTINUATION, b"", fin=False))
        assert ws.wait_closed() == protocol.CloseCode.RATE_LIMITED


def test_after_our_close_a_flood_is_not_read_until_the_deadline(slow_rate: Cluster) -> None:
    """Closed (4429), the client floods instead of answering: cut off past a small budget."""
    ws = RawWebSocket.connect(slow_rate.ports[0], f"?room={room()}")
    joined(ws)
    for _ in range(2 * BURST):
        ws.send_raw(encode_frame(PING, b"p"))
    assert ws.wait_closed() == protocol.CloseCode.RATE_LIMITED
    chunk = encode_frame(PONG, b"x" * 100) * 600  # 64 KB
    ws.sock.settimeout(5)
    sent = 0
    # Reset by the server once past its budget (the rest fills socket buffers, a few MB on
    # loopback).  Before the fix, the worker read all 16 MiB (in well under its 5 s wait).
    with pytest.raises(OSError):
        while sent < 16 * 2**20:
            ws.sock.sendall(chunk)
            sent += len(chunk)
    ws.sock.close()


def test_rate_limited_client_frees_its_room_slot(slow_rate: Cluster) -> None:
    name = room()
    with RawWebSocket.connect(slow_rate.ports[0], f"?room={name}") as a:
        joined(a)
        with RawWebSocket.connect(slow_rate.ports[0], f"?room={name}") as b:
            joined(b)
            assert a.recv_json()["type"] == "peer-joined"
            for _ in range(2 * BURST):
                b.send_json({"type": "candidate"})
            assert b.wait_closed() == 4429
            assert a.recv_type("peer-left")["peers"] == 1


@pytest.mark.parametrize(
    ("query", "room_or_code"),
    [
        ("?room=" + "r" * 64, "r" * 64),
        ("?room=" + "r" * 65, 4400),
        ("?room=%E6%97%A5%E6%9C%AC", "\u65e5\u672c"),
        ("?room=a%0Ab", 4400),
        ("?room=%FF", 4400),
        ("?room=%E2%80%AEx", 4400),
        ("?room=%20", "default"),
    ],
)
def test_room_names_at_the_server(slow_rate: Cluster, query: str, room_or_code: str | int) -> None:
    with RawWebSocket.connect(slow_rate.ports[0], query) as ws:
        first = ws.recv_json()
        if isinstance(room_or_code, str):
            assert first["type"] == "joined" and first["room"] == room_or_code
        else:
            assert first["type"] == "error" and first["code"] == "invalid_room"
            assert ws.wait_closed() == room_or_code


def test_connection_cap(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 1, "--max-connections", "3") as cluster:
        port = cluster.ports[0]
        clients = [RawWebSocket.connect(port, f"?room={room()}") for _ in range(3)]
        for ws in clients:  # at the cap: all in
            joined(ws)
        over = RawWebSocket.handshake(port, f"/ws/signal/?room={room()}")
        assert over.status == 503  # one over: refused at the handshake
        over.sock.close()
        # Every connection counts (a full worker is full for health checks too).
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "5"
        refused.value.close()
        clients.pop().close()  # back under the cap: admitted again

        def admitted() -> bool:
            ws = RawWebSocket.handshake(port, f"/ws/signal/?room={room()}")
            clients.append(ws)
            return ws.status == 101

        wait_until(admitted, 5, "a slot after a client left")
        for ws in clients:
            ws.close()


def test_every_way_a_connection_ends_gives_its_place_back(tmp_path: Path) -> None:
    """The connection count returns to zero however connections end, so the cap never leaks."""
    with running_cluster(
        tmp_path, 1, "--max-connections", "2", "--rate-limit", "5", "--rate-burst", "2"
    ) as cluster:
        port = cluster.ports[0]
        shared = room()
        a = RawWebSocket.connect(port, f"?room={shared}")
        joined(a)
        b = RawWebSocket.connect(port, f"?room={shared}")
        joined(b)
        b.close()  # a clean close
        a.sock.close()  # gone without a close frame

        def flood(ws: RawWebSocket) -> None:
            for _ in range(20):
                ws.send_json({"type": "leave"})

        endings: list[tuple[Callable[[RawWebSocket], object], int | None]] = [
            (lambda ws: ws.send_raw(encode_frame(TEXT, b"{}", mask=False)), 1002),  # violation
            (lambda ws: ws.send_raw(encode_frame(TEXT, b"x" * 70_000)), 1009),  # too big
            (lambda ws: ws.send_raw(encode_frame(TEXT, b"\xff")), 1007),  # text, not UTF-8
            (flood, protocol.CloseCode.RATE_LIMITED),
        ]
        for end, code in endings:

            def admitted() -> bool:
                ws = RawWebSocket.handshake(port, f"/ws/signal/?room={room()}")
                ws.close()
                return ws.status == 101

            wait_until(admitted, 5, "a place after the last connection ended")
            ws = RawWebSocket.connect(port, f"?room={room()}")
            joined(ws)
            end(ws)
            assert ws.wait_closed() == code
            ws.sock.close()
        RawWebSocket.connect(port, "?room=bad%00name").close()  # refused after the upgrade

        def both_admitted() -> bool:
            pair = [RawWebSocket.handshake(port, f"/ws/signal/?room={room()}") for _ in range(2)]
            for ws in pair:
                ws.close()
            return all(ws.status == 101 for ws in pair)

        wait_until(both_admitted, 5, "both places free again")


def test_limits_are_validated_at_startup(tmp_path: Path) -> None:
    from tests.support import spawn

    process = spawn("worker", "--allowed-origin", "not an origin", log=tmp_path / "w.log")
    assert process.wait(10) != 0
    assert "not an origin" in (tmp_path / "w.log").read_text()


def test_half_sent_requests_and_big_bodies_are_cut_off(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 1, "--handshake-timeout", "1") as cluster:
        port = cluster.ports[0]
        with RawWebSocket.connect(port, f"?room={room()}") as idle_ws:
            joined(idle_ws)
            slow = socket.create_connection(("127.0.0.1", port), timeout=5)
            slow.sendall(b"GET /ws/signal/ HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            started = time.monotonic()
            assert slow.recv(1024) == b""  # closed by the server
            assert 0.5 < time.monotonic() - started < 4
            slow.close()
            big = socket.create_connection(("127.0.0.1", port), timeout=5)
            big.sendall(
                b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
                + b"x" * 65536
            )
            reply = b""
            with contextlib.suppress(OSError):
                while chunk := big.recv(65536):
                    reply += chunk
            big.close()
            assert not reply.startswith(b"HTTP/1.1 2"), reply[:80]
            # An upgraded WebSocket is not subject to the header deadline.
            time.sleep(0.5)
            idle_ws.send_json({"type": "leave"})
            assert idle_ws.recv_json()["code"] == "no_peer"


def _handshake_status(port: int, request: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        reply = b""
        with contextlib.suppress(OSError):
            while b"\r\n" not in reply and (chunk := sock.recv(4096)):
                reply += chunk
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def _request(port: int, line: str = "GET /ws/signal/ HTTP/1.1", **extra: str) -> bytes:
    head = upgrade_request(port, "/ws/signal/", {k.replace("_", "-"): v for k, v in extra.items()})
    return line.encode() + head[head.index(b"\r\n") :]


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda port: _request(port, "GET /ws/signal/ HTTP/1.9x"), 400),
        (lambda port: _request(port, X_Nul="a\x00b"), 400),
        (lambda port: _request(port, Origin="http://caf\xe9.example"), 400),  # latin-1 \xe9
        (lambda port: _request(port, X_Pad="p" * 70_000), 431),  # in one read (one sendall)
        (lambda port: _request(port, X_Pad="p" * 100_000), 431),
    ],
    ids=["HTTP/1.9x", "NUL in a value", "non-ASCII in a value", "70 KB head", "100 KB head"],
)
def test_lenient_handshakes_are_refused(
    slow_rate: Cluster, make: Callable[[int], bytes], status: int
) -> None:
    port = slow_rate.ports[0]
    assert _handshake_status(port, make(port)) == status
    # Refused before the upgrade: nothing was taken from the worker.
    with RawWebSocket.connect(port, f"?room={room()}") as ws:
        joined(ws)


def test_a_60_kb_or_repeated_key_is_refused(slow_rate: Cluster) -> None:
    port = slow_rate.ports[0]
    request = upgrade_request(port, "/ws/signal/")
    huge = request.replace(b"Sec-WebSocket-Key: ", b"Sec-WebSocket-Key: " + b"QUFB" * 15_000)
    assert _handshake_status(port, huge) == 400
    twice = request[:-2] + b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n"
    assert _handshake_status(port, twice) == 400
    host = request[:-2] + b"Host: evil.example\r\n\r\n"
    assert _handshake_status(port, host) == 400
