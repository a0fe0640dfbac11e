"""The sans-I/O server protocol, driven by raw client bytes (no sockets)."""

from __future__ import annotations

import importlib.util
import os
import struct
import sys

import pytest

from mcp_tornado import websocket
from mcp_tornado.websocket import (
    BinaryMessage,
    CloseReceived,
    ConnectionFailed,
    Event,
    Ping,
    Pong,
    ServerProtocol,
    State,
    TextMessage,
)
from tests.rawws import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, encode_frame


def feed(p: ServerProtocol, data: bytes) -> list[Event]:
    return list(p.receive_data(data))


def drip(p: ServerProtocol, data: bytes) -> list[Event]:
    return [event for i in range(len(data)) for event in p.receive_data(data[i : i + 1])]


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(first byte, payload) of each unmasked server frame in ``data``."""
    frames = []
    while data:
        first, length = data[0], data[1]
        at = 2
        if length == 126:
            length, at = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, at = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((first, data[at : at + length]))
        data = data[at + length :]
    return frames


def close_sent(p: ServerProtocol) -> bytes:
    """The body of the one Close frame ``p`` queued."""
    [(first, body)] = server_frames(p.data_to_send())
    assert first == 0x80 | CLOSE
    return body


def state(p: ServerProtocol) -> State:
    return p.state  # read through a call: mypy would keep the state narrowed


def close(code: int | None = None, reason: bytes = b"") -> bytes:
    body = b"" if code is None else struct.pack("!H", code) + reason
    return encode_frame(CLOSE, body)


# --- messages -----------------------------------------------------------------------


def test_many_frames_in_one_read() -> None:
    p = ServerProtocol()
    data = b"".join(encode_frame(TEXT, b"n%d" % n) for n in range(200))
    assert feed(p, data) == [TextMessage(b"n%d" % n) for n in range(200)]
    assert p.state is State.OPEN and p.data_to_send() == b""


def test_every_kind_of_frame_split_at_every_byte() -> None:
    data = (
        encode_frame(TEXT, "héllo ".encode(), fin=False)
        + encode_frame(PING, b"p")
        + encode_frame(CONTINUATION, "wörld €".encode(), fin=False)
        + encode_frame(PONG, b"q")
        + encode_frame(CONTINUATION, b"!")
        + encode_frame(BINARY, bytes(range(256)) * 3)
        + encode_frame(TEXT, "x€".encode() * 100)
        + encode_frame(TEXT, b"")
    )
    expected = [
        Ping(b"p"),
        Pong(b"q"),
        TextMessage("héllo wörld €!".encode()),
        BinaryMessage(bytes(range(256)) * 3),
        TextMessage("x€".encode() * 100),
        TextMessage(b""),
    ]
    assert feed(ServerProtocol(), data) == expected
    assert drip(ServerProtocol(), data) == expected
    p = ServerProtocol()
    halves = [e for i in range(0, len(data), 7) for e in p.receive_data(data[i : i + 7])]
    assert halves == expected


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536])
def test_extended_lengths(length: int) -> None:
    payload = os.urandom(length)
    assert feed(ServerProtocol(65536), encode_frame(BINARY, payload)) == [BinaryMessage(payload)]


def test_the_mask_continues_across_reads_at_any_offset() -> None:
    payload = bytes(range(256)) * 40
    frame = encode_frame(BINARY, payload)
    for cut in (9, 10, 11, 12, 13, 500, 501, 502, 503):
        p = ServerProtocol()
        events = [e for i in range(0, len(frame), cut) for e in p.receive_data(frame[i : i + cut])]
        assert events == [BinaryMessage(payload)]


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(TEXT, b"plain"),
        encode_frame(TEXT, "non-ascii ✓".encode()),
        encode_frame(TEXT, b"bad \xff"),
        encode_frame(BINARY, bytes(300)),
        encode_frame(TEXT, bytes(100)),
        encode_frame(TEXT, bytes(101)),  # over the limit
        encode_frame(TEXT, b"x", mask=False),
        encode_frame(TEXT, b"", fin=False),
        bytes([0xC1, 0x80]) + bytes(4),
        encode_frame(TEXT, bytes(70_000)),  # a 64-bit length
    ],
)
def test_a_read_of_one_frame_decides_as_a_split_read(frame: bytes) -> None:
    # One whole data frame per read takes a shortcut past the lazy parser.
    p = ServerProtocol(100)
    whole = feed(p, frame)
    split = ServerProtocol(100)
    assert whole == feed(split, frame[:1]) + feed(split, frame[1:])
    assert (p.state, p.data_to_send()) == (split.state, split.data_to_send())


def test_pings_are_reported_not_answered() -> None:
    p = ServerProtocol()
    assert feed(p, encode_frame(PING, b"hi")) == [Ping(b"hi")]
    assert p.data_to_send() == b""
    p.send_pong(b"hi")
    assert p.data_to_send() == b"\x8a\x02hi"


def test_dripping_a_big_frame_keeps_only_a_header_buffered() -> None:
    # Buffering must be linear: the payload is taken as it comes, never re-joined.
    p = ServerProtocol()
    frame = encode_frame(TEXT, b"x" * 65000)
    events: list[Event] = []
    for i in range(len(frame)):
        events += p.receive_data(frame[i : i + 1])
        assert p._buffer is not None and len(p._buffer) <= 14
    assert events == [TextMessage(b"x" * 65000)]


def test_an_abandoned_iterator_leaves_the_rest_for_the_next_read() -> None:
    p = ServerProtocol()
    events = p.receive_data(b"".join(encode_frame(TEXT, b"%d" % n) for n in range(3)))
    assert next(events) == TextMessage(b"0")
    del events
    assert feed(p, encode_frame(TEXT, b"3")) == [TextMessage(b"%d" % n) for n in (1, 2, 3)]


def test_reads_while_an_iterator_is_suspended_go_after_its_tail() -> None:
    p = ServerProtocol()
    frame = encode_frame(TEXT, b"second")
    events = p.receive_data(encode_frame(TEXT, b"first") + frame[:3])
    assert next(events) == TextMessage(b"first")
    later = p.receive_data(frame[3:])
    with pytest.raises(RuntimeError):
        next(later)
    assert list(events) == []
    assert feed(p, b"") == [TextMessage(b"second")]
    # The same when the later read is a whole frame (which a shortcut could overtake).
    events = p.receive_data(encode_frame(TEXT, b"1") + encode_frame(TEXT, b"2"))
    assert next(events) == TextMessage(b"1")
    later = p.receive_data(encode_frame(TEXT, b"3"))
    with pytest.raises(RuntimeError):
        next(later)
    assert list(events) == [TextMessage(b"2")]
    assert feed(p, b"") == [TextMessage(b"3")]


def test_an_idle_protocol_holds_no_queue_and_no_message_in_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Idle memory per peer is a tracked figure: between reads, with nothing queued,
    # a ServerProtocol is its slots alone (128 bytes on CPython 3.11 and 3.12: 104
    # before the fragment cap, the close budget and the silent-frame count), no list,
    # no message object, no instance dict.
    made: list[int] = []
    message_class = websocket._Message

    def message(opcode: int) -> websocket._Message:
        made.append(opcode)
        return message_class(opcode)

    monkeypatch.setattr(websocket, "_Message", message)
    p = ServerProtocol()
    assert not hasattr(p, "__dict__") and len(ServerProtocol.__slots__) <= 12
    assert (p._out, p._message) == (None, None)
    # Whole frames, one per read (the shortcut) and several per read (the parser).
    assert feed(p, encode_frame(TEXT, b"one")) == [TextMessage(b"one")]
    many = encode_frame(BINARY, b"2") + encode_frame(PING, b"p") + encode_frame(TEXT, b"3")
    assert feed(p, many) == [BinaryMessage(b"2"), Ping(b"p"), TextMessage(b"3")]
    assert made == [] and p._message is None
    p.send_text(b"echo")
    p.send_pong(b"p")
    assert p.pending_bytes == 9
    assert p.data_to_send() == b"\x81\x04echo\x8a\x01p"
    assert (p._out, p._message, p._buffer) == (None, None, b"")
    # A message in several frames or reads holds the object until it is whole.
    assert feed(p, encode_frame(TEXT, b"a", fin=False)) == []
    assert made == [TEXT] and p._message is not None
    assert feed(p, encode_frame(CONTINUATION, b"b")) == [TextMessage(b"ab")]
    assert p._message is None
    frame = encode_frame(BINARY, b"cd")
    assert feed(p, frame[:-1]) == [] and p._message is not None
    assert feed(p, frame[-1:]) == [BinaryMessage(b"cd")]
    assert made == [TEXT, BINARY] and (p._out, p._message, p._buffer) == (None, None, b"")


# --- protocol violations ------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        encode_frame(TEXT, b"x", mask=False),  # clients must mask
        bytes([0xC1, 0x80]) + bytes(4),  # RSV1: no extension was negotiated
        bytes([0xA1, 0x80]) + bytes(4),  # RSV2
        bytes([0x91, 0x80]) + bytes(4),  # RSV3
        *(encode_frame(op, b"x") for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)),
        encode_frame(CONTINUATION, b"x"),  # continuing nothing
        encode_frame(TEXT, b"a", fin=False) + encode_frame(TEXT, b"b"),  # a new message mid-way
        encode_frame(BINARY, b"a", fin=False) + encode_frame(TEXT, b"b"),
        encode_frame(PING, b"x", fin=False),  # fragmented control frame
        encode_frame(CLOSE, b"", fin=False),
        encode_frame(PING, bytes(126)),  # control frame over 125 bytes
        encode_frame(PONG, bytes(126)),
        encode_frame(CLOSE, b"\x03\xe8" + bytes(124)),
        bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 63),  # 64-bit length with its top bit set
    ],
)
def test_protocol_errors_fail_with_1002(data: bytes) -> None:
    p = ServerProtocol()
    events = feed(p, data + encode_frame(TEXT, b"never parsed"))
    assert len(events) == 1 and type(events[0]) is ConnectionFailed
    assert events[0].code == 1002 and p.state is State.CLOSED
    assert close_sent(p)[:2] == b"\x03\xea"
    assert feed(p, encode_frame(TEXT, b"after")) == []


@pytest.mark.parametrize(
    "data",
    [
        encode_frame(TEXT, bytes(200), mask=False),
        bytes([0xC1, 0x80 | 126]) + struct.pack("!H", 200),
        bytes([0x83, 0x80 | 126]) + struct.pack("!H", 200),
        encode_frame(CONTINUATION, bytes(200)),
        encode_frame(TEXT, bytes(50), fin=False) + encode_frame(TEXT, bytes(200)),
    ],
)
def test_protocol_errors_come_before_the_size_limit(data: bytes) -> None:
    [event] = feed(ServerProtocol(100), data)
    assert type(event) is ConnectionFailed and event.code == 1002


def test_a_big_message_is_refused_from_its_header_alone() -> None:
    p = ServerProtocol(100)
    # Only the length bytes have arrived, not even the mask.
    assert feed(p, encode_frame(TEXT, bytes(101))[:4]) == [
        ConnectionFailed(1009, "message too big")
    ]
    assert close_sent(p) == b"\x03\xf1message too big"
    assert feed(ServerProtocol(100), encode_frame(TEXT, bytes(100))) == [TextMessage(bytes(100))]


def test_the_limit_counts_the_reassembled_message_not_interleaved_controls() -> None:
    parts = encode_frame(BINARY, bytes(60), fin=False) + encode_frame(CONTINUATION, bytes(41))
    assert feed(ServerProtocol(100), parts) == [ConnectionFailed(1009, "message too big")]
    ok = (
        encode_frame(BINARY, bytes(60), fin=False)
        + encode_frame(PING, bytes(125))
        + encode_frame(CONTINUATION, bytes(40))
    )
    assert feed(ServerProtocol(100), ok) == [Ping(bytes(125)), BinaryMessage(bytes(100))]


def test_a_violation_after_a_message_is_queued_after_what_the_caller_sent() -> None:
    p = ServerProtocol()
    for event in p.receive_data(encode_frame(TEXT, b"hi") + encode_frame(TEXT, b"x", mask=False)):
        if type(event) is TextMessage:
            p.send_text(b"echo " + event.data)
            p.send_text(b"more")  # a send after the failure is ignored
    assert server_frames(p.data_to_send()) == [
        (0x81, b"echo hi"),
        (0x81, b"more"),
        (0x88, b"\x03\xeaunmasked frame"),
    ]
    p.send_text(b"ignored")
    p.send_close(1000)
    assert p.data_to_send() == b"" and p.pending_bytes == 0


# --- UTF-8 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"ok \xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"caf\xc3", b"\xe2\x82"],
)
def test_invalid_utf8_fails_with_1007(payload: bytes) -> None:
    for data in (
        encode_frame(TEXT, payload),
        encode_frame(TEXT, payload[:1], fin=False) + encode_frame(CONTINUATION, payload[1:]),
    ):
        p = ServerProtocol()
        assert feed(p, data) == [ConnectionFailed(1007, "invalid UTF-8")]
        assert close_sent(p)[:2] == b"\x03\xef"
    # Binary messages are not text.
    assert feed(ServerProtocol(), encode_frame(BINARY, payload)) == [BinaryMessage(payload)]


def test_characters_may_straddle_fragments_and_reads() -> None:
    text = "€uro 😀".encode()
    data = b"".join(
        encode_frame(CONTINUATION if i else TEXT, text[i : i + 1], fin=i == len(text) - 1)
        for i in range(len(text))
    )
    assert feed(ServerProtocol(), data) == [TextMessage(text)]
    assert drip(ServerProtocol(), encode_frame(TEXT, text)) == [TextMessage(text)]


def test_invalid_utf8_fails_fast_in_a_fragment() -> None:
    p = ServerProtocol()
    first = encode_frame(TEXT, b"ok", fin=False) + encode_frame(CONTINUATION, b"\xff", fin=False)
    assert feed(p, first) == [ConnectionFailed(1007, "invalid UTF-8")]


def test_invalid_utf8_fails_fast_in_a_frame_still_arriving() -> None:
    frame = encode_frame(TEXT, b"a" * 1000 + b"\xc0" + b"b" * 50_000)
    p = ServerProtocol()
    assert feed(p, frame[:900]) == []
    assert feed(p, frame[900:1100]) == [ConnectionFailed(1007, "invalid UTF-8")]
    assert feed(p, frame[1100:]) == []


# --- closing ------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011])
def test_valid_close_codes_autobahn_7_7(code: int) -> None:
    _valid_close(code)


@pytest.mark.parametrize("code", [1012, 1013, 1014, 3000, 3999, 4000, 4999])
def test_valid_close_codes_iana_and_application(code: int) -> None:
    _valid_close(code)


def _valid_close(code: int) -> None:
    p = ServerProtocol()
    assert feed(p, close(code, "bye ✓".encode())) == [CloseReceived(code, "bye ✓")]
    assert (p.state, p.close_code, p.close_reason) == (State.CLOSING, code, "bye ✓")
    p.send_close()  # echo
    assert close_sent(p) == struct.pack("!H", code)
    assert p.state is State.CLOSED


@pytest.mark.parametrize(
    "code",
    [
        *(0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999),  # Autobahn 7.9.x
        *(1015, 5000, 65535),  # 1015 is never sent (RFC 7.4.1); >= 5000: Autobahn 7.13.x
    ],
)
def test_invalid_close_codes_fail_with_1002(code: int) -> None:
    p = ServerProtocol()
    assert feed(p, close(code)) == [ConnectionFailed(1002, "invalid close code")]
    assert p.close_code is None and p.state is State.CLOSED
    assert close_sent(p)[:2] == b"\x03\xea"


def test_a_one_byte_close_body_fails_with_1002() -> None:
    assert feed(ServerProtocol(), encode_frame(CLOSE, b"\x03")) == [
        ConnectionFailed(1002, "close frame too short")
    ]


def test_a_close_reason_must_be_utf8() -> None:
    p = ServerProtocol()
    assert feed(p, close(1000, b"\xff")) == [
        ConnectionFailed(1007, "invalid UTF-8 in close reason")
    ]
    assert close_sent(p)[:2] == b"\x03\xef"


def test_a_close_without_code_is_echoed_without_code() -> None:
    p = ServerProtocol()
    assert feed(p, close() + encode_frame(TEXT, b"after")) == [CloseReceived(None, "")]
    assert (p.close_code, p.close_reason) == (None, "")
    assert feed(p, encode_frame(TEXT, b"later")) == []
    p.send_text(b"still allowed before our close")
    p.send_close()
    assert server_frames(p.data_to_send()) == [
        (0x81, b"still allowed before our close"),
        (0x88, b""),
    ]
    assert p.state is State.CLOSED


def test_a_close_inside_a_fragmented_message_drops_the_message() -> None:
    p = ServerProtocol()
    data = encode_frame(TEXT, b"half", fin=False) + close(1001)
    assert feed(p, data) == [CloseReceived(1001, "")]


def test_server_initiated_closing_handshake() -> None:
    p = ServerProtocol()
    p.send_close(4008, "too slow")
    assert state(p) is State.CLOSING and close_sent(p) == b"\x0f\xa8too slow"
    p.send_text(b"discarded")
    p.send_ping()
    p.send_close(1000)
    assert p.data_to_send() == b""
    # The client may still send before it answers; then its Close ends the handshake.
    assert feed(p, encode_frame(TEXT, b"late") + close(4008)) == [
        TextMessage(b"late"),
        CloseReceived(4008, ""),
    ]
    assert state(p) is State.CLOSED and p.data_to_send() == b""


@pytest.mark.parametrize("code", [1005, 1006, 1015])
def test_no_code_codes_are_never_sent(code: int) -> None:
    p = ServerProtocol()
    p.send_close(code, "ignored")
    assert close_sent(p) == b""


@pytest.mark.parametrize("code", [0, 999, 1004, 1016, 2999, 5000])
def test_sending_an_invalid_close_code_is_a_programming_error(code: int) -> None:
    with pytest.raises(ValueError):
        ServerProtocol().send_close(code)


def test_a_close_reason_is_cut_on_a_character_boundary() -> None:
    p = ServerProtocol()
    p.send_close(1000, "é" * 100)  # 200 bytes: 61 characters (122 bytes) fit
    assert close_sent(p) == b"\x03\xe8" + ("é" * 61).encode()
    p = ServerProtocol()
    p.send_close(1000, "x" * 200)
    assert close_sent(p) == b"\x03\xe8" + b"x" * 123


def test_a_failure_after_our_close_sends_nothing_more() -> None:
    p = ServerProtocol()
    p.send_close(1001)
    p.data_to_send()
    assert feed(p, encode_frame(TEXT, b"x", mask=False)) == [
        ConnectionFailed(1002, "unmasked frame")
    ]
    assert state(p) is State.CLOSED and p.data_to_send() == b""


def test_eof_closes_everything() -> None:
    p = ServerProtocol()
    assert feed(p, encode_frame(TEXT, b"half")[:4]) == []
    p.receive_eof()
    assert p.state is State.CLOSED
    assert feed(p, encode_frame(TEXT, b"x")) == []
    p.send_text(b"x")
    p.send_close()
    assert p.data_to_send() == b""


# --- sending ------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 1 << 20])
def test_text_and_binary_headers_match_rfc6455(length: int) -> None:
    if length < 126:
        size = bytes([length])
    elif length < 65536:
        size = bytes([126]) + struct.pack("!H", length)
    else:
        size = bytes([127]) + struct.pack("!Q", length)
    payload = bytes(length)
    p = ServerProtocol()
    p.send_text(payload)
    assert p.pending_bytes == 1 + len(size) + length
    p.send_binary(payload)
    assert p.data_to_send() == b"\x81" + size + payload + b"\x82" + size + payload


def test_sends_are_queued_and_joined_once() -> None:
    p = ServerProtocol()
    assert p.data_to_send() == b"" and p.pending_bytes == 0
    p.send_text(b"a")
    p.send_binary(b"bc")
    p.send_ping(b"p")
    p.send_pong()
    assert p.pending_bytes == 3 + 4 + 3 + 2
    assert p.data_to_send() == b"\x81\x01a\x82\x02bc\x89\x01p\x8a\x00"
    assert p.pending_bytes == 0 and p.data_to_send() == b""


def test_control_payloads_over_125_bytes_are_refused() -> None:
    p = ServerProtocol()
    with pytest.raises(ValueError):
        p.send_ping(bytes(126))
    with pytest.raises(ValueError):
        p.send_pong(bytes(126))


# --- masking without Tornado's C speedups ------------------------------------------


def test_the_python_mask_matches_tornados() -> None:
    from tornado.speedups import websocket_mask

    for n in [*range(20), 125, 4096, 65537]:
        key, data = os.urandom(4), os.urandom(n)
        assert websocket._mask_python(key, data) == websocket_mask(key, data)


def test_frames_parse_with_the_python_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websocket, "_mask", websocket._mask_python)
    test_every_kind_of_frame_split_at_every_byte()
    test_the_mask_continues_across_reads_at_any_offset()


def test_the_fallback_is_used_when_the_speedups_are_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A private copy of the module, imported as if Tornado had no C extension.
    monkeypatch.setitem(sys.modules, "tornado.speedups", None)
    spec = importlib.util.spec_from_file_location("websocket_copy", websocket.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._mask is module._mask_python
    p = module.ServerProtocol()
    assert list(p.receive_data(encode_frame(TEXT, b"hello"))) == [module.TextMessage(b"hello")]


# --- every frame costs: fragments capped and counted, pongs counted, input after our close


def fragmented(count: int, opcode: int = TEXT, piece: bytes = b"x") -> bytes:
    """One message in ``count`` frames."""
    frames = [encode_frame(opcode, piece, fin=count == 1)]
    frames += [encode_frame(CONTINUATION, piece, fin=i == count - 1) for i in range(1, count)]
    return b"".join(frames)


def test_a_message_of_max_fragments_frames_is_taken() -> None:
    p = ServerProtocol()
    assert p.max_fragments == websocket.MAX_FRAGMENTS == 128
    assert feed(p, fragmented(128)) == [TextMessage(b"x" * 128)]
    assert drip(p, fragmented(128, BINARY)) == [BinaryMessage(b"x" * 128)]  # byte by byte


def test_one_fragment_more_fails_with_1009_from_its_header() -> None:
    p = ServerProtocol()
    events = feed(p, fragmented(129)[:-5])  # the 129th frame's 2-byte header, no more
    assert events == [ConnectionFailed(1009, "too many fragments")]
    assert close_sent(p)[:2] == b"\x03\xf1" and state(p) is State.CLOSED


def test_empty_continuations_are_capped_too() -> None:
    # The reported flood: one fragment, then empty continuation frames without end.
    p = ServerProtocol()
    flood = encode_frame(TEXT, b"{", fin=False) + encode_frame(CONTINUATION, b"", fin=False) * 1000
    assert feed(p, flood) == [ConnectionFailed(1009, "too many fragments")]


def test_interleaved_control_frames_are_not_fragments() -> None:
    p = ServerProtocol(max_fragments=2)
    data = (
        encode_frame(TEXT, b"a", fin=False)
        + encode_frame(PING, b"p")
        + encode_frame(PONG, b"q")
        + encode_frame(CONTINUATION, b"b")
    )
    assert feed(p, data) == [Ping(b"p"), Pong(b"q"), TextMessage(b"ab")]


def test_no_fragment_limit_when_none() -> None:
    # Autobahn 9.3.1: 4 MiB in fragments of 64 bytes.
    p = ServerProtocol(max_message_size=4 * 2**20, max_fragments=None)
    assert feed(p, fragmented(65536, piece=b"y" * 64)) == [TextMessage(b"y" * 2**22)]


def test_silent_frames_count_what_no_event_stands_for() -> None:
    p = ServerProtocol()
    assert p.silent_frames == 0
    assert feed(p, encode_frame(TEXT, b"whole")) == [TextMessage(b"whole")]  # the shortcut
    assert feed(p, encode_frame(TEXT, b"a") + encode_frame(PING, b"")) == [
        TextMessage(b"a"),
        Ping(b""),
    ]
    assert p.silent_frames == 0  # messages and pings are events of their own
    feed(p, fragmented(5))  # 4 fragments before the last
    assert p.silent_frames == 4
    feed(p, encode_frame(PONG, b"") * 3)
    assert p.silent_frames == 7
    p.silent_frames = 0  # the I/O layer takes the count
    drip(p, encode_frame(BINARY, b"z" * 300))  # one frame in pieces: one event
    assert p.silent_frames == 0


def test_after_our_close_the_clients_answer_is_still_read() -> None:
    p = ServerProtocol(max_message_size=1000)
    p.send_close(1001)
    p.data_to_send()
    # A whole message of the maximum size already on its way, then the client's Close.
    late = encode_frame(TEXT, b"m" * 1000) + encode_frame(PONG, b"") * 100
    assert feed(p, late)[0] == TextMessage(b"m" * 1000)
    assert feed(p, encode_frame(CLOSE, b"\x03\xe9")) == [CloseReceived(1001, "")]
    assert state(p) is State.CLOSED


def test_after_our_close_a_client_that_keeps_sending_fails_with_1008() -> None:
    p = ServerProtocol(max_message_size=1000)
    p.send_close(4429)
    p.data_to_send()
    budget = 1000 + 64 * 1024
    pongs = encode_frame(PONG, b"x" * 119)  # 125 bytes a frame
    events: list[Event] = []
    sent = 0
    while not events or not isinstance(events[-1], ConnectionFailed):
        events += feed(p, pongs * 8)
        sent += 1000
        assert sent <= budget + 1000
    assert sent > budget  # everything up to the budget was read
    assert events[-1] == ConnectionFailed(1008, "no close frame after ours")
    assert p.data_to_send() == b"" and state(p) is State.CLOSED  # no second close frame
    assert feed(p, encode_frame(CLOSE, b"")) == []  # and nothing more is read


def test_after_our_close_the_shortcut_is_not_taken() -> None:
    # A whole text frame per read counts against the budget like everything else.
    p = ServerProtocol(max_message_size=10)
    p.send_close(1000)
    frame = encode_frame(TEXT, b"0123456789")
    reads = 0
    while reads < 10_000 and state(p) is State.CLOSING:
        feed(p, frame)
        reads += 1
    assert state(p) is State.CLOSED and reads * len(frame) > 10 + 64 * 1024
