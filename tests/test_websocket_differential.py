"""Differential fuzzing: our ServerProtocol against websockets' sans-I/O ServerProtocol.

Hypothesis builds client byte streams (valid and broken frames, fragmented
messages with interleaved controls, masked and unmasked, reserved bits and
opcodes, random close codes and reasons, invalid UTF-8) and cuts them at
random places.  Ours reads the chunks; websockets reads the same frames.
Both must report the same messages, pings and pongs and the same Close
frame code sent by the server.  Ours answers pings and echoes the client's
Close as websockets does on its own.  The streams end on a frame boundary
(frames cut short at the end are the unit tests' business).

Known differences, each handled by the harness in one place:

1. UTF-8.  websockets' sans-I/O layer does not check text (its connection
   layer decodes whole messages).  The harness checks each text fragment as
   websockets delivers it, with an incremental decoder: the fail-fast 1007
   that RFC 6455 8.1 allows and that we implement.
2. Order of the header checks.  websockets checks the opcode and the mask
   bit, then the size limit (1009), and the reserved bits, control frame
   length and fragmentation, and continuation order only after reading the
   payload.  We decide every 1002 from the header first, then 1009 (a frame
   that is both too big and malformed is a protocol error, and the payload
   need not be read).  For frames breaking one of those rules the harness
   expects our 1002 and checks that websockets refuses the same frame too
   (with 1002, or 1009 if it is also too big).
3. Control frames inside a fragmented message.  websockets counts them
   against what is left of max_size; we do not (RFC 6455 5.4: they are not
   part of the message, and they are already bounded by 125 bytes).  When
   websockets refuses one so, the comparison ends there.
4. A Close frame inside a fragmented message.  websockets fails the
   connection with 1002 ("incomplete fragmented message"); RFC 6455 5.4
   allows control frames between fragments and 5.5.1 lets the closing
   handshake start at any time, so we report CloseReceived and drop the
   unfinished message.  The harness expects the echo.
5. Pings are not answered by our protocol (the application rate-limits, then
   calls send_pong); this harness answers every Ping as websockets does.
6. A length with its most significant bit set: RFC 6455 5.2 forbids it;
   websockets reads it as a (huge) length and refuses it with 1009, we with
   1002 (difference 2's rule).
7. A Close frame with both an invalid code and a reason that is not UTF-8:
   websockets decodes the reason first (1007), we check the code first (1002),
   for the same reason as difference 2: the frame is malformed before its
   text is.
"""

from __future__ import annotations

import codecs
import struct
from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State as WsState
from websockets.server import ServerProtocol as WsServerProtocol

from mcp_tornado.websocket import (
    BinaryMessage,
    CloseReceived,
    ConnectionFailed,
    Ping,
    Pong,
    ServerProtocol,
    TextMessage,
)

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# An event as both sides report it: ("text", data), ("binary", data), ("ping", data),
# ("pong", data) or ("close", code, reason).
Reported = tuple[object, ...]


class Spec(NamedTuple):
    """One client frame, possibly broken."""

    fin: bool
    rsv: int  # the three reserved bits, as bits 4-6 of the first byte
    opcode: int
    masked: bool
    payload: bytes
    key: bytes
    length: int | None = None  # a length header that lies (a frame cut short: last only)

    def encode(self) -> bytes:
        first = (0x80 if self.fin else 0) | self.rsv | self.opcode
        size = len(self.payload) if self.length is None else self.length
        bit = 0x80 if self.masked else 0
        if size < 126:
            head = bytes((first, bit | size))
        elif size < 1 << 16:
            head = bytes((first, bit | 126)) + struct.pack("!H", size)
        else:
            head = bytes((first, bit | 127)) + struct.pack("!Q", size)
        if not self.masked:
            return head + self.payload
        stream = (self.key * (len(self.payload) // 4 + 1))[: len(self.payload)]
        return head + self.key + bytes(a ^ b for a, b in zip(self.payload, stream, strict=True))


class Outcome(NamedTuple):
    events: list[Reported]
    # The code of the Close frame the server sent; None: a Close frame without code;
    # "none": no Close frame; "stopped": websockets stopped early (difference 3), so
    # only its events so far are compared.
    close: int | str | None


# --- the streams ----------------------------------------------------------------------

TEXTS = st.text(max_size=40).map(str.encode)
INVALID_UTF8 = st.sampled_from(
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"ok\x80", b"\xce"]
)
CLOSE_CODES = st.one_of(
    st.sampled_from([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]),
    st.sampled_from([3000, 3999, 4000, 4999, 0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]),
    st.integers(0, 65535),
)


@st.composite
def close_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return b""
    if kind == 1:
        return draw(st.binary(min_size=1, max_size=1))
    reason = draw(INVALID_UTF8) if kind == 2 else draw(TEXTS)
    return struct.pack("!H", draw(CLOSE_CODES)) + reason[:123]


@st.composite
def messages(draw: st.DrawFn) -> list[Spec]:
    """A text or binary message, maybe fragmented, maybe with controls between fragments."""
    key = draw(st.binary(min_size=4, max_size=4))
    text = draw(st.booleans())
    if text:
        payload = draw(st.one_of(TEXTS, TEXTS, TEXTS, INVALID_UTF8, st.binary(max_size=300)))
    else:
        payload = draw(st.binary(max_size=300))
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    parts = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    specs: list[Spec] = []
    for i, part in enumerate(parts):
        opcode = (TEXT if text else BINARY) if i == 0 else CONTINUATION
        specs.append(Spec(i == len(parts) - 1, 0, opcode, True, part, key))
        if i < len(parts) - 1 and draw(st.integers(0, 3)) == 0:
            specs.append(draw(controls()))
    return specs


@st.composite
def controls(draw: st.DrawFn) -> Spec:
    key = draw(st.binary(min_size=4, max_size=4))
    opcode = draw(st.sampled_from([PING, PONG, PING, PONG, CLOSE]))
    if opcode == CLOSE:
        return Spec(True, 0, CLOSE, True, draw(close_bodies()), key)
    return Spec(True, 0, opcode, True, draw(st.binary(max_size=125)), key)


@st.composite
def broken(draw: st.DrawFn) -> Spec:
    """A frame with random header bits (mostly plausible ones)."""
    return Spec(
        fin=draw(st.booleans()),
        rsv=draw(st.sampled_from([0, 0, 0, 0x10, 0x20, 0x40, 0x70])),
        opcode=draw(st.sampled_from([0, 1, 2, 8, 9, 10, 0, 1, 2, 8, 9, 10, 3, 7, 0xB, 0xF])),
        masked=draw(st.integers(0, 7)) > 0,
        payload=draw(st.one_of(TEXTS, INVALID_UTF8, st.binary(max_size=300))),
        key=draw(st.binary(min_size=4, max_size=4)),
    )


@st.composite
def oversized(draw: st.DrawFn) -> Spec:
    """A header announcing more than any limit here; only its first bytes are sent."""
    length = draw(st.one_of(st.integers(5000, 1 << 20), st.integers((1 << 63) - 1, (1 << 64) - 1)))
    return Spec(True, 0, draw(st.sampled_from([TEXT, BINARY])), True, b"", b"\0" * 4, length)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Spec], list[int], int]:
    items = draw(
        st.lists(
            st.one_of(messages(), messages(), st.lists(controls(), max_size=2), st.lists(broken())),
            max_size=6,
        )
    )
    specs = [spec for item in items for spec in item]
    ending = draw(st.integers(0, 9))
    if ending == 0:
        specs.append(draw(oversized()))
    elif ending >= 5:  # half the streams end with the client's Close frame
        key = draw(st.binary(min_size=4, max_size=4))
        specs.append(Spec(True, 0, CLOSE, True, draw(close_bodies()), key))
    size = len(b"".join(spec.encode() for spec in specs))
    cuts = draw(st.lists(st.integers(0, size), max_size=8))
    max_size = draw(st.sampled_from([128, 300, 4096]))
    return specs, sorted(cuts), max_size


# --- the two sides --------------------------------------------------------------------


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while data:
        opcode, length, at = data[0] & 0x0F, data[1], 2
        if length == 126:
            length, at = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            length, at = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((opcode, data[at : at + length]))
        data = data[at + length :]
    return frames


def close_code(body: bytes) -> int | None:
    return struct.unpack("!H", body[:2])[0] if body else None


def ours(specs: list[Spec], cuts: list[int], max_size: int) -> Outcome:
    p = ServerProtocol(max_size)
    data = b"".join(spec.encode() for spec in specs)
    events: list[Reported] = []
    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
        for event in p.receive_data(data[a:b]):
            if type(event) is TextMessage:
                events.append(("text", event.data))
            elif type(event) is BinaryMessage:
                events.append(("binary", event.data))
            elif type(event) is Ping:
                events.append(("ping", event.data))
                p.send_pong(event.data)
            elif type(event) is Pong:
                events.append(("pong", event.data))
            elif type(event) is CloseReceived:
                events.append(("close", event.code, event.reason))
                p.send_close()
            else:
                assert type(event) is ConnectionFailed
    sent = server_frames(p.data_to_send())
    # Every ping was answered with its data, and a Close frame, if any, came last.
    pings = [event[1] for event in events if event[0] == "ping"]
    assert [payload for opcode, payload in sent if opcode == PONG] == pings
    closes = [payload for opcode, payload in sent if opcode == CLOSE]
    assert len(closes) <= 1 and (not closes or sent[-1][0] == CLOSE)
    return Outcome(events, close_code(closes[0]) if closes else "none")


def header_error(spec: Spec, in_message: bool) -> bool:
    """A 1002 rule we decide from the header and websockets only after the payload (2, 6)."""
    control = spec.opcode >= 8
    return bool(
        spec.rsv
        or (control and (len(spec.payload) > 125 or not spec.fin))
        or (spec.opcode == CONTINUATION and not in_message)
        or (spec.opcode in (TEXT, BINARY) and in_message)
        or (spec.length is not None and spec.length >> 63)
    ) and spec.opcode in (0, 1, 2, 8, 9, 10)


def theirs(specs: list[Spec], max_size: int) -> Outcome:
    """websockets' verdict, adjusted for the known differences."""
    ws = WsServerProtocol(max_size=max_size, state=WsState.OPEN)
    events: list[Reported] = []
    message: bytearray | None = None  # a message in progress (difference 1: UTF-8)
    decoder: codecs.IncrementalDecoder | None = None
    text = False
    for spec in specs:
        if header_error(spec, message is not None) and spec.masked:
            # Difference 2: websockets refuses this frame too, maybe with 1009.
            ws.receive_data(spec.encode())
            verdict = [close_code(body) for op, body in frames_of(ws) if op == CLOSE]
            assert verdict in ([1002], [1009]) or spec.length is not None, verdict
            return Outcome(events, 1002)
        ws.receive_data(spec.encode())
        received = ws.events_received()
        for frame in received:
            assert isinstance(frame, Frame)
            if frame.opcode is Opcode.TEXT or frame.opcode is Opcode.BINARY:
                text = frame.opcode is Opcode.TEXT
                message = bytearray()
                decoder = codecs.getincrementaldecoder("utf-8")() if text else None
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                assert message is not None
                message += frame.data
                if decoder is not None:
                    try:
                        decoder.decode(frame.data, frame.fin)
                    except UnicodeDecodeError:
                        return Outcome(events, 1007)
                if frame.fin:
                    events.append(("text" if text else "binary", bytes(message)))
                    message = None
            elif frame.opcode is Opcode.PING:
                events.append(("ping", frame.data))
            elif frame.opcode is Opcode.PONG:
                events.append(("pong", frame.data))
            else:
                assert ws.close_rcvd is not None
                code = None if ws.close_rcvd.code == 1005 else ws.close_rcvd.code
                events.append(("close", code, ws.close_rcvd.reason))
                return Outcome(events, code)
        exc = ws.parser_exc
        if isinstance(exc, PayloadTooBig) and spec.opcode >= 8:
            return Outcome(events, "stopped")  # difference 3: the comparison ends here
        if isinstance(exc, ProtocolError) and str(exc) == "incomplete fragmented message":
            assert ws.close_rcvd is not None  # difference 4: we take the Close
            code = None if ws.close_rcvd.code == 1005 else ws.close_rcvd.code
            events.append(("close", code, ws.close_rcvd.reason))
            return Outcome(events, code)
        if isinstance(exc, UnicodeDecodeError) and spec.opcode == CLOSE:
            try:  # difference 7: an invalid code is refused before the reason is read
                Close(close_code(spec.payload) or 0, "").check()
            except ProtocolError:
                frames_of(ws)
                return Outcome(events, 1002)
        if ws.state is not WsState.OPEN:
            [sent] = [close_code(body) for op, body in frames_of(ws) if op == CLOSE]
            return Outcome(events, sent)
        frames_of(ws)  # the pongs: ours are checked against the pings in ours()
    return Outcome(events, "none")


def frames_of(ws: WsServerProtocol) -> list[tuple[int, bytes]]:
    return server_frames(b"".join(ws.data_to_send()))


# --- the comparison -------------------------------------------------------------------


@settings(derandomize=True, max_examples=300, deadline=None)
@given(streams())
def test_ours_agrees_with_websockets(stream: tuple[list[Spec], list[int], int]) -> None:
    specs, cuts, max_size = stream
    got = ours(specs, cuts, max_size)
    expected = theirs(specs, max_size)
    if expected.close == "stopped":  # difference 3: websockets stopped on a frame we accept
        assert got.events[: len(expected.events)] == expected.events
    else:
        assert got == expected


def test_the_harness_sees_each_difference() -> None:
    """Each listed difference, on one stream, so the harness's adjustments stay honest."""
    key = b"\x01\x02\x03\x04"
    # 2: a reserved bit on a frame too big for the limit.
    big = Spec(True, 0x40, BINARY, True, bytes(200), key)
    assert ours([big], [], 128) == Outcome([], 1002) == theirs([big], 128)
    # 3: a ping between fragments, over what is left of the limit for websockets.
    frames = [
        Spec(False, 0, BINARY, True, bytes(100), key),
        Spec(True, 0, PING, True, bytes(100), key),
        Spec(True, 0, CONTINUATION, True, bytes(20), key),
    ]
    assert theirs(frames, 128) == Outcome([], "stopped")
    assert ours(frames, [], 128) == Outcome([("ping", bytes(100)), ("binary", bytes(120))], "none")
    # 4: a Close between fragments.
    frames = [
        Spec(False, 0, TEXT, True, b"half", key),
        Spec(True, 0, CLOSE, True, b"\x03\xe8bye", key),
    ]
    assert ours(frames, [], 128) == Outcome([("close", 1000, "bye")], 1000) == theirs(frames, 128)
    # 7: an invalid close code and an invalid reason.
    frames = [Spec(True, 0, CLOSE, True, b"\x00\x00\xff", key)]
    assert ours(frames, [], 128) == Outcome([], 1002) == theirs(frames, 128)
