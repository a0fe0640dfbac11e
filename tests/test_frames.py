"""The bulk frame reader and the frame writer, driven by raw bytes against a real worker."""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections.abc import Iterator

import pytest

from mcp_tornado import frames
from mcp_tornado.frames import FrameReader, text_frame_header
from tests.rawws import CONTINUATION, PING, PONG, TEXT, RawWebSocket, encode_frame
from tests.support import Cluster


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 1 << 20])
def test_text_frame_header_matches_rfc6455(length: int) -> None:
    if length < 126:
        expected = bytes([0x81, length])
    elif length < 65536:
        expected = bytes([0x81, 126]) + struct.pack("!H", length)
    else:
        expected = bytes([0x81, 127]) + struct.pack("!Q", length)
    assert text_frame_header(length) == expected


@pytest.fixture
def pair(cluster: Cluster) -> Iterator[tuple[RawWebSocket, RawWebSocket]]:
    room = f"?room=frames-{uuid.uuid4().hex[:8]}"
    a = RawWebSocket.connect(cluster.ports[0], room)
    a.recv_type("joined")
    b = RawWebSocket.connect(cluster.ports[1], room)
    b.recv_type("joined")
    a.recv_type("peer-joined")
    yield a, b
    a.close()
    b.close()


def candidate(n: int, pad: int = 0) -> bytes:
    return json.dumps({"type": "candidate", "n": n, "pad": "x" * pad}).encode()


def test_many_frames_in_one_segment(pair: tuple[RawWebSocket, RawWebSocket]) -> None:
    a, b = pair
    a.send_raw(b"".join(encode_frame(TEXT, candidate(n)) for n in range(200)))
    assert [b.recv_json()["n"] for _ in range(200)] == list(range(200))


def test_frames_split_at_every_byte(pair: tuple[RawWebSocket, RawWebSocket]) -> None:
    a, b = pair
    data = encode_frame(TEXT, candidate(1, pad=300)) + encode_frame(TEXT, candidate(2))
    for i in range(len(data)):
        a.send_raw(data[i : i + 1])
        if i % 50 == 0:
            time.sleep(0.001)
    assert b.recv_json()["n"] == 1
    assert b.recv_json()["n"] == 2


@pytest.mark.parametrize("pad", [100, 200, 60_000])
def test_extended_lengths(pair: tuple[RawWebSocket, RawWebSocket], pad: int) -> None:
    a, b = pair
    payload = candidate(7, pad=pad)
    a.send_raw(encode_frame(TEXT, payload))
    assert b.recv_frame().payload == payload


def test_fragmented_message_with_a_ping_in_between(pair: tuple[RawWebSocket, RawWebSocket]) -> None:
    a, b = pair
    payload = candidate(9, pad=50)
    a.send_raw(
        encode_frame(TEXT, payload[:10], fin=False)
        + encode_frame(PING, b"are you there")
        + encode_frame(CONTINUATION, payload[10:30], fin=False)
        + encode_frame(CONTINUATION, payload[30:])
    )
    assert b.recv_frame().payload == payload
    # The ping was answered (the raw client answers pings itself, so read our pong directly).
    pong = a.recv_frame_raw()
    assert (pong.opcode, pong.payload) == (PONG, b"are you there")


def test_message_over_the_limit_is_refused_with_1009(
    pair: tuple[RawWebSocket, RawWebSocket],
) -> None:
    a, b = pair
    a.send_raw(encode_frame(TEXT, candidate(1, pad=70_000)))
    assert a.wait_closed() == 1009
    assert b.recv_type("leave")


def test_fragments_over_the_limit_are_refused(pair: tuple[RawWebSocket, RawWebSocket]) -> None:
    a, _ = pair
    chunk = b"x" * 40_000
    a.send_raw(encode_frame(TEXT, chunk, fin=False) + encode_frame(CONTINUATION, chunk))
    assert a.wait_closed() == 1009


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(TEXT, candidate(1), mask=False),  # clients must mask
        bytes([0x80 | 0x40 | TEXT, 0x80]) + b"\0\0\0\0",  # reserved bit
        encode_frame(CONTINUATION, b"nothing to continue"),
        encode_frame(PING, b"x", fin=False),  # fragmented control frame
        encode_frame(0x3, b"reserved opcode"),
        encode_frame(TEXT, b"\xff\xfe not utf-8"),
    ],
)
def test_protocol_violations_end_the_connection_and_free_the_slot(
    pair: tuple[RawWebSocket, RawWebSocket], frame: bytes
) -> None:
    a, b = pair
    a.send_raw(frame)
    a.wait_closed()
    assert b.recv_type("leave") == {"type": "leave"}


# --- the reader on its own ---------------------------------------------------------


class Collect:
    def __init__(self, stop_on: int | None = None) -> None:
        self.got: list[tuple[int, bytes]] = []
        self.stop_on = stop_on

    def __call__(self, opcode: int, payload: bytes) -> bool:
        self.got.append((opcode, payload))
        return opcode != self.stop_on


def reader(limit: int = 1000, stop_on: int | None = None) -> tuple[FrameReader, Collect]:
    collect = Collect(stop_on)
    return FrameReader(limit, collect), collect


def test_reader_unmasks_and_reassembles_across_reads() -> None:
    r, got = reader()
    data = (
        encode_frame(TEXT, b"hello", fin=False)
        + encode_frame(PING, b"p")
        + encode_frame(CONTINUATION, b" world")
        + encode_frame(frames.BINARY, bytes(300))
    )
    for i in range(len(data)):
        assert r.feed(data[i : i + 1]) == 0
    assert got.got == [(PING, b"p"), (TEXT, b"hello world"), (frames.BINARY, bytes(300))]


@pytest.mark.parametrize(
    "data",
    [
        encode_frame(TEXT, b"x", mask=False),  # clients must mask
        bytes([0xC1, 0x80]) + bytes(4),  # a reserved bit: no extension was negotiated
        encode_frame(0x3, b"x"),  # a reserved opcode
        encode_frame(CONTINUATION, b"x"),  # continuing nothing
        encode_frame(TEXT, b"a", fin=False) + encode_frame(TEXT, b"b"),  # a new message mid-way
        encode_frame(PING, b"x", fin=False),  # fragmented control frame
        encode_frame(PING, bytes(126)),  # control frame over 125 bytes
    ],
)
def test_reader_reports_protocol_errors(data: bytes) -> None:
    assert reader()[0].feed(data) == frames.PROTOCOL_ERROR


def test_reader_refuses_a_big_message_from_its_header_alone() -> None:
    r, got = reader(limit=100)
    assert r.feed(encode_frame(TEXT, bytes(101))[:8]) == frames.MESSAGE_TOO_BIG
    r, got = reader(limit=100)
    parts = encode_frame(TEXT, bytes(60), fin=False) + encode_frame(CONTINUATION, bytes(60))
    assert r.feed(parts) == frames.MESSAGE_TOO_BIG and got.got == []
    assert reader(limit=100)[0].feed(encode_frame(TEXT, bytes(100))) == 0


def test_reader_stops_when_told() -> None:
    r, got = reader(stop_on=frames.CLOSE)
    data = encode_frame(frames.CLOSE, b"\x03\xe8") + encode_frame(TEXT, b"after")
    assert r.feed(data) == 0
    assert got.got == [(frames.CLOSE, b"\x03\xe8")]


def test_server_control_frames() -> None:
    assert frames.close_frame(1000, "bye") == b"\x88\x05\x03\xe8bye"
    assert frames.close_frame(None) == b"\x88\x00"
    assert len(frames.close_frame(4000, "x" * 200)) == 2 + 125
    assert frames.control_frame(PONG, b"abc") == b"\x8a\x03abc"
